"""Tests of packaging/cloudformation/checks/deploy_rules.py: the committed templates hold every
deploy-time rule, and each rule fails, naming the resource and the fix, on the defect it is
there for (reintroduced into a copy of the committed templates: the defects of issue 12).

    python3 -m unittest discover -s tests/cloudformation -v
"""

from __future__ import annotations

import copy
import sys
import unittest
from pathlib import Path
from unittest import mock

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "packaging" / "cloudformation" / "checks"))

import deploy_rules  # noqa: E402
from deploy_rules import RULES, SCENARIO, load, stacks_from, timeout_problems  # noqa: E402

CFN = REPO / "packaging" / "cloudformation"
_COMMITTED = {name: load(CFN / name) for name in SCENARIO}


def templates() -> dict[str, dict]:
    return copy.deepcopy(_COMMITTED)


def check(rule: str, t: dict[str, dict]) -> list[str]:
    return RULES[rule](stacks_from(t))


def statements(doc: dict) -> list:
    return doc["Statement"]


def drop_sid(stmts: list, sid: str) -> None:
    """Removes the statement `sid` (plain or inside an Fn::If)."""
    def sid_of(st):
        if "Fn::If" in st:
            return st["Fn::If"][1].get("Sid")
        return st.get("Sid")

    before = len(stmts)
    stmts[:] = [st for st in stmts if sid_of(st) != sid]
    assert len(stmts) == before - 1, f"no statement {sid}"


class Committed(unittest.TestCase):
    def test_every_rule_holds_for_the_committed_templates(self):
        for name, problems in deploy_rules.run(stacks_from(templates())).items():
            with self.subTest(rule=name):
                self.assertEqual(problems, [])


class ConfigDelivery(unittest.TestCase):
    def test_a_role_with_only_AWS_ConfigRole_cannot_deliver(self):
        t = templates()
        del t["1-forensics.yaml"]["Resources"]["ConfigRole"]["Properties"]["Policies"]
        problems = check("config-delivery", t)
        self.assertEqual(len(problems), 2, problems)
        self.assertIn("ConfigRole", problems[0])
        self.assertIn("s3:PutObject", problems[0])
        self.assertIn("InsufficientDeliveryPolicyException", problems[0])
        self.assertIn("s3:GetBucketAcl", problems[1])

    def test_the_role_must_cover_the_channel_prefix(self):
        t = templates()
        t["1-forensics.yaml"]["Resources"]["ConfigDeliveryChannel"]["Properties"]["S3KeyPrefix"] = "aws-config"
        problems = check("config-delivery", t)
        self.assertTrue(any("aws-config/AWSLogs/111111111111/*" in p for p in problems), problems)

    def test_the_acl_condition_must_admit_bucket_owner_full_control(self):
        t = templates()
        pol = t["1-forensics.yaml"]["Resources"]["ConfigRole"]["Properties"]["Policies"][0]["PolicyDocument"]
        pol["Statement"][0]["Condition"]["StringLike"]["s3:x-amz-acl"] = "private"
        self.assertTrue(check("config-delivery", t))


class EvidenceReaders(unittest.TestCase):
    def test_a_reader_of_another_account_needs_the_key_policy(self):
        t = templates()
        drop_sid(statements(t["1-forensics.yaml"]["Resources"]["EvidenceKey"]["Properties"]["KeyPolicy"]), "ListedReadersDecryptThroughS3")
        problems = check("evidence-readers", t)
        # both listed readers: the one of another account and the one of this account
        self.assertEqual(len(problems), 2, problems)
        self.assertTrue(all("EvidenceKey" in p and "Fix:" in p for p in problems), problems)
        self.assertIn("333333333333", problems[0])

    def test_a_reader_of_another_account_needs_the_bucket_policy(self):
        t = templates()
        stmts = statements(t["1-forensics.yaml"]["Resources"]["EvidenceBucketPolicy"]["Properties"]["PolicyDocument"])
        drop_sid(stmts, "ListedReadersReadEvidence")
        problems = check("evidence-readers", t)
        self.assertEqual(len(problems), 2, problems)  # GetObject and GetObjectVersion
        self.assertTrue(all("EvidenceBucketPolicy" in p and "ir-analyst" in p for p in problems), problems)

    def test_the_controller_needs_both(self):
        t = templates()
        stmts = statements(t["1-forensics.yaml"]["Resources"]["EvidenceBucketPolicy"]["Properties"]["PolicyDocument"])
        drop_sid(stmts, "ControllerReadsEvidence")
        self.assertTrue(any("the controller" in p and "s3:GetObject" in p for p in check("evidence-readers", t)))

    def test_the_analysis_role_name_must_agree_between_templates(self):
        t = templates()
        t["1-forensics.yaml"]["Parameters"]["AnalysisRoleName"]["Default"] = "someone-else"
        self.assertTrue(any("no role named someone-else" in p for p in check("evidence-readers", t)))


