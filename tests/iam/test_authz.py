"""Tests of tests/iam/authz.py (the authorization each recorded call needs) and of the S3
operation naming in tests/iam/record.py: resources per the Service Authorization Reference,
condition keys, implied checks, and properties over generated requests (seeded).

    python3 -m unittest discover -s tests/iam -t tests/iam -v
"""

from __future__ import annotations

import random
import string
import unittest

import authz
from record import ebs_operation, s3_operation

ACCOUNT, REGION = "123456789012", "us-east-1"
DEP = authz.Deployment(
    bucket_keys={"ev": f"arn:aws:kms:{REGION}:444455556666:key/k"},
    topic_keys={f"arn:aws:sns:{REGION}:{ACCOUNT}:t": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/s"},
)


def record(service: str, operation: str, params=None, world=None, **extra) -> dict:
    return {"service": service, "operation": operation, "region": REGION, "account": ACCOUNT,
            "params": params or {}, "world": world or {}, **extra}


def arn(kind: str, rid: str) -> str:
    return f"arn:aws:ec2:{REGION}:{ACCOUNT}:{kind}/{rid}"


class Mappings(unittest.TestCase):
    def test_sign_authorizes_on_the_key_with_algorithm_and_message_type(self):
        key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
        (check,) = authz.checks_for(record("kms", "Sign", {
            "KeyId": key, "SigningAlgorithm": "ECDSA_SHA_256", "MessageType": "RAW", "Message": "e30="}), DEP)
        self.assertEqual((check.action, check.resource), ("kms:Sign", key))
        self.assertEqual(check.context["kms:SigningAlgorithm"], "ECDSA_SHA_256")
        self.assertEqual(check.context["kms:MessageType"], "RAW")
        (by_id,) = authz.checks_for(record("kms", "Sign", {"KeyId": "k-1", "SigningAlgorithm": "ECDSA_SHA_256"}), DEP)
        self.assertEqual(by_id.resource, f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k-1")

    def test_an_unknown_call_is_an_error_naming_it(self):
        with self.assertRaisesRegex(authz.MappingError, "no authorization mapping for ec2:RunInstances: add it"):
            authz.checks_for(record("ec2", "RunInstances"), DEP)

    def test_control_plane_reads_authorize_consoles_on_the_tagged_instance_and_lookups_on_any(self):
        world = {"i-0a": {"tags": {"SecurityIncidentStatus": "InProgress"}}}
        for op in ("GetConsoleOutput", "GetConsoleScreenshot"):
            (check,) = authz.checks_for(record("ec2", op, {"InstanceId": "i-0a"}, world), DEP)
            self.assertEqual((check.action, check.resource), (f"ec2:{op}", arn("instance", "i-0a")))
            self.assertEqual(check.context["aws:ResourceTag/SecurityIncidentStatus"], "InProgress")
        (lookup,) = authz.checks_for(record("cloudtrail", "LookupEvents", {
            "LookupAttributes": [{"AttributeKey": "Username", "AttributeValue": "i-0a"}]}), DEP)
        self.assertEqual((lookup.action, lookup.resource), ("cloudtrail:LookupEvents", "*"))
        (listed,) = authz.checks_for(record("iam", "ListAttachedRolePolicies", {"RoleName": "Web"}), DEP)
        self.assertEqual(listed.resource, f"arn:aws:iam::{ACCOUNT}:role/Web")

    def test_modify_network_interface_authorizes_on_the_interface_and_each_group(self):
        world = {"eni-0a": {"tags": {}}, "sg-01": {"tags": {"airf:managed": "true"}}, "sg-02": {"tags": {}}}
        checks = authz.checks_for(record("ec2", "ModifyNetworkInterfaceAttribute", {
            "NetworkInterfaceId": "eni-0a", "SecurityGroupId.1": "sg-01", "SecurityGroupId.2": "sg-02"}, world), DEP)
        self.assertEqual([c.resource for c in checks],
                         [arn("network-interface", "eni-0a"), arn("security-group", "sg-01"), arn("security-group", "sg-02")])
        self.assertEqual(checks[1].context, {"aws:ResourceTag/airf:managed": "true"})

    def test_create_snapshot_authorizes_on_volume_and_snapshot_and_tagging_on_create(self):
        checks = authz.checks_for(record("ec2", "CreateSnapshot", {
            "VolumeId": "vol-01", "TagSpecification.1.ResourceType": "snapshot",
            "TagSpecification.1.Tag.1.Key": "airf:case", "TagSpecification.1.Tag.1.Value": "IR-1"},
            {"vol-01": {"tags": {"Name": "data"}}}, created=["snap-0f"]), DEP)
        snap = f"arn:aws:ec2:{REGION}::snapshot/snap-0f"
        self.assertEqual([(c.action, c.resource) for c in checks], [
            ("ec2:CreateSnapshot", snap), ("ec2:CreateSnapshot", arn("volume", "vol-01")), ("ec2:CreateTags", snap)])
        self.assertEqual(checks[0].context["aws:RequestTag/airf:case"], "IR-1")
        self.assertEqual(checks[1].context, {"aws:ResourceTag/Name": "data"})
        self.assertEqual(checks[2].context["ec2:CreateAction"], "CreateSnapshot")

    def test_create_security_group_authorizes_on_vpc_and_group(self):
        checks = authz.checks_for(record("ec2", "CreateSecurityGroup", {
            "VpcId": "vpc-01", "GroupName": "airf-isolation"}, {"vpc-01": {"tags": {}}}, created=["sg-09"]), DEP)
        self.assertEqual([c.resource for c in checks], [arn("security-group", "sg-09"), arn("vpc", "vpc-01")])

    def test_send_command_authorizes_on_document_and_instance_with_ssm_resource_tags(self):
        checks = authz.checks_for(record("ssm", "SendCommand", {
            "DocumentName": "airf-acquire-memory", "InstanceIds": ["i-0123456789abcdef0"]},
            {"i-0123456789abcdef0": {"tags": {"SecurityIncidentStatus": "Analyze"}}}), DEP)
        self.assertEqual(checks[0].resource, f"arn:aws:ssm:{REGION}:{ACCOUNT}:document/airf-acquire-memory")
        self.assertEqual(checks[1].context["ssm:resourceTag/SecurityIncidentStatus"], "Analyze")
        self.assertEqual(checks[1].context["aws:ResourceTag/SecurityIncidentStatus"], "Analyze")
        aws_doc = authz.checks_for(record("ssm", "SendCommand", {"DocumentName": "AWS-RunShellScript"}), DEP)
        self.assertEqual(aws_doc[0].resource, f"arn:aws:ssm:{REGION}::document/AWS-RunShellScript")

    def test_associating_a_profile_passes_its_role_to_ec2(self):
        world = {"i-01234567": {"tags": {"SecurityIncidentStatus": "Contain"}},
                 "instance-profile:P": {"path": "/", "roles": [f"arn:aws:iam::{ACCOUNT}:role/R"]}}
        checks = authz.checks_for(record("ec2", "AssociateIamInstanceProfile", {
            "InstanceId": "i-01234567", "IamInstanceProfile.Name": "P"}, world), DEP)
        self.assertEqual((checks[1].action, checks[1].resource), ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/R"))
        self.assertEqual(checks[1].context, {"iam:PassedToService": "ec2.amazonaws.com"})
        with self.assertRaisesRegex(authz.MappingError, "no instance profile Q"):
            authz.checks_for(record("ec2", "AssociateIamInstanceProfile", {
                "InstanceId": "i-01234567", "IamInstanceProfile.Name": "Q"}, world), DEP)

    def test_a_resource_the_recorder_did_not_see_is_an_error(self):
        with self.assertRaisesRegex(authz.MappingError, "saw no resource i-0badbadbad"):
            authz.checks_for(record("ec2", "ModifyInstanceAttribute", {"InstanceId": "i-0badbadbad"}), DEP)

    def test_permissions_boundary_and_role_path(self):
        checks = authz.checks_for(record("iam", "PutRolePermissionsBoundary", {
            "RoleName": "web", "PermissionsBoundary": "arn:aws:iam::123456789012:policy/b"},
            {"role:web": {"path": "/app/"}}), DEP)
        self.assertEqual(checks[0].resource, f"arn:aws:iam::{ACCOUNT}:role/app/web")
        self.assertEqual(checks[0].context, {"iam:PermissionsBoundary": "arn:aws:iam::123456789012:policy/b"})

    def test_s3_uploads_and_the_kms_calls_s3_makes_as_the_caller(self):
        s3 = {"method": "POST", "bucket": "ev", "key": "evidence/c/x", "query": {"uploadId": "u"}, "headers": {}}
        checks = authz.checks_for(record("s3", "CompleteMultipartUpload", s3=s3), DEP)
        self.assertEqual([c.action for c in checks], ["s3:PutObject", "kms:Decrypt"])
        self.assertEqual(checks[0].context["s3:ObjectCreationOperation"], "true")
        self.assertEqual(checks[1].resource, DEP.bucket_keys["ev"])
        self.assertEqual(checks[1].context["kms:ViaService"], f"s3.{REGION}.amazonaws.com")
        self.assertEqual(checks[1].context["kms:EncryptionContext:aws:s3:arn"], "arn:aws:s3:::ev/evidence/c/x")
        plain = dict(s3, bucket="other", headers={"x-amz-server-side-encryption": "AES256"})
        self.assertEqual([c.action for c in authz.checks_for(record("s3", "CompleteMultipartUpload", s3=plain), DEP)],
                         ["s3:PutObject"])
        listing = {"method": "GET", "bucket": "ev", "key": "", "query": {"list-type": "2", "prefix": "agent/"}}
        self.assertEqual(authz.checks_for(record("s3", "ListObjectsV2", s3=listing), DEP)[0].context,
                         {"s3:prefix": "agent/"})

    def test_publish_to_an_encrypted_topic_needs_its_key_through_sns(self):
        checks = authz.checks_for(record("sns", "Publish", {"TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:t"}), DEP)
        self.assertEqual([c.action for c in checks], ["sns:Publish", "kms:GenerateDataKey", "kms:Decrypt"])
        self.assertEqual(checks[1].context["kms:ViaService"], f"sns.{REGION}.amazonaws.com")


class Properties(unittest.TestCase):
    def test_create_tags_carries_every_key_and_value_and_each_resource_its_own_tags(self):
        rng = random.Random(11)
        alphabet = string.ascii_letters + ":-_"
        for _ in range(300):
            tags = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))): str(rng.random())
                    for _ in range(rng.randint(1, 5))}
            ids = [f"{rng.choice(['i', 'sg', 'snap'])}-{rng.getrandbits(40):010x}" for _ in range(rng.randint(1, 4))]
            world = {i: {"tags": {f"t{rng.randint(0, 3)}": "v"}} for i in ids}
            params = {}
            for n, (k, v) in enumerate(tags.items(), 1):
                params[f"Tag.{n}.Key"], params[f"Tag.{n}.Value"] = k, v
            order = list(range(1, len(ids) + 1))
            rng.shuffle(order)  # query parameters arrive in any order
            for n in order:
                params[f"ResourceId.{n}"] = ids[n - 1]
            checks = authz.checks_for(record("ec2", "CreateTags", params, world), DEP)
            self.assertEqual(len(checks), len(ids))
            for rid, check in zip(ids, checks, strict=True):
                self.assertTrue(check.resource.endswith("/" + rid), (rid, check.resource))
                self.assertEqual(check.context["aws:TagKeys"], sorted(tags))
                for k, v in tags.items():
                    self.assertEqual(check.context[f"aws:RequestTag/{k}"], v)
                for k, v in world[rid]["tags"].items():
                    self.assertEqual(check.context[f"aws:ResourceTag/{k}"], v)

    def test_ebs_reads_authorize_on_the_tagged_snapshot_and_decrypt_through_ec2(self):
        snap = f"arn:aws:ec2:{REGION}::snapshot/snap-0a"
        world = {"snap-0a": {"tags": {"airf:case": "IR-1"}, "encrypted": False}}
        (check,) = authz.checks_for(record("ebs", "ListSnapshotBlocks", {"SnapshotId": "snap-0a"}, world), DEP)
        self.assertEqual((check.action, check.resource, check.context),
                         ("ebs:ListSnapshotBlocks", snap, {"aws:ResourceTag/airf:case": "IR-1"}))
        world["snap-0a"].update(encrypted=True, kms_key_id="k-1")
        block, kms = authz.checks_for(record("ebs", "GetSnapshotBlock", {"SnapshotId": "snap-0a", "BlockIndex": "0"}, world), DEP)
        self.assertEqual((block.action, block.resource), ("ebs:GetSnapshotBlock", snap))
        self.assertEqual((kms.action, kms.resource), ("kms:Decrypt", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k-1"))
        self.assertEqual(kms.context["kms:ViaService"], f"ec2.{REGION}.amazonaws.com")
        world["snap-0a"]["kms_key_id"] = None
        with self.assertRaisesRegex(authz.MappingError, "encrypted with no KMS key id"):
            authz.checks_for(record("ebs", "GetSnapshotBlock", {"SnapshotId": "snap-0a"}, world), DEP)

    def test_list_changed_blocks_authorizes_on_both_snapshots(self):
        world = {"snap-0a": {"tags": {"airf:case": "IR-1"}}, "snap-0b": {"tags": {}}}
        checks = authz.checks_for(record("ebs", "ListChangedBlocks", {"SnapshotId": "snap-0b", "firstSnapshotId": "snap-0a"}, world), DEP)
        self.assertEqual([(c.resource, c.context) for c in checks],
                         [(f"arn:aws:ec2:{REGION}::snapshot/snap-0b", {}),
                          (f"arn:aws:ec2:{REGION}::snapshot/snap-0a", {"aws:ResourceTag/airf:case": "IR-1"})])

    def test_ebs_operation_names_the_rest_paths_and_leaves_writes_unmapped(self):
        self.assertEqual(ebs_operation("GET", "/snapshots/snap-0a1/blocks"), ("ListSnapshotBlocks", {"SnapshotId": "snap-0a1"}))
        self.assertEqual(ebs_operation("GET", "/snapshots/snap-0a1/blocks/12"),
                         ("GetSnapshotBlock", {"SnapshotId": "snap-0a1", "BlockIndex": "12"}))
        self.assertEqual(ebs_operation("GET", "/snapshots/snap-0a1/changedblocks"), ("ListChangedBlocks", {"SnapshotId": "snap-0a1"}))
        op, _ = ebs_operation("PUT", "/snapshots/snap-0a1/blocks/12")
        self.assertEqual(op, "PutSnapshotBlock")
        with self.assertRaisesRegex(authz.MappingError, "no authorization mapping for ebs:PutSnapshotBlock"):
            authz.checks_for(record("ebs", op, {"SnapshotId": "snap-0a1"}), DEP)

    def test_s3_operation_names_every_object_request_as_s3_does(self):
        rng = random.Random(12)
        expected = {
            ("PUT", ()): "PutObject", ("PUT", ("partNumber", "uploadId")): "UploadPart",
            ("POST", ("uploads",)): "CreateMultipartUpload", ("POST", ("uploadId",)): "CompleteMultipartUpload",
            ("DELETE", ("uploadId",)): "AbortMultipartUpload", ("DELETE", ()): "DeleteObject",
            ("GET", ()): "GetObject", ("GET", ("uploadId",)): "ListParts", ("HEAD", ()): "HeadObject",
        }
        for _ in range(300):
            (method, query), op = rng.choice(list(expected.items()))
            key = "/".join("".join(rng.choice(string.ascii_lowercase) for _ in range(5)) for _ in range(rng.randint(1, 4)))
            self.assertEqual(s3_operation(method, key, {q: "1" for q in query}, {}), op)
        self.assertEqual(s3_operation("HEAD", "", {}, {}), "HeadBucket")
        self.assertEqual(s3_operation("GET", "", {"list-type": "2"}, {}), "ListObjectsV2")
        self.assertEqual(s3_operation("PUT", "k", {}, {"x-amz-copy-source": "b/k"}), "CopyObject")


if __name__ == "__main__":
    unittest.main()
