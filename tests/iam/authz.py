"""What IAM authorizes for each recorded AWS call: its actions, resources and condition keys.

One table, `MAPPINGS`: (service, operation) -> a function from the recorded call to the
`Check`s AWS makes for it, per the Service Authorization Reference ("Actions, resources, and
condition keys for <service>"): the resource types an action authorizes on (e.g.
ModifyNetworkInterfaceAttribute on the network interface and on every security group it
assigns), the condition keys the request carries (aws:RequestTag/*, aws:TagKeys,
aws:ResourceTag/* from the resource's tags when the call was made, iam:PassedToService,
s3:prefix, ssm:resourceTag/*, ...), and the calls AWS makes as the caller on its behalf
(iam:PassRole with an instance profile, kms:* when S3 or SNS encrypt with a KMS key, tagging on
create).

A call with no entry here is an error that names it ("no authorization mapping for ec2:Foo: add
it to tests/iam/authz.py"): a call the evaluation cannot place must fail the test, not pass it.

A recorded call (tests/iam/record.py writes them) is a dict: service, operation, region,
account, params (the request's query or JSON parameters), s3 (method, bucket, key, query,
headers) for S3, world (what moto held about every resource id the call names, before the call:
tags, and for instances their network interfaces and VPC) and created (ids the call created).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable


class MappingError(ValueError):
    pass


@dataclass
class Check:
    """One authorization: `action` on `resource` (an ARN, or "*" for actions that support no
    resource-level permissions) with these condition keys."""

    action: str
    resource: str
    context: dict[str, str | list[str]] = field(default_factory=dict)
    # Why AWS makes this check when it is not the call's own action ("S3 encrypts with KMS").
    implied_by: str = ""


@dataclass
class Deployment:
    """What the templates deploy that a call's authorization depends on but the call does not
    carry: the KMS key S3 uses for a bucket's default encryption, the key of an encrypted topic.
    """

    bucket_keys: dict[str, str] = field(default_factory=dict)  # bucket name -> key ARN
    topic_keys: dict[str, str] = field(default_factory=dict)  # topic ARN -> key ARN


class Call:
    """A recorded call with helpers to read its parameters and its world."""

    def __init__(self, record: dict):
        self.r = record
        self.service: str = record["service"]
        self.operation: str = record["operation"]
        self.region: str = record.get("region") or "us-east-1"
        self.account: str = record["account"]
        self.params: dict = record.get("params") or {}
        self.world: dict = record.get("world") or {}

    def param(self, name: str, default: str | None = None) -> str:
        v = self.params.get(name, default)
        if v is None:
            raise MappingError(f"{self.service}:{self.operation} without the parameter {name}")
        return str(v)

    def indexed(self, prefix: str) -> list[str]:
        """Query-protocol lists: `GroupId.1`, `GroupId.2`... or `InstanceIds.member.1`... in
        index order; a JSON-protocol list under the same name."""
        if isinstance(self.params.get(prefix), list):
            return [str(v) for v in self.params[prefix]]
        pat = re.compile(re.escape(prefix) + r"(?:\.member)?\.(\d+)$")
        found = sorted((int(m.group(1)), v) for k, v in self.params.items() if (m := pat.match(k)))
        return [str(v) for _, v in found]

    def tag_pairs(self, prefix: str) -> dict[str, str]:
        """`{prefix}.N.Key` / `{prefix}.N.Value` pairs."""
        pat = re.compile(re.escape(prefix) + r"\.(\d+)\.Key$")
        out = {}
        for k, v in self.params.items():
            if m := pat.match(k):
                out[str(v)] = str(self.params.get(f"{prefix}.{m.group(1)}.Value", ""))
        return out

    def tags_of(self, resource_id: str) -> dict[str, str]:
        entry = self.world.get(resource_id)
        if entry is None:
            raise MappingError(
                f"{self.service}:{self.operation}: the recorder saw no resource {resource_id} "
                "(its tags decide the authorization)"
            )
        return entry.get("tags") or {}

    def created(self, kind: str) -> str:
        for rid in self.r.get("created") or []:
            if rid.startswith(kind + "-"):
                return rid
        # The call failed in moto before creating anything; AWS authorizes before that, on the
        # ARN of the resource to be, which no policy of ours names by id.
        return f"{kind}-tobecreated"

    # ARNs
    def ec2_arn(self, resource_id: str) -> str:
        kinds = {
            "i": "instance", "sg": "security-group", "vol": "volume", "vpc": "vpc",
            "eni": "network-interface", "subnet": "subnet", "snap": "snapshot", "ami": "image",
        }
        kind = kinds.get(resource_id.split("-", 1)[0])
        if kind is None:
            raise MappingError(f"no EC2 resource type for the id {resource_id}")
        account = "" if kind in ("snapshot", "image") else self.account
        return f"arn:aws:ec2:{self.region}:{account}:{kind}/{resource_id}"


def resource_tags(tags: dict[str, str], prefix: str = "aws:ResourceTag/") -> dict[str, str]:
    return {f"{prefix}{k}": v for k, v in tags.items()}


def request_tags(tags: dict[str, str]) -> dict[str, str | list[str]]:
    if not tags:
        return {}
    out: dict[str, str | list[str]] = {f"aws:RequestTag/{k}": v for k, v in tags.items()}
    out["aws:TagKeys"] = sorted(tags)
    return out


def wildcard(action: str) -> Callable[[Call, Deployment], list[Check]]:
    """Actions that support no resource-level permissions (the evaluator checks that the
    Service Authorization Reference agrees)."""
    return lambda call, dep: [Check(action, "*")]


def no_permission(call: Call, dep: Deployment) -> list[Check]:
    return []


# ------------------------------------------------------------------ EC2


def _ec2_tagged(call: Call, rid: str, action: str, extra: dict | None = None) -> Check:
    return Check(action, call.ec2_arn(rid), {**resource_tags(call.tags_of(rid)), **(extra or {})})


def ec2_create_tags(call: Call, dep: Deployment) -> list[Check]:
    tags = call.tag_pairs("Tag")
    return [_ec2_tagged(call, rid, "ec2:CreateTags", request_tags(tags)) for rid in call.indexed("ResourceId")]


def ec2_delete_tags(call: Call, dep: Deployment) -> list[Check]:
    keys = {k: "" for k in call.tag_pairs("Tag")}
    return [_ec2_tagged(call, rid, "ec2:DeleteTags", {"aws:TagKeys": sorted(keys)}) for rid in call.indexed("ResourceId")]


def _tag_on_create(call: Call, kind: str, new_arn: str) -> tuple[dict, list[Check]]:
    """Tags given with TagSpecification: aws:RequestTag/* on the create, and the ec2:CreateTags
    AWS checks for tagging on create (with ec2:CreateAction)."""
    tags: dict[str, str] = {}
    n = 1
    while f"TagSpecification.{n}.ResourceType" in call.params:
        if call.params[f"TagSpecification.{n}.ResourceType"] == kind:
            tags.update(call.tag_pairs(f"TagSpecification.{n}.Tag"))
        n += 1
    if not tags:
        return {}, []
    ctx = request_tags(tags)
    implied = Check("ec2:CreateTags", new_arn, {**ctx, "ec2:CreateAction": call.operation},
                    implied_by=f"{call.operation} with tags")
    return ctx, [implied]


def ec2_create_security_group(call: Call, dep: Deployment) -> list[Check]:
    sg = call.ec2_arn(call.created("sg"))
    ctx, implied = _tag_on_create(call, "security-group", sg)
    vpc = call.param("VpcId")
    return [Check("ec2:CreateSecurityGroup", sg, ctx), _ec2_tagged(call, vpc, "ec2:CreateSecurityGroup")] + implied


def ec2_create_snapshot(call: Call, dep: Deployment) -> list[Check]:
    snap = call.ec2_arn(call.created("snap"))
    ctx, implied = _tag_on_create(call, "snapshot", snap)
    vol = call.param("VolumeId")
    return [Check("ec2:CreateSnapshot", snap, ctx), _ec2_tagged(call, vol, "ec2:CreateSnapshot")] + implied


def ec2_modify_instance_attribute(call: Call, dep: Deployment) -> list[Check]:
    iid = call.param("InstanceId")
    checks = [_ec2_tagged(call, iid, "ec2:ModifyInstanceAttribute")]
    checks += [_ec2_tagged(call, sg, "ec2:ModifyInstanceAttribute") for sg in call.indexed("GroupId")]
    return checks


def ec2_modify_network_interface_attribute(call: Call, dep: Deployment) -> list[Check]:
    eni = call.param("NetworkInterfaceId")
    checks = [_ec2_tagged(call, eni, "ec2:ModifyNetworkInterfaceAttribute")]
    checks += [_ec2_tagged(call, sg, "ec2:ModifyNetworkInterfaceAttribute") for sg in call.indexed("SecurityGroupId")]
    return checks


def _security_group_rule(action: str):
    def mapping(call: Call, dep: Deployment) -> list[Check]:
        return [_ec2_tagged(call, call.param("GroupId"), action)]

    return mapping


def _pass_profile_role(call: Call, profile: str) -> list[Check]:
    entry = call.world.get(f"instance-profile:{profile}")
    if entry is None:
        raise MappingError(f"{call.operation}: the recorder saw no instance profile {profile}")
    return [
        Check("iam:PassRole", role, {"iam:PassedToService": "ec2.amazonaws.com"},
              implied_by=f"{call.operation} passes the profile's role")
        for role in entry["roles"]
    ]


def _profile_param(call: Call) -> str:
    name = call.params.get("IamInstanceProfile.Name")
    if name:
        return str(name)
    arn = call.param("IamInstanceProfile.Arn")
    return arn.rsplit("/", 1)[1]


def ec2_associate_iam_instance_profile(call: Call, dep: Deployment) -> list[Check]:
    iid = call.param("InstanceId")
    return [_ec2_tagged(call, iid, "ec2:AssociateIamInstanceProfile")] + _pass_profile_role(call, _profile_param(call))


def ec2_replace_iam_instance_profile_association(call: Call, dep: Deployment) -> list[Check]:
    assoc = call.world.get(call.param("AssociationId"))
    if assoc is None:
        raise MappingError(f"{call.operation}: the recorder saw no association {call.param('AssociationId')}")
    iid = assoc["instance"]
    return [_ec2_tagged(call, iid, "ec2:ReplaceIamInstanceProfileAssociation")] + _pass_profile_role(
        call, _profile_param(call)
    )


def ec2_disassociate_iam_instance_profile(call: Call, dep: Deployment) -> list[Check]:
    assoc = call.world.get(call.param("AssociationId"))
    if assoc is None:
        raise MappingError(f"{call.operation}: the recorder saw no association {call.param('AssociationId')}")
    return [_ec2_tagged(call, assoc["instance"], "ec2:DisassociateIamInstanceProfile")]


def ec2_instances(action: str):
    """Actions on `InstanceId.N` instances (StopInstances...)."""

    def mapping(call: Call, dep: Deployment) -> list[Check]:
        ids = call.indexed("InstanceId") or [call.param("InstanceId")]
        return [_ec2_tagged(call, i, action) for i in ids]

    return mapping


def ec2_delete_security_group(call: Call, dep: Deployment) -> list[Check]:
    return [_ec2_tagged(call, call.param("GroupId"), "ec2:DeleteSecurityGroup")]


# ------------------------------------------------------------------ IAM


def _role_arn(call: Call, name: str) -> str:
    path = (call.world.get(f"role:{name}") or {}).get("path", "/")
    return f"arn:aws:iam::{call.account}:role{path}{name}"


def iam_on_role(action: str, extra: Callable[[Call], dict] | None = None):
    def mapping(call: Call, dep: Deployment) -> list[Check]:
        name = call.param("RoleName")
        return [Check(action, _role_arn(call, name), extra(call) if extra else {})]

    return mapping


def iam_on_policy(action: str):
    """Actions on a managed policy named by `PolicyArn` (its versions included)."""
    return lambda call, dep: [Check(action, call.param("PolicyArn"))]


def iam_get_instance_profile(call: Call, dep: Deployment) -> list[Check]:
    name = call.param("InstanceProfileName")
    path = (call.world.get(f"instance-profile:{name}") or {}).get("path", "/")
    return [Check("iam:GetInstanceProfile", f"arn:aws:iam::{call.account}:instance-profile{path}{name}")]


# ------------------------------------------------------------------ SSM, STS, SFN, SNS, ASG, ELB


def ssm_send_command(call: Call, dep: Deployment) -> list[Check]:
    doc = call.param("DocumentName")
    if doc.startswith("arn:"):
        doc_arn = doc
    elif doc.startswith("AWS-"):
        doc_arn = f"arn:aws:ssm:{call.region}::document/{doc}"
    else:
        doc_arn = f"arn:aws:ssm:{call.region}:{call.account}:document/{doc}"
    checks = [Check("ssm:SendCommand", doc_arn)]
    for iid in call.indexed("InstanceIds"):
        tags = call.tags_of(iid)
        ctx = {**resource_tags(tags), **resource_tags(tags, "ssm:resourceTag/")}
        checks.append(Check("ssm:SendCommand", call.ec2_arn(iid), ctx))
    return checks


def sts_assume_role(call: Call, dep: Deployment) -> list[Check]:
    return [Check("sts:AssumeRole", call.param("RoleArn"))]


def sfn_start_execution(call: Call, dep: Deployment) -> list[Check]:
    return [Check("states:StartExecution", call.param("stateMachineArn"))]


def sfn_on_execution(action: str):
    return lambda call, dep: [Check(action, call.param("executionArn"))]


def sfn_on_state_machine(action: str):
    return lambda call, dep: [Check(action, call.param("stateMachineArn"))]


def _kms(action: str, key: str, service: str, call: Call, why: str, extra: dict | None = None) -> Check:
    return Check(action, key, {"kms:ViaService": f"{service}.{call.region}.amazonaws.com",
                               "kms:CallerAccount": call.account, **(extra or {})}, implied_by=why)


def kms_sign(call: Call, dep: Deployment) -> list[Check]:
    """Sign on the key (KeyId may be an id or an ARN), with the condition keys Sign carries."""
    key = call.param("KeyId")
    if not key.startswith("arn:"):
        key = f"arn:aws:kms:{call.region}:{call.account}:key/{key}"
    return [Check("kms:Sign", key, {
        "kms:SigningAlgorithm": call.param("SigningAlgorithm"),
        "kms:MessageType": call.param("MessageType", "RAW"),
        "kms:CallerAccount": call.account,
    })]


def sns_publish(call: Call, dep: Deployment) -> list[Check]:
    topic = call.param("TopicArn")
    checks = [Check("sns:Publish", topic)]
    key = dep.topic_keys.get(topic)
    if key:
        why = "SNS encrypts the message with the topic's KMS key as the publisher"
        checks += [_kms("kms:GenerateDataKey", key, "sns", call, why), _kms("kms:Decrypt", key, "sns", call, why)]
    return checks


def autoscaling_on_group(action: str):
    def mapping(call: Call, dep: Deployment) -> list[Check]:
        name = call.param("AutoScalingGroupName")
        entry = call.world.get(f"asg:{name}")
        if entry is None:
            raise MappingError(f"{call.operation}: the recorder saw no Auto Scaling group {name}")
        return [Check(action, entry["arn"], resource_tags(entry.get("tags") or {}))]

    return mapping


def elb_on_target_group(action: str):
    return lambda call, dep: [Check(action, call.param("TargetGroupArn"))]


# ------------------------------------------------------------------ EBS direct APIs (REST: record.py
# names the operation from the path; SnapshotId is the path's snapshot)


def _ebs_kms(call: Call, snap: str) -> list[Check]:
    """EBS decrypts an encrypted snapshot's blocks with its KMS key as the caller, and calls KMS
    as ec2.<region>.amazonaws.com (the service the aws/ebs key's policy admits)."""
    entry = call.world.get(snap) or {}
    if not entry.get("encrypted"):
        return []
    key = entry.get("kms_key_id")
    if not key:
        raise MappingError(f"{call.service}:{call.operation}: snapshot {snap} is encrypted with no KMS key id "
                           "the recorder could see: create it with one")
    if not str(key).startswith("arn:"):
        key = f"arn:aws:kms:{call.region}:{call.account}:key/{key}"
    return [_kms("kms:Decrypt", str(key), "ec2", call, "EBS decrypts the snapshot's blocks with its KMS key as the caller")]


def ebs_read(action: str, decrypts: bool):
    """The read EBS direct APIs, authorized on the snapshot (Service Authorization Reference,
    Amazon Elastic Block Store: resource type snapshot*, aws:ResourceTag/*); ListChangedBlocks
    also on its firstSnapshotId."""

    def mapping(call: Call, dep: Deployment) -> list[Check]:
        snaps = [call.param("SnapshotId")]
        first = call.params.get("firstSnapshotId")
        if action == "ebs:ListChangedBlocks" and first:
            snaps.append(str(first))
        checks = [_ec2_tagged(call, snap, action) for snap in snaps]
        if decrypts:
            checks += _ebs_kms(call, snaps[0])
        return checks

    return mapping


# ------------------------------------------------------------------ S3 (REST: the operation is
# named by record.py from the method, path and query)


def _s3_object_arn(call: Call) -> str:
    s3 = call.r["s3"]
    return f"arn:aws:s3:::{s3['bucket']}/{s3['key']}"


def _s3_headers(call: Call) -> dict[str, str]:
    return {k.lower(): v for k, v in (call.r["s3"].get("headers") or {}).items()}


def _s3_put_context(call: Call, creation: bool) -> dict:
    h = _s3_headers(call)
    ctx: dict[str, str | list[str]] = {"s3:ObjectCreationOperation": "true" if creation else "false"}
    for header in ("x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id",
                   "x-amz-acl", "x-amz-storage-class", "x-amz-object-lock-mode"):
        if header in h:
            ctx[f"s3:{header}"] = h[header]
    if "if-none-match" in h:
        ctx["s3:if-none-match"] = h["if-none-match"]
    return ctx


def _s3_kms(call: Call, dep: Deployment, actions: list[str]) -> list[Check]:
    """SSE-KMS: S3 calls KMS as the caller, with the bucket's default key or the request's."""
    s3 = call.r["s3"]
    h = _s3_headers(call)
    key = h.get("x-amz-server-side-encryption-aws-kms-key-id") or dep.bucket_keys.get(s3["bucket"])
    if not key or (h.get("x-amz-server-side-encryption") not in (None, "aws:kms", "aws:kms:dsse")):
        return []
    why = "S3 encrypts/decrypts the object with its KMS key as the caller"
    ctx = {"kms:EncryptionContext:aws:s3:arn": _s3_object_arn(call)}
    return [_kms(a, key, "s3", call, why, ctx) for a in actions]


def s3_object(action: str, creation: bool | None, kms: list[str]):
    def mapping(call: Call, dep: Deployment) -> list[Check]:
        ctx = {} if creation is None else _s3_put_context(call, creation)
        return [Check(action, _s3_object_arn(call), ctx)] + _s3_kms(call, dep, kms)

    return mapping


def s3_list_bucket(call: Call, dep: Deployment) -> list[Check]:
    s3 = call.r["s3"]
    q = s3.get("query") or {}
    ctx: dict[str, str | list[str]] = {}
    for name in ("prefix", "delimiter", "max-keys"):
        if name in q:
            ctx[f"s3:{name}"] = q[name]
    return [Check("s3:ListBucket", f"arn:aws:s3:::{s3['bucket']}", ctx)]


def s3_bucket(action: str):
    return lambda call, dep: [Check(action, f"arn:aws:s3:::{call.r['s3']['bucket']}")]


# ------------------------------------------------------------------ the table

MAPPINGS: dict[tuple[str, str], Callable[[Call, Deployment], list[Check]]] = {
    # EC2
    ("ec2", "DescribeInstances"): wildcard("ec2:DescribeInstances"),
    ("ec2", "DescribeIamInstanceProfileAssociations"): wildcard("ec2:DescribeIamInstanceProfileAssociations"),
    ("ec2", "DescribeSecurityGroups"): wildcard("ec2:DescribeSecurityGroups"),
    ("ec2", "DescribeSecurityGroupRules"): wildcard("ec2:DescribeSecurityGroupRules"),
    ("ec2", "DescribeSnapshots"): wildcard("ec2:DescribeSnapshots"),
    ("ec2", "DescribeVolumes"): wildcard("ec2:DescribeVolumes"),
    ("ec2", "DescribeVpcs"): wildcard("ec2:DescribeVpcs"),
    ("ec2", "DescribeSubnets"): wildcard("ec2:DescribeSubnets"),
    ("ec2", "DescribeVpcEndpoints"): wildcard("ec2:DescribeVpcEndpoints"),
    ("ec2", "DescribeRouteTables"): wildcard("ec2:DescribeRouteTables"),
    ("ec2", "DescribePrefixLists"): wildcard("ec2:DescribePrefixLists"),
    ("ec2", "DescribeManagedPrefixLists"): wildcard("ec2:DescribeManagedPrefixLists"),
    ("ec2", "DescribeNetworkInterfaces"): wildcard("ec2:DescribeNetworkInterfaces"),
    ("ec2", "DescribeFlowLogs"): wildcard("ec2:DescribeFlowLogs"),
    # Authorized on the instance (Service Authorization Reference: resource type instance*).
    ("ec2", "GetConsoleOutput"): ec2_instances("ec2:GetConsoleOutput"),
    ("ec2", "GetConsoleScreenshot"): ec2_instances("ec2:GetConsoleScreenshot"),
    # Authorized on the instance (Service Authorization Reference: resource type instance*).
    ("ec2", "DescribeInstanceAttribute"): ec2_instances("ec2:DescribeInstanceAttribute"),
    ("ec2", "DescribeTags"): wildcard("ec2:DescribeTags"),
    ("ec2", "CreateTags"): ec2_create_tags,
    ("ec2", "DeleteTags"): ec2_delete_tags,
    ("ec2", "CreateSecurityGroup"): ec2_create_security_group,
    ("ec2", "DeleteSecurityGroup"): ec2_delete_security_group,
    ("ec2", "AuthorizeSecurityGroupIngress"): _security_group_rule("ec2:AuthorizeSecurityGroupIngress"),
    ("ec2", "AuthorizeSecurityGroupEgress"): _security_group_rule("ec2:AuthorizeSecurityGroupEgress"),
    ("ec2", "RevokeSecurityGroupIngress"): _security_group_rule("ec2:RevokeSecurityGroupIngress"),
    ("ec2", "RevokeSecurityGroupEgress"): _security_group_rule("ec2:RevokeSecurityGroupEgress"),
    ("ec2", "CreateSnapshot"): ec2_create_snapshot,
    ("ec2", "ModifyInstanceAttribute"): ec2_modify_instance_attribute,
    ("ec2", "ModifyNetworkInterfaceAttribute"): ec2_modify_network_interface_attribute,
    ("ec2", "AssociateIamInstanceProfile"): ec2_associate_iam_instance_profile,
    ("ec2", "ReplaceIamInstanceProfileAssociation"): ec2_replace_iam_instance_profile_association,
    ("ec2", "DisassociateIamInstanceProfile"): ec2_disassociate_iam_instance_profile,
    ("ec2", "StopInstances"): ec2_instances("ec2:StopInstances"),
    ("ec2", "ModifyInstanceMetadataOptions"): ec2_instances("ec2:ModifyInstanceMetadataOptions"),
    # IAM
    ("iam", "GetInstanceProfile"): iam_get_instance_profile,
    ("iam", "GetRole"): iam_on_role("iam:GetRole"),
    ("iam", "PutRolePolicy"): iam_on_role("iam:PutRolePolicy"),
    ("iam", "GetRolePolicy"): iam_on_role("iam:GetRolePolicy"),
    ("iam", "DeleteRolePolicy"): iam_on_role("iam:DeleteRolePolicy"),
    ("iam", "ListRolePolicies"): iam_on_role("iam:ListRolePolicies"),
    ("iam", "ListAttachedRolePolicies"): iam_on_role("iam:ListAttachedRolePolicies"),
    ("iam", "PutRolePermissionsBoundary"): iam_on_role(
        "iam:PutRolePermissionsBoundary", lambda c: {"iam:PermissionsBoundary": c.param("PermissionsBoundary")}
    ),
    ("iam", "DeleteRolePermissionsBoundary"): iam_on_role("iam:DeleteRolePermissionsBoundary"),
    ("iam", "AttachRolePolicy"): iam_on_role(
        "iam:AttachRolePolicy", lambda c: {"iam:PolicyARN": c.param("PolicyArn")}
    ),
    ("iam", "DetachRolePolicy"): iam_on_role(
        "iam:DetachRolePolicy", lambda c: {"iam:PolicyARN": c.param("PolicyArn")}
    ),
    ("iam", "GetPolicy"): iam_on_policy("iam:GetPolicy"),
    ("iam", "GetPolicyVersion"): iam_on_policy("iam:GetPolicyVersion"),
    ("iam", "ListPolicyVersions"): iam_on_policy("iam:ListPolicyVersions"),
    ("iam", "CreatePolicyVersion"): iam_on_policy("iam:CreatePolicyVersion"),
    ("iam", "DeletePolicyVersion"): iam_on_policy("iam:DeletePolicyVersion"),
    ("iam", "SetDefaultPolicyVersion"): iam_on_policy("iam:SetDefaultPolicyVersion"),
    # CloudTrail (LookupEvents supports no resource-level permissions)
    ("cloudtrail", "LookupEvents"): wildcard("cloudtrail:LookupEvents"),
    # SSM
    ("ssm", "DescribeInstanceInformation"): wildcard("ssm:DescribeInstanceInformation"),
    ("ssm", "GetCommandInvocation"): wildcard("ssm:GetCommandInvocation"),
    ("ssm", "ListCommandInvocations"): wildcard("ssm:ListCommandInvocations"),
    ("ssm", "ListCommands"): wildcard("ssm:ListCommands"),
    ("ssm", "SendCommand"): ssm_send_command,
    # STS
    ("sts", "AssumeRole"): sts_assume_role,
    ("sts", "GetCallerIdentity"): no_permission,  # needs no permission (IAM User Guide)
    # Step Functions
    ("states", "StartExecution"): sfn_start_execution,
    ("states", "DescribeExecution"): sfn_on_execution("states:DescribeExecution"),
    ("states", "ListExecutions"): sfn_on_state_machine("states:ListExecutions"),
    # SNS
    ("sns", "Publish"): sns_publish,
    # KMS (the countersignature key)
    ("kms", "Sign"): kms_sign,
    # Auto Scaling
    ("autoscaling", "DescribeAutoScalingInstances"): wildcard("autoscaling:DescribeAutoScalingInstances"),
    ("autoscaling", "DescribeAutoScalingGroups"): wildcard("autoscaling:DescribeAutoScalingGroups"),
    ("autoscaling", "DetachInstances"): autoscaling_on_group("autoscaling:DetachInstances"),
    ("autoscaling", "AttachInstances"): autoscaling_on_group("autoscaling:AttachInstances"),
    ("autoscaling", "EnterStandby"): autoscaling_on_group("autoscaling:EnterStandby"),
    ("autoscaling", "ExitStandby"): autoscaling_on_group("autoscaling:ExitStandby"),
    # Elastic Load Balancing v2
    ("elasticloadbalancing", "DescribeTargetGroups"): wildcard("elasticloadbalancing:DescribeTargetGroups"),
    ("elasticloadbalancing", "DescribeTargetHealth"): wildcard("elasticloadbalancing:DescribeTargetHealth"),
    ("elasticloadbalancing", "DeregisterTargets"): elb_on_target_group("elasticloadbalancing:DeregisterTargets"),
    ("elasticloadbalancing", "RegisterTargets"): elb_on_target_group("elasticloadbalancing:RegisterTargets"),
    # EBS direct APIs (reads only: a write has no mapping and fails the evaluation)
    ("ebs", "ListSnapshotBlocks"): ebs_read("ebs:ListSnapshotBlocks", False),
    ("ebs", "ListChangedBlocks"): ebs_read("ebs:ListChangedBlocks", False),
    ("ebs", "GetSnapshotBlock"): ebs_read("ebs:GetSnapshotBlock", True),
    # S3 (CreateMultipartUpload, UploadPart and CompleteMultipartUpload are s3:PutObject;
    # HeadObject is s3:GetObject; HeadBucket and ListObjectsV2 are s3:ListBucket)
    ("s3", "PutObject"): s3_object("s3:PutObject", True, ["kms:GenerateDataKey"]),
    ("s3", "CreateMultipartUpload"): s3_object("s3:PutObject", False, ["kms:GenerateDataKey", "kms:Decrypt"]),
    ("s3", "UploadPart"): s3_object("s3:PutObject", False, []),
    ("s3", "CompleteMultipartUpload"): s3_object("s3:PutObject", True, ["kms:Decrypt"]),
    ("s3", "AbortMultipartUpload"): s3_object("s3:AbortMultipartUpload", None, []),
    ("s3", "ListParts"): s3_object("s3:ListMultipartUploadParts", None, []),
    ("s3", "GetObject"): s3_object("s3:GetObject", None, ["kms:Decrypt"]),
    ("s3", "HeadObject"): s3_object("s3:GetObject", None, ["kms:Decrypt"]),
    ("s3", "ListObjectsV2"): s3_list_bucket,
    ("s3", "ListObjects"): s3_list_bucket,
    ("s3", "HeadBucket"): s3_list_bucket,
    ("s3", "ListMultipartUploads"): s3_bucket("s3:ListBucketMultipartUploads"),
    ("s3", "GetBucketLocation"): s3_bucket("s3:GetBucketLocation"),
}


def checks_for(record: dict, deployment: Deployment) -> list[Check]:
    """The authorizations AWS makes for one recorded call."""
    key = (record["service"], record["operation"])
    mapping = MAPPINGS.get(key)
    if mapping is None:
        raise MappingError(f"no authorization mapping for {key[0]}:{key[1]}: add it to tests/iam/authz.py")
    return mapping(Call(record), deployment)