class ObjectLock(unittest.TestCase):
    def bucket(self, t):
        return t["1-forensics.yaml"]["Resources"]["EvidenceBucket"]["Properties"]

    def test_versioning_must_stay_enabled(self):
        t = templates()
        self.bucket(t)["VersioningConfiguration"]["Status"] = "Suspended"
        self.assertIn("VersioningConfiguration", " ".join(check("object-lock", t)))

    def test_days_and_years_together_are_refused(self):
        t = templates()
        self.bucket(t)["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]["Years"] = 1
        self.assertIn("exactly one of Days or Years", " ".join(check("object-lock", t)))

    def test_a_mode_is_required(self):
        t = templates()
        del self.bucket(t)["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]["Mode"]
        self.assertIn("Mode", " ".join(check("object-lock", t)))

    def test_lock_needs_object_lock_enabled_at_creation(self):
        t = templates()
        del self.bucket(t)["ObjectLockEnabled"]
        self.assertIn("ObjectLockEnabled: true", " ".join(check("object-lock", t)))

    def test_a_retention_parameter_must_stay_positive(self):
        t = templates()
        t["1-forensics.yaml"]["Parameters"]["ObjectLockRetentionDays"]["MinValue"] = 0
        self.assertIn("MinValue 1", " ".join(check("object-lock", t)))


class IncompleteUploads(unittest.TestCase):
    def rules(self, t, bucket="EvidenceBucket"):
        return t["1-forensics.yaml"]["Resources"][bucket]["Properties"]["LifecycleConfiguration"]["Rules"]

    def test_an_evidence_bucket_without_the_abort_rule_fails(self):
        t = templates()
        rules = self.rules(t)
        rules[:] = [r for r in rules if "AbortIncompleteMultipartUpload" not in r]
        problems = " ".join(check("incomplete-uploads", t))
        self.assertIn("EvidenceBucket: no enabled lifecycle rule with AbortIncompleteMultipartUpload", problems)

    def test_a_disabled_rule_does_not_count(self):
        t = templates()
        for r in self.rules(t, "ArtifactBucket"):
            r["Status"] = "Disabled"
        self.assertIn("ArtifactBucket: no enabled lifecycle rule", " ".join(check("incomplete-uploads", t)))

    def test_the_days_parameter_must_stay_positive(self):
        t = templates()
        t["1-forensics.yaml"]["Parameters"]["IncompleteUploadDays"]["MinValue"] = 0
        self.assertIn("IncompleteUploadDays needs MinValue 1", " ".join(check("incomplete-uploads", t)))


class AcquisitionRole(unittest.TestCase):
    def role(self, t):
        return t["4-member.yaml"]["Resources"]["AcquisitionInstanceRole"]["Properties"]

    def test_an_aws_managed_policy_is_refused(self):
        t = templates()
        self.role(t)["ManagedPolicyArns"] = [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"}]
        problems = check("acquisition-role", t)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("AcquisitionInstanceRole attaches arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore", problems[0])

    def test_parameter_reads_are_refused_also_by_wildcard(self):
        t = templates()
        stmts = self.role(t)["Policies"][0]["PolicyDocument"]["Statement"]
        stmts.append({"Sid": "Oops", "Effect": "Allow", "Action": "ssm:Get*", "Resource": "*"})
        problems = check("acquisition-role", t)
        self.assertEqual(len(problems), len(deploy_rules.SSM_PARAMETER_READS), problems)
        self.assertTrue(all("statement Oops allows ssm:GetParameter" in p for p in problems), problems)

    def test_the_ssm_agent_calls_must_stay(self):
        t = templates()
        drop_sid(self.role(t)["Policies"][0]["PolicyDocument"]["Statement"], "SsmAgentRunCommand")
        problems = check("acquisition-role", t)
        self.assertEqual(len(problems), len(deploy_rules.SSM_AGENT_RUN_COMMAND), problems)

    def test_the_evidence_write_needs_the_key_policy(self):
        t = templates()
        drop_sid(statements(t["1-forensics.yaml"]["Resources"]["EvidenceKey"]["Properties"]["KeyPolicy"]), "AcquisitionRolesEncryptThroughS3")
        problems = check("acquisition-role", t)
        self.assertEqual(len(problems), 2, problems)
        self.assertTrue(all("EvidenceKey" in p for p in problems), problems)


class ArtifactRead(unittest.TestCase):
    def test_without_the_dhmc_policy_the_download_is_refused(self):
        t = templates()
        del t["4-member.yaml"]["Resources"]["DefaultHostManagementArtifactRead"]
        problems = check("artifact-read", t)
        self.assertEqual(len(problems), 3, problems)
        self.assertTrue(all("Default Host Management role" in p and "identity policy" in p for p in problems), problems)

    def test_the_bucket_policy_must_admit_a_dhmc_role_under_a_path(self):
        t = templates()
        stmts = statements(t["1-forensics.yaml"]["Resources"]["ArtifactBucketPolicy"]["Properties"]["PolicyDocument"])
        st = stmts[-2]["Fn::If"][1]
        self.assertEqual(st["Sid"], "DefaultHostManagementRolesReadArtifacts")
        st["Condition"]["ArnLike"]["aws:PrincipalArn"] = st["Condition"]["ArnLike"]["aws:PrincipalArn"][:1]
        problems = check("artifact-read", t)
        self.assertEqual(len(problems), 2, problems)  # agent and LiME module
        self.assertTrue(all("ArtifactBucketPolicy does not admit" in p for p in problems), problems)

    def test_empty_name_turns_dhmc_off_and_the_acquisition_role_still_reads(self):
        t = templates()
        for name in ("1-forensics.yaml", "4-member.yaml"):
            t[name]["Parameters"]["DefaultHostManagementRoleName"]["Default"] = ""
        self.assertEqual(check("artifact-read", t), [])
        self.assertNotIn("DefaultHostManagementArtifactRead", dict(stacks_from(t)["4-member.yaml"].resources()))


class Timeout(unittest.TestCase):
    def doc(self, pattern: str, default: str = "21600") -> dict:
        return {"parameters": {"ExecutionTimeout": {"allowedPattern": pattern, "default": default}}, "mainSteps": []}

    def test_main_pattern_fails_and_the_committed_one_passes(self):
        self.assertTrue(timeout_problems("d", self.doc("^[1-9][0-9]{2,5}$")))
        committed = deploy_rules._documents(stacks_from(templates()))
        self.assertEqual(len(committed), 8)
        for where, doc in committed:
            self.assertEqual(timeout_problems(where, doc), [], where)

    def test_a_pattern_refusing_the_maximum_or_the_default_fails(self):
        self.assertTrue(timeout_problems("d", self.doc("^[1-9][0-9]{2,4}$")))  # 172800 refused
        self.assertTrue(timeout_problems("d", self.doc("^(1[0-9]{2})$", default="3600")))


class DocumentsPinned(unittest.TestCase):
    """Finding 8's spirit: whoever sends the member documents cannot choose the agent's bucket
    or the upload's endpoint."""

    def test_the_documents_as_committed_in_ssm_documents_are_refused(self):
        import json  # noqa: PLC0415

        t = templates()
        resources = t["4-member.yaml"]["Resources"]
        raw = json.loads((REPO / "ssm-documents" / "airf-acquire-memory.json").read_text())
        resources["MemoryDocumentResource"]["Properties"]["Content"] = json.dumps(raw)
        problems = check("documents-pinned", t)
        self.assertEqual(len(problems), 2, problems)
        self.assertTrue(any("MemoryDocumentResource: parameter ArtifactBucket" in p for p in problems))
        self.assertTrue(any("parameter EndpointUrl" in p and "its own server" in p for p in problems))

    def test_a_bucket_other_than_the_deployed_one_is_refused(self):
        t = templates()
        content = t["4-member.yaml"]["Resources"]["DiskDocumentResource"]["Properties"]["Content"]
        self.assertIn("Fn::Sub", content)
        content["Fn::Sub"] = content["Fn::Sub"].replace("${ArtifactBucket}", "someone-elses-bucket")
        problems = check("documents-pinned", t)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("DiskDocumentResource: parameter ArtifactBucket", problems[0])


class LambdaArchitecture(unittest.TestCase):
    def test_arm64_is_refused_while_only_x86_64_is_built(self):
        t = templates()
        t["3-security.yaml"]["Parameters"]["LambdaArchitecture"]["AllowedValues"] = ["x86_64", "arm64"]
        problems = check("lambda-arch", t)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("LambdaArchitecture allows arm64", problems[0])


class DeployReadme(unittest.TestCase):
    def test_the_zip_path_of_main_is_refused(self):
        text = (CFN / "README.md").read_text()
        self.assertIn("aws s3 cp ../../dist/airf-controller.zip ", text)
        wrong = text.replace("aws s3 cp ../../dist/airf-controller.zip ", "aws s3 cp airf-controller.zip ")
        real = Path.read_text

        def fake(path, *a, **k):
            return wrong if Path(path) == CFN / "README.md" else real(path, *a, **k)

        with mock.patch.object(Path, "read_text", fake):
            problems = deploy_rules.rule_deploy_readme({})
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("../../dist/airf-controller.zip", problems[0])


class Matcher(unittest.TestCase):
    def test_an_unknown_condition_operator_is_an_error_not_a_pass(self):
        st = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}
        with self.assertRaises(deploy_rules.RuleError):
            deploy_rules.applies(st, "s3:GetObject", "arn:aws:s3:::b/k", {})

    def test_negated_operators_hold_when_the_key_is_absent(self):
        st = {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "*", "Condition": {"StringNotEquals": {"s3:x": "a"}}}
        self.assertTrue(deploy_rules.applies(st, "s3:PutObject", "arn:aws:s3:::b/k", {}))
        self.assertFalse(deploy_rules.applies(st, "s3:PutObject", "arn:aws:s3:::b/k", {"s3:x": "a"}))

    def test_an_account_root_principal_covers_its_roles_only(self):
        st = {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"}, "Action": "kms:Decrypt", "Resource": "*"}
        yes = deploy_rules.Who(arn="arn:aws:iam::222222222222:role/x")
        no = deploy_rules.Who(arn="arn:aws:iam::333333333333:role/x")
        self.assertTrue(deploy_rules.applies(st, "kms:Decrypt", "k", {}, yes))
        self.assertFalse(deploy_rules.applies(st, "kms:Decrypt", "k", {}, no))


if __name__ == "__main__":
    unittest.main()


class SnapshotPath(unittest.TestCase):
    """The snapshot task's wiring across templates 1, 3 and 4 (issue 14), each link broken once."""

    def reader(self, t):
        return t["4-member.yaml"]["Resources"]["SnapshotReaderRole"]["Properties"]

    def reader_statements(self, t):
        return self.reader(t)["Policies"][0]["PolicyDocument"]["Statement"]

    def bucket_statements(self, t):
        return statements(t["1-forensics.yaml"]["Resources"]["EvidenceBucketPolicy"]["Properties"]["PolicyDocument"])

    def only_acquisition_role(self, t, sid):
        """Template 1's statement `sid` back to naming the acquisition role alone."""
        for st in self.bucket_statements(t) + statements(t["1-forensics.yaml"]["Resources"]["EvidenceKey"]["Properties"]["KeyPolicy"]):
            body = st["Fn::If"][1] if "Fn::If" in st else st
            if body.get("Sid") == sid:
                arns = body["Condition"]["ArnLike"]["aws:PrincipalArn"]
                self.assertEqual(len(arns), 2, arns)
                body["Condition"]["ArnLike"]["aws:PrincipalArn"] = arns[0]
                return
        self.fail(f"no statement {sid}")

    def test_a_reader_without_the_tag_condition_is_refused(self):
        t = templates()
        for st in self.reader_statements(t):
            if st.get("Sid") == "ReadAirfSnapshotBlocks":
                del st["Condition"]
        problems = check("snapshot-path", t)
        self.assertEqual(len(problems), 3, problems)
        self.assertTrue(all("without the airf:case tag" in p and "ReadAirfSnapshotBlocks" in p for p in problems), problems)

    def test_a_reader_decrypting_outside_ebs_is_refused(self):
        t = templates()
        for st in self.reader_statements(t):
            if st.get("Sid") == "ReadSnapshotKeysThroughEbs":
                del st["Condition"]
        problems = check("snapshot-path", t)
        self.assertEqual(len(problems), 2, problems)
        self.assertTrue(all("only EBS may use the snapshot keys" in p for p in problems), problems)

    def test_a_reader_trusting_the_whole_security_account_is_refused(self):
        t = templates()
        del self.reader(t)["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]
        problems = check("snapshot-path", t)
        self.assertEqual(len(problems), 2, problems)
        self.assertIn("admits arn:aws:iam::222222222222:role/airf-controller", problems[0])

    def test_the_bucket_policy_must_admit_the_task_role(self):
        t = templates()
        self.only_acquisition_role(t, "AcquisitionRolesPutEvidence")
        problems = check("snapshot-path", t)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("EvidenceBucketPolicy: the snapshot task role", problems[0])
        self.assertIn("cannot s3:PutObject", problems[0])

    def test_the_task_role_must_be_held_to_if_none_match(self):
        t = templates()
        self.only_acquisition_role(t, "AcquisitionRolesNeverOverwrite")
        problems = check("snapshot-path", t)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("without If-None-Match", problems[0])

    def test_the_task_role_must_stay_write_only(self):
        t = templates()
        self.only_acquisition_role(t, "AcquisitionRolesNothingElse")
        problems = check("snapshot-path", t)
        self.assertEqual(len(problems), 3, problems)
        self.assertTrue(all("write-only" in p for p in problems), problems)

    def test_the_key_policy_must_admit_the_task_role(self):
        t = templates()
        self.only_acquisition_role(t, "AcquisitionRolesEncryptThroughS3")
        problems = check("snapshot-path", t)
        self.assertEqual(len(problems), 2, problems)
        self.assertTrue(all("EvidenceKey's key policy does not let the snapshot task role" in p for p in problems), problems)

    def test_the_role_names_must_agree(self):
        t = templates()
        t["1-forensics.yaml"]["Parameters"]["SnapshotTaskRoleName"]["Default"] = "AirfSnapshots"
        problems = check("snapshot-path", t)
        self.assertIn("1-forensics.yaml: SnapshotTaskRoleName defaults to 'AirfSnapshots'", problems[0])
        self.assertTrue(any("cannot s3:PutObject" in p for p in problems), problems)

    def test_the_workflow_must_pass_both_task_roles(self):
        t = templates()
        role = t["3-security.yaml"]["Resources"]["WorkflowRole"]["Properties"]
        drop_sid(role["Policies"][0]["PolicyDocument"]["Statement"], "PassSnapshotTaskRoles")
        problems = check("snapshot-path", t)
        self.assertEqual(len(problems), 2, problems)
        self.assertTrue(all("does not allow iam:PassRole" in p for p in problems), problems)

    def test_the_sync_rule_permissions_are_needed(self):
        t = templates()
        role = t["3-security.yaml"]["Resources"]["WorkflowRole"]["Properties"]
        drop_sid(role["Policies"][0]["PolicyDocument"]["Statement"], "SyncTaskEventsRule")
        problems = check("snapshot-path", t)
        self.assertEqual(len(problems), 3, problems)
        self.assertTrue(all("StepFunctionsGetEventsForECSTaskRule" in p for p in problems), problems)

    def test_a_writable_root_filesystem_is_refused(self):
        t = templates()
        td = t["3-security.yaml"]["Resources"]["SnapshotTaskDefinition"]["Properties"]
        td["ContainerDefinitions"][0]["ReadonlyRootFilesystem"] = False
        problems = check("snapshot-path", t)
        self.assertEqual(problems, ["3-security.yaml: SnapshotTaskDefinition's airf-agent container must have ReadonlyRootFilesystem true"])

    def test_without_subnets_nothing_is_deployed_and_the_controller_env_is_empty(self):
        t = templates()
        params = dict(SCENARIO["3-security.yaml"][1], SnapshotSubnetIds="")
        with mock.patch.dict(SCENARIO, {"3-security.yaml": (SCENARIO["3-security.yaml"][0], params)}):
            stacks = stacks_from(t)
        s3 = stacks["3-security.yaml"]
        self.assertFalse(s3.condition("DeploySnapshots"))
        env = s3.props("ControllerFunction")["Environment"]["Variables"]
        for var in ("AIRF_SNAPSHOT_CLUSTER_ARN", "AIRF_SNAPSHOT_TASK_DEFINITION_ARN", "AIRF_SNAPSHOT_SUBNET_IDS",
                    "AIRF_SNAPSHOT_SECURITY_GROUP_ID"):
            self.assertEqual(env[var], "", var)
        self.assertEqual([lid for lid, _ in s3.resources("AWS::ECS::TaskDefinition")], [])
        self.assertIn("DeploySnapshots is false", RULES["snapshot-path"](stacks)[0])
