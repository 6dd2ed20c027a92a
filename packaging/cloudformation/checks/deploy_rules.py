#!/usr/bin/env python3
"""Deploy-time rules: what AWS enforces when airf's stacks are created or first used, which
cfn-lint, checkov and the emulators (moto evaluates no policy) do not check.

    packaging/cloudformation/checks/deploy_rules.py [--templates DIR]

The templates are resolved for one concrete deployment (SCENARIO: the Forensics, Security,
member and reader accounts, one region, the parameters an operator gives; intrinsic functions
and conditions evaluated), then each rule checks a documented AWS requirement:

  config-delivery   AWS Config delivers to a bucket of its own account with the recorder's IAM
                    role: that role needs s3:PutObject on <bucket>/<prefix>/AWSLogs/<account>/*
                    (x-amz-acl bucket-owner-full-control) and s3:GetBucketAcl on the bucket, or
                    PutDeliveryChannel fails with InsufficientDeliveryPolicyException (AWS Config
                    Developer Guide, "Permissions for the IAM Role Assigned to AWS Config").
  evidence-readers  every principal that reads evidence (the controller, the analysis
                    workstation, EvidenceReaderRoleArns) is admitted by the evidence key's policy
                    for kms:Decrypt through S3 and, from another account, by the bucket policy
                    (cross-account access needs both the resource and the identity policy).
  object-lock       Object Lock needs ObjectLockEnabled, versioning Enabled, and a default
                    retention with a Mode and exactly one of Days or Years (S3 API,
                    DefaultRetention; CloudFormation AWS::S3::Bucket).
  incomplete-uploads every bucket has an enabled lifecycle rule with AbortIncompleteMultipartUpload
                    (DaysAfterInitiation a positive integer, or a parameter that cannot be less
                    than 1): an agent killed mid-upload, or a CreateMultipartUpload retried after
                    a lost response, leaves an upload whose parts are stored, and billed, until
                    it is aborted (S3 User Guide, "Configuring a bucket lifecycle configuration
                    to delete incomplete multipart uploads").
  acquisition-role  the role a suspect holds for hours attaches no AWS managed policy, allows no
                    ssm:GetParameter*, yet allows the SSM Agent's Run Command calls and the
                    evidence write (bucket and key policy included).
  artifact-read     the acquisition role and, with Default Host Management, the DHMC role of a
                    member account may read agent/ and lime/ of the artifact bucket: identity
                    policy (template 4) and bucket policy (template 1).
  ssm-timeout       no SSM document accepts an ExecutionTimeout above 172800, SSM's maximum
                    for timeoutSeconds.
  lambda-arch       template 3 offers only the Lambda architectures build-controller.sh builds.
  deploy-readme     the deploy steps upload the zip that build-controller.sh writes.
  snapshot-path     the snapshot task (template 3, deployed with subnets) is wired end to end:
                    the three templates agree on the role names; the task role may assume the
                    member reader role, whose trust admits it; the reader may DescribeSnapshots and
                    use the read EBS direct APIs only on snapshots tagged airf:case, and decrypt
                    only through EBS (kms:ViaService ec2.<region>); the task role writes evidence
                    as the acquisition role does (identity, bucket and key policy; a put without
                    If-None-Match is denied, no read); the workflow role may RunTask the task
                    definition in its cluster, pass both task roles to ECS, watch and stop its
                    tasks and manage the ecs:runTask.sync rule; the task definition runs the
                    airf-agent container read-only with those roles; the controller's
                    AIRF_SNAPSHOT_* environment names these resources.

Each problem names the template, the resource and the fix. Exit status 1 when any rule fails.
Statements are matched by a small matcher (actions, resources, principals and the condition
operators the templates use; any other operator is an error, never a silent pass); it is no
general IAM evaluator. Standard library and cfn-lint's YAML reader only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CFN = HERE.parent
REPO = CFN.parents[1]

PARTITION = "aws"
REGION = "eu-west-1"
ORG = "o-abcdefghij"
FORENSICS = "111111111111"
SECURITY = "222222222222"
MEMBER = "444444444444"
OUTSIDER_READER = "arn:aws:iam::333333333333:role/ir-analyst"  # another account of the organization
LOCAL_READER = f"arn:aws:iam::{FORENSICS}:role/forensics-analyst"
CONTROLLER = f"arn:aws:iam::{SECURITY}:role/airf-controller"
KEY_ID = "0123abcd-4567-89ef-0123-456789abcdef"
EVIDENCE_BUCKET = f"airf-evidence-{FORENSICS}-{REGION}"
ARTIFACT_BUCKET = f"airf-artifacts-{FORENSICS}-{REGION}"
KEY_ARN = f"arn:aws:kms:{REGION}:{FORENSICS}:key/{KEY_ID}"
# The Systems Manager console creates the DHMC role under service-role/.
DHMC_PATH = "service-role/"
ORG_ACCOUNTS = {FORENSICS, SECURITY, MEMBER, "333333333333"}

# template file -> (account it is deployed in, parameters the operator gives)
SCENARIO: dict[str, tuple[str, dict[str, object]]] = {
    "1-forensics.yaml": (
        FORENSICS,
        {"OrganizationId": ORG, "ControllerRoleArn": CONTROLLER, "EvidenceReaderRoleArns": f"{OUTSIDER_READER},{LOCAL_READER}"},
    ),
    "2-analysis.yaml": (
        FORENSICS,
        {
            "EvidenceBucket": EVIDENCE_BUCKET,
            "EvidenceKmsKeyArn": KEY_ARN,
            "ArtifactBucket": ARTIFACT_BUCKET,
            "LogBucket": f"airf-logs-{FORENSICS}-{REGION}",
        },
    ),
    "3-security.yaml": (
        SECURITY,
        {
            "CodeBucket": f"airf-code-{SECURITY}-{REGION}",
            "OrganizationId": ORG,
            "EvidenceBucket": EVIDENCE_BUCKET,
            "EvidenceRegion": REGION,
            "EvidenceKmsKeyArn": KEY_ARN,
            "ArtifactBucket": ARTIFACT_BUCKET,
            "AgentVersion": "1.0.0",
            "AgentSha256": "0" * 64,
            "SnapshotImageUri": f"{SECURITY}.dkr.ecr.{REGION}.amazonaws.com/airf-agent:1.0.0",
            "SnapshotVpcId": "vpc-0123456789abcdef0",
            "SnapshotSubnetIds": "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
        },
    ),
    "4-member.yaml": (
        MEMBER,
        {
            "HomeRegion": REGION,
            "ControllerRoleArn": CONTROLLER,
            "SecurityEventBusArn": f"arn:aws:events:{REGION}:{SECURITY}:event-bus/airf-security",
            "EvidenceBucket": EVIDENCE_BUCKET,
            "EvidenceRegion": REGION,
            "EvidenceKmsKeyArn": KEY_ARN,
            "ArtifactBucket": ARTIFACT_BUCKET,
        },
    ),
}

# What the SSM Agent calls for Run Command (amazon-ssm-agent: ec2roleprovider, the MGS control
# channel, the MDS interactor); ssm-documents/README.md explains each.
SSM_AGENT_RUN_COMMAND = [
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:OpenControlChannel",
    "ec2messages:GetMessages",
    "ec2messages:AcknowledgeMessage",
    "ec2messages:FailMessage",
    "ec2messages:SendReply",
]
SSM_PARAMETER_READS = ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory"]
SSM_MAX_TIMEOUT = 172800


class RuleError(Exception):
    """A template the rules cannot read (unknown intrinsic, missing parameter...)."""


# ------------------------------------------------------------------ resolving a template

NOVALUE = object()


def load(path: Path) -> dict:
    from cfnlint.decode import cfn_yaml  # noqa: PLC0415 - cfn-lint's reader knows !Ref, !Sub...

    # plain dicts, lists and strings: the rules (and the tests) may copy and change them
    return json.loads(json.dumps(cfn_yaml.load(str(path))))


def as_list(node) -> list:
    if node is None:
        return []
    return list(node) if isinstance(node, list) else [node]


class Stack:
    """One template as deployed in `account` and REGION with `params`."""

    def __init__(self, name: str, template: dict, account: str, params: dict[str, object]):
        self.name = name
        self.t = template
        self.account = account
        self.params: dict[str, object] = {}
        for pname, spec in (template.get("Parameters") or {}).items():
            value = params.get(pname, spec.get("Default"))
            if value is None:
                continue
            if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
                value = value.split(",")
            self.params[pname] = value
        self._conditions: dict[str, bool] = {}

    # --- conditions
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            expr = (self.t.get("Conditions") or {}).get(name)
            if expr is None:
                raise RuleError(f"{self.name}: no condition {name}")
            self._conditions[name] = self._cond(expr)
        return self._conditions[name]

    def _cond(self, node) -> bool:
        (fn, arg), = node.items()
        if fn == "Fn::Equals":
            return self.resolve(arg[0]) == self.resolve(arg[1])
        if fn == "Fn::Not":
            return not self._cond(arg[0])
        if fn == "Fn::And":
            return all(self._cond(a) for a in arg)
        if fn == "Fn::Or":
            return any(self._cond(a) for a in arg)
        if fn == "Condition":
            return self.condition(arg)
        raise RuleError(f"{self.name}: condition function {fn} not supported")

    # --- resources
    def resources(self, rtype: str | None = None):
        for lid, res in (self.t.get("Resources") or {}).items():
            if rtype is not None and res.get("Type") != rtype:
                continue
            if "Condition" in res and not self.condition(res["Condition"]):
                continue
            yield lid, res

    def props(self, lid: str) -> dict:
        res = (self.t.get("Resources") or {}).get(lid)
        if res is None:
            raise RuleError(f"{self.name}: no resource {lid}")
        return self.resolve(res.get("Properties") or {})

    def physical_name(self, lid: str) -> str:
        res = self.t["Resources"][lid]
        key = {"AWS::S3::Bucket": "BucketName", "AWS::IAM::Role": "RoleName"}.get(res["Type"])
        if key and key in (res.get("Properties") or {}):
            return self.resolve(res["Properties"][key])
        if res["Type"] == "AWS::KMS::Key":
            return KEY_ID
        return lid

    def arn(self, lid: str) -> str:
        rtype = self.t["Resources"][lid]["Type"]
        name = self.physical_name(lid)
        if rtype == "AWS::S3::Bucket":
            return f"arn:{PARTITION}:s3:::{name}"
        if rtype == "AWS::IAM::Role":
            return f"arn:{PARTITION}:iam::{self.account}:role/{name}"
        if rtype == "AWS::KMS::Key":
            return f"arn:{PARTITION}:kms:{REGION}:{self.account}:key/{name}"
        return f"{lid}.Arn"

    # --- intrinsic functions
    def ref(self, name: str):
        pseudo = {
            "AWS::AccountId": self.account,
            "AWS::Region": REGION,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "airf",
            "AWS::NoValue": NOVALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in (self.t.get("Parameters") or {}):
            raise RuleError(f"{self.name}: parameter {name} has no value in the scenario")
        if name in (self.t.get("Resources") or {}):
            return self.physical_name(name)
        raise RuleError(f"{self.name}: Ref to unknown {name}")

    def getatt(self, lid: str, attr: str) -> str:
        if attr == "Arn":
            return self.arn(lid)
        return f"{lid}.{attr}"

    def sub(self, text: str, variables: dict) -> str:
        def one(m: re.Match) -> str:
            expr = m[1]
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            if expr in variables:
                return str(variables[expr])
            if "." in expr and not expr.startswith("AWS::"):
                lid, attr = expr.split(".", 1)
                return self.getatt(lid, attr)
            value = self.ref(expr)
            if isinstance(value, list):
                raise RuleError(f"{self.name}: ${{{expr}}} is a list")
            return str(value)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resolve(self, node):
        if isinstance(node, dict):
            if len(node) == 1:
                (fn, arg), = node.items()
                if fn == "Ref":
                    return self.ref(arg)
                if fn == "Fn::GetAtt":
                    lid, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                    return self.getatt(lid, attr)
                if fn == "Fn::Sub":
                    if isinstance(arg, list):
                        return self.sub(arg[0], {k: self.resolve(v) for k, v in arg[1].items()})
                    return self.sub(arg, {})
                if fn == "Fn::Join":
                    items = self.resolve(arg[1])
                    return arg[0].join(str(i) for i in items)
                if fn == "Fn::Split":
                    return self.resolve(arg[1]).split(arg[0])
                if fn == "Fn::Select":
                    return self.resolve(arg[1])[int(self.resolve(arg[0]))]
                if fn == "Fn::If":
                    return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
                if fn.startswith("Fn::"):
                    raise RuleError(f"{self.name}: {fn} not supported")
            out = {}
            for k, v in node.items():
                r = self.resolve(v)
                if r is not NOVALUE:
                    out[k] = r
            return out
        if isinstance(node, list):
            return [r for r in (self.resolve(v) for v in node) if r is not NOVALUE]
        return node

    # --- policies
    def role_statements(self, lid: str) -> list[dict]:
        """The Allow and Deny statements of the role's inline policies and of the
        AWS::IAM::Policy / RolePolicy resources of this template attached to it."""
        name = self.physical_name(lid)
        props = self.props(lid)
        out = []
        for pol in as_list(props.get("Policies")):
            out += as_list(pol["PolicyDocument"].get("Statement"))
        for plid, res in self.resources():
            if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
                p = self.props(plid)
                if name in as_list(p.get("Roles")) + as_list(p.get("RoleName")):
                    out += as_list(p["PolicyDocument"].get("Statement"))
        return out

    def statements_for_role_name(self, role_name: str) -> list[dict]:
        """Statements this template attaches to a role it does not create (RolePolicy)."""
        out = []
        for plid, res in self.resources():
            if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::RolePolicy"):
                p = self.props(plid)
                if role_name in as_list(p.get("Roles")) + as_list(p.get("RoleName")):
                    out += as_list(p["PolicyDocument"].get("Statement"))
        return out

    def bucket_lid(self, bucket_name: str) -> str | None:
        for lid, _ in self.resources("AWS::S3::Bucket"):
            if self.physical_name(lid) == bucket_name:
                return lid
        return None

    def bucket_policy(self, bucket_name: str) -> tuple[str | None, list[dict]]:
        for lid, _ in self.resources("AWS::S3::BucketPolicy"):
            p = self.props(lid)
            if p.get("Bucket") == bucket_name:
                return lid, as_list(p["PolicyDocument"].get("Statement"))
        return None, []


# ------------------------------------------------------------------ matching statements


def _glob(pattern: str, value: str, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


@dataclass(frozen=True)
class Who:
    """The caller: a role ARN (its account follows), or a service principal."""

    arn: str = ""
    service: str = ""

    @property
    def account(self) -> str:
        return self.arn.split(":")[4] if self.arn else ""

    def context(self) -> dict[str, object]:
        if not self.arn:
            return {"aws:SecureTransport": "true"}
        ctx = {"aws:PrincipalArn": self.arn, "aws:PrincipalAccount": self.account, "aws:SecureTransport": "true"}
        if self.account in ORG_ACCOUNTS:
            ctx["aws:PrincipalOrgID"] = ORG
        return ctx


def _principal_matches(st: dict, who: Who) -> bool:
    if "NotPrincipal" in st:
        raise RuleError("NotPrincipal is not supported by these rules")
    p = st.get("Principal")
    if p == "*":
        return True
    if not isinstance(p, dict):
        return False
    if who.service:
        return who.service in as_list(p.get("Service"))
    for a in as_list(p.get("AWS")):
        if a == "*" or a == who.arn or a in (who.account, f"arn:{PARTITION}:iam::{who.account}:root"):
            return True
    return False


_POSITIVE = {"StringEquals": False, "StringLike": True, "ArnEquals": True, "ArnLike": True}
_NEGATIVE = {"StringNotEquals": False, "StringNotLike": True, "ArnNotEquals": True, "ArnNotLike": True}


def _conditions_hold(cond: dict, ctx: dict[str, object]) -> bool:
    lowered = {k.lower(): v for k, v in ctx.items()}
    for op, block in (cond or {}).items():
        for key, wanted in block.items():
            wanted = [str(w) for w in as_list(wanted)]
            present = key.lower() in lowered
            actual = [str(a) for a in as_list(lowered.get(key.lower()))]
            if op == "Null":
                if (wanted[0].lower() == "true") == present:
                    return False
            elif op == "Bool":
                if not present or not any(a.lower() == w.lower() for a in actual for w in wanted):
                    return False
            elif op in _POSITIVE:
                like = _POSITIVE[op]
                if not present or not any(_glob(w, a) if like else w == a for a in actual for w in wanted):
                    return False
            elif op in _NEGATIVE:
                like = _NEGATIVE[op]
                if present and any(_glob(w, a) if like else w == a for a in actual for w in wanted):
                    return False
            else:
                raise RuleError(f"condition operator {op} is not supported by these rules")
    return True


def applies(st: dict, action: str, resource: str, ctx: dict, who: Who | None = None) -> bool:
    """Whether statement `st` covers this request (its Effect aside). `who` only for resource
    policies (identity policies have no Principal)."""
    if "Action" in st:
        if not any(_glob(a, action, ignore_case=True) for a in as_list(st["Action"])):
            return False
    elif any(_glob(a, action, ignore_case=True) for a in as_list(st.get("NotAction"))):
        return False
    if "Resource" in st:
        if not any(_glob(r, resource) for r in as_list(st["Resource"])):
            return False
    elif any(_glob(r, resource) for r in as_list(st.get("NotResource"))):
        return False
    if who is not None and not _principal_matches(st, who):
        return False
    return _conditions_hold(st.get("Condition") or {}, ctx)


def decide(statements: list[dict], action: str, resource: str, ctx: dict, who: Who | None = None) -> tuple[str, str]:
    """("deny" | "allow" | "none", Sid of the deciding statement)."""
    hits = [st for st in statements if applies(st, action, resource, ctx, who)]
    for st in hits:
        if st.get("Effect") == "Deny":
            return "deny", st.get("Sid", "?")
    for st in hits:
        if st.get("Effect") == "Allow":
            return "allow", st.get("Sid", "?")
    return "none", ""


# ------------------------------------------------------------------ the rules


def rule_config_delivery(stacks: dict[str, Stack]) -> list[str]:
    s = stacks["1-forensics.yaml"]
    problems = []
    recorders = {lid: s.props(lid).get("RoleARN") for lid, _ in s.resources("AWS::Config::ConfigurationRecorder")}
    for lid, _ in s.resources("AWS::Config::DeliveryChannel"):
        p = s.props(lid)
        bucket = p["S3BucketName"]
        prefix = p.get("S3KeyPrefix", "")
        key = "/".join(x for x in (prefix, "AWSLogs", s.account, "Config", REGION, "2026/1/2/ConfigSnapshot/x.json.gz") if x)
        for rec, role_arn in recorders.items():
            role = next((r for r, _ in s.resources("AWS::IAM::Role") if s.arn(r) == role_arn), None)
            if role is None:
                problems.append(f"{s.name}: {rec}: RoleARN {role_arn} is not a role of this template; the rule cannot check it")
                continue
            statements = s.role_statements(role)
            who = Who(arn=role_arn)
            if s.bucket_lid(bucket) is None:
                problems.append(f"{s.name}: {lid}: bucket {bucket} is not in this template; add a rule for another account's bucket")
                continue
            bucket_arn = f"arn:{PARTITION}:s3:::{bucket}"
            needs = [
                ("s3:PutObject", f"{bucket_arn}/{key}", {"s3:x-amz-acl": "bucket-owner-full-control"}),
                ("s3:GetBucketAcl", bucket_arn, {}),
            ]
            if p.get("S3KmsKeyArn"):
                needs += [(a, p["S3KmsKeyArn"], {}) for a in ("kms:Decrypt", "kms:GenerateDataKey")]
            if p.get("SnsTopicARN"):
                needs.append(("sns:Publish", p["SnsTopicARN"], {}))
            policy_lid, bucket_statements = s.bucket_policy(bucket)
            for action, resource, extra in needs:
                ctx = {**who.context(), **extra}
                verdict, sid = decide(statements, action, resource, ctx)
                if verdict != "allow":
                    problems.append(
                        f"{s.name}: {role} (role of {rec}) is not allowed {action} on {resource}: for a bucket of "
                        f"its own account Config delivers with this role, so {lid} fails with "
                        "InsufficientDeliveryPolicyException. Fix: give the role s3:PutObject on "
                        f"{bucket_arn}/{prefix + '/' if prefix else ''}AWSLogs/{s.account}/* (s3:x-amz-acl "
                        "bucket-owner-full-control) and s3:GetBucketAcl on the bucket (AWS Config Developer Guide, "
                        "Permissions for the IAM Role Assigned to AWS Config)"
                        + (f"; denied by {sid}" if verdict == "deny" else "")
                    )
                if action.startswith("s3:"):
                    verdict, sid = decide(bucket_statements, action, resource, ctx, who)
                    if verdict == "deny":
                        problems.append(f"{s.name}: {policy_lid} statement {sid} denies the Config role {action} on {resource}")
    return problems


def _readers(stacks: dict[str, Stack]) -> list[tuple[str, str, list[str]]]:
    """(label, role ARN, S3 actions) of every principal that reads evidence."""
    s1 = stacks["1-forensics.yaml"]
    out = [("the controller (ControllerRoleArn)", s1.params["ControllerRoleArn"], ["s3:GetObject", "s3:ListBucket"])]
    analysis = f"arn:{PARTITION}:iam::{s1.account}:role/{s1.params['AnalysisRoleName']}"
    out.append(("the analysis workstation (AnalysisRoleName)", analysis, ["s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"]))
    for arn in s1.params.get("EvidenceReaderRoleArns") or []:
        if arn:
            out.append((f"EvidenceReaderRoleArns {arn}", arn, ["s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"]))
    return out


def rule_evidence_readers(stacks: dict[str, Stack]) -> list[str]:
    s1 = stacks["1-forensics.yaml"]
    problems = []
    bucket = s1.physical_name("EvidenceBucket")
    bucket_arn = f"arn:{PARTITION}:s3:::{bucket}"
    prefix = s1.params["EvidencePrefix"]
    obj = f"{bucket_arn}/{prefix}/IR-1/i-0abc1234def567890/20260102T030405Z/disk-nvme0n1.manifest.json"
    policy_lid, bucket_statements = s1.bucket_policy(bucket)
    key_statements = as_list(s1.props("EvidenceKey")["KeyPolicy"].get("Statement"))
    for label, arn, actions in _readers(stacks):
        who = Who(arn=arn)
        other_account = who.account != s1.account
        for action in actions:
            resource = bucket_arn if action == "s3:ListBucket" else obj
            ctx = who.context()
            if action == "s3:ListBucket":
                ctx["s3:prefix"] = f"{prefix}/"
            verdict, sid = decide(bucket_statements, action, resource, ctx, who)
            if verdict == "deny":
                problems.append(f"{s1.name}: {policy_lid} statement {sid} denies {label} {action} on {resource}")
            elif other_account and verdict != "allow":
                problems.append(
                    f"{s1.name}: {policy_lid} does not admit {label} ({arn}) to {action}: a principal of another "
                    "account needs an Allow in the bucket policy as well as in its own identity policy. Fix: an Allow "
                    "for that principal (aws:PrincipalArn) on the evidence prefix"
                )
        ctx = {
            **who.context(),
            "kms:ViaService": f"s3.{REGION}.amazonaws.com",
            "kms:EncryptionContext:aws:s3:arn": bucket_arn,
        }
        verdict, sid = decide(key_statements, "kms:Decrypt", KEY_ARN, ctx, who)
        if verdict != "allow":
            problems.append(
                f"{s1.name}: EvidenceKey's key policy does not let {label} ({arn}) kms:Decrypt through S3"
                + (f" (denied by {sid})" if verdict == "deny" else "")
                + ": every get of an SSE-KMS object fails with AccessDenied. Fix: a key policy statement whose "
                "Principal covers that account (its root, the role, or \"*\" narrowed by aws:PrincipalArn) with "
                f"kms:ViaService s3.{REGION}.amazonaws.com"
            )
    # The identity side where the reader's role is ours.
    s2 = stacks.get("2-analysis.yaml")
    if s2 is not None:
        name = s1.params["AnalysisRoleName"]
        role = next((r for r, _ in s2.resources("AWS::IAM::Role") if s2.physical_name(r) == name), None)
        if role is None:
            problems.append(f"{s2.name}: no role named {name} (AnalysisRoleName of template 1): the key admits a role that does not exist")
        else:
            statements = s2.role_statements(role)
            ctx = {**Who(arn=s2.arn(role)).context(), "kms:ViaService": f"s3.{REGION}.amazonaws.com"}
            for action, resource in (("s3:GetObject", obj), ("s3:GetObjectVersion", obj), ("kms:Decrypt", KEY_ARN)):
                if decide(statements, action, resource, ctx)[0] != "allow":
                    problems.append(f"{s2.name}: {role} does not allow {action} on {resource}")
    s3 = stacks.get("3-security.yaml")
    if s3 is not None and "ControllerRole" in (s3.t.get("Resources") or {}):
        statements = s3.role_statements("ControllerRole")
        ctx = {**Who(arn=s3.arn("ControllerRole")).context(), "kms:ViaService": f"s3.{REGION}.amazonaws.com"}
        for action, resource in (("s3:GetObject", obj), ("kms:Decrypt", KEY_ARN)):
            if decide(statements, action, resource, ctx)[0] != "allow":
                problems.append(f"{s3.name}: ControllerRole does not allow {action} on {resource} (it verifies manifests)")
        if s3.arn("ControllerRole") != s1.params["ControllerRoleArn"]:
            problems.append(f"{s3.name}: ControllerRole is {s3.arn('ControllerRole')}, template 1 admits {s1.params['ControllerRoleArn']}")
    return problems


def rule_object_lock(stacks: dict[str, Stack]) -> list[str]:
    problems = []
    for s in stacks.values():
        for lid, res in s.resources("AWS::S3::Bucket"):
            raw = res.get("Properties") or {}
            if "ObjectLockConfiguration" not in raw and "ObjectLockEnabled" not in raw:
                continue
            p = s.props(lid)
            where = f"{s.name}: {lid}"
            if p.get("ObjectLockEnabled") not in (True, "true", "True"):
                problems.append(f"{where}: ObjectLockConfiguration without ObjectLockEnabled: true (Object Lock is enabled at creation only)")
            cfg = p.get("ObjectLockConfiguration") or {}
            if cfg and cfg.get("ObjectLockEnabled") != "Enabled":
                problems.append(f"{where}: ObjectLockConfiguration.ObjectLockEnabled must be Enabled")
            if (p.get("VersioningConfiguration") or {}).get("Status") != "Enabled":
                problems.append(f"{where}: Object Lock needs VersioningConfiguration Status Enabled (S3 refuses to suspend it)")
            ret = (cfg.get("Rule") or {}).get("DefaultRetention")
            if ret is None:
                continue
            raw_ret = raw.get("ObjectLockConfiguration", {}).get("Rule", {}).get("DefaultRetention", {})
            if ret.get("Mode") not in ("GOVERNANCE", "COMPLIANCE"):
                problems.append(f"{where}: DefaultRetention needs Mode GOVERNANCE or COMPLIANCE, not {ret.get('Mode')!r}")
            periods = [k for k in ("Days", "Years") if k in ret]
            if len(periods) != 1:
                problems.append(f"{where}: DefaultRetention needs exactly one of Days or Years, has {periods or 'neither'}")
            for k in periods:
                try:
                    ok = int(ret[k]) >= 1
                except (TypeError, ValueError):
                    ok = False
                if not ok:
                    problems.append(f"{where}: DefaultRetention {k} must be a positive integer, is {ret[k]!r}")
            # Parameters an operator may choose must stay valid too.
            for k, node in raw_ret.items():
                if isinstance(node, dict) and "Ref" in node and node["Ref"] in (s.t.get("Parameters") or {}):
                    spec = s.t["Parameters"][node["Ref"]]
                    if k == "Mode" and not set(spec.get("AllowedValues") or ["?"]) <= {"GOVERNANCE", "COMPLIANCE"}:
                        problems.append(f"{where}: parameter {node['Ref']} may be other than GOVERNANCE or COMPLIANCE")
                    if k in ("Days", "Years") and int(spec.get("MinValue", 0)) < 1:
                        problems.append(f"{where}: parameter {node['Ref']} needs MinValue 1 (retention must be positive)")
    return problems


def rule_incomplete_uploads(stacks: dict[str, Stack]) -> list[str]:
    problems = []
    for s in stacks.values():
        for lid, res in s.resources("AWS::S3::Bucket"):
            raw_rules = (((res.get("Properties") or {}).get("LifecycleConfiguration") or {}).get("Rules")) or []
            rules = ((s.props(lid).get("LifecycleConfiguration") or {}).get("Rules")) or []
            where = f"{s.name}: {lid}"
            found = False
            for raw, rule in zip(raw_rules, rules):
                abort = rule.get("AbortIncompleteMultipartUpload")
                if rule.get("Status") != "Enabled" or not isinstance(abort, dict):
                    continue
                found = True
                days = abort.get("DaysAfterInitiation")
                try:
                    ok = int(days) >= 1
                except (TypeError, ValueError):
                    ok = False
                if not ok:
                    problems.append(f"{where}: AbortIncompleteMultipartUpload DaysAfterInitiation must be a positive integer, is {days!r}")
                node = (raw.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation")
                if isinstance(node, dict) and node.get("Ref") in (s.t.get("Parameters") or {}):
                    spec = s.t["Parameters"][node["Ref"]]
                    if int(spec.get("MinValue", 0)) < 1:
                        problems.append(f"{where}: parameter {node['Ref']} needs MinValue 1 (DaysAfterInitiation must be positive)")
            if not found:
                problems.append(
                    f"{where}: no enabled lifecycle rule with AbortIncompleteMultipartUpload: the parts of an "
                    "upload that is never completed or aborted stay stored; add one (DaysAfterInitiation: 7)"
                )
    return problems


def _acquisition_role(s4: Stack) -> str | None:
    name = s4.params.get("AcquisitionRoleName")
    return next((r for r, _ in s4.resources("AWS::IAM::Role") if s4.physical_name(r) == name), None)


def rule_acquisition_role(stacks: dict[str, Stack]) -> list[str]:
    s4, s1 = stacks["4-member.yaml"], stacks["1-forensics.yaml"]
    role = _acquisition_role(s4)
    if role is None:
        return [f"{s4.name}: no role named {s4.params.get('AcquisitionRoleName')} (AcquisitionRoleName)"]
    problems = []
    props = s4.props(role)
    for arn in as_list(props.get("ManagedPolicyArns")):
        problems.append(
            f"{s4.name}: {role} attaches {arn}: the suspect holds this role for hours, and an AWS managed policy "
            "grants more than Run Command needs (AmazonSSMManagedInstanceCore: ssm:GetParameter* on \"*\"). "
            "Fix: an inline statement with only the SSM Agent's calls"
        )
    statements = s4.role_statements(role)
    who = Who(arn=s4.arn(role))
    ctx = who.context()
    for action in SSM_PARAMETER_READS:
        verdict, sid = decide(statements, action, f"arn:{PARTITION}:ssm:{REGION}:{s4.account}:parameter/db/password", ctx)
        if verdict == "allow":
            problems.append(f"{s4.name}: {role} statement {sid} allows {action}: the suspect could read the account's parameters. Fix: remove it")
    instance = f"arn:{PARTITION}:ec2:{REGION}:{s4.account}:instance/i-0abc1234def567890"
    # (with a managed policy attached its grants are unknown here; the problem above says so)
    for action in [] if props.get("ManagedPolicyArns") else SSM_AGENT_RUN_COMMAND:
        if decide(statements, action, instance, ctx)[0] != "allow":
            problems.append(f"{s4.name}: {role} does not allow {action}, which the SSM Agent calls for Run Command (ssm-documents/README.md)")
    # the evidence write: identity policy, bucket policy (another account) and key policy
    bucket_arn = f"arn:{PARTITION}:s3:::{s1.physical_name('EvidenceBucket')}"
    obj = f"{bucket_arn}/{s1.params['EvidencePrefix']}/IR-1/i-0abc1234def567890/20260102T030405Z/memory.zst"
    _, bucket_statements = s1.bucket_policy(s1.physical_name("EvidenceBucket"))
    put_ctx = {**ctx, "s3:x-amz-server-side-encryption": "aws:kms", "s3:x-amz-server-side-encryption-aws-kms-key-id": KEY_ARN}
    for where, statements_, w in ((f"{s4.name} {role}", statements, None), (f"{s1.name} EvidenceBucketPolicy", bucket_statements, who)):
        verdict, sid = decide(statements_, "s3:PutObject", obj, put_ctx, w)
        if verdict != "allow":
            problems.append(f"{where}: the acquisition role cannot s3:PutObject {obj}" + (f" (denied by {sid})" if sid else ""))
    kms_ctx = {**ctx, "kms:ViaService": f"s3.{REGION}.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": bucket_arn}
    key_statements = as_list(s1.props("EvidenceKey")["KeyPolicy"].get("Statement"))
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        if decide(statements, action, KEY_ARN, kms_ctx)[0] != "allow":
            problems.append(f"{s4.name}: {role} does not allow {action} on the evidence key through S3")
        if decide(key_statements, action, KEY_ARN, kms_ctx, who)[0] != "allow":
            problems.append(f"{s1.name}: EvidenceKey's key policy does not let the member acquisition role {action} through S3")
    return problems


def rule_artifact_read(stacks: dict[str, Stack]) -> list[str]:
    """Both identities the SSM Agent downloads with may read the agent and a LiME module."""
    s4, s1 = stacks["4-member.yaml"], stacks["1-forensics.yaml"]
    problems = []
    bucket = s1.physical_name("ArtifactBucket")
    bucket_arn = f"arn:{PARTITION}:s3:::{bucket}"
    policy_lid, bucket_statements = s1.bucket_policy(bucket)
    requests = [
        ("s3:GetObject", f"{bucket_arn}/agent/1.0.0/airf-agent", {}),
        ("s3:ListBucket", bucket_arn, {"s3:prefix": "lime/6.1.0-1-amd64/"}),
        ("s3:GetObject", f"{bucket_arn}/lime/6.1.0-1-amd64/lime.ko", {}),
    ]
    identities = []
    role = _acquisition_role(s4)
    if role is not None:
        identities.append(("the acquisition role", s4.arn(role), s4.role_statements(role)))
    dhmc = s4.params.get("DefaultHostManagementRoleName")
    if dhmc is None:
        problems.append(
            f"{s4.name}: no DefaultHostManagementRoleName parameter: where Default Host Management is on, the SSM "
            "Agent downloads with the DHMC role (ssm-documents/README.md) and the artifact bucket refuses it. "
            "Fix: give that role the artifact read (RolePolicy) and admit it in template 1's ArtifactBucketPolicy"
        )
        dhmc = "AWSSystemsManagerDefaultEC2InstanceManagementRole"
    if dhmc:
        arn = f"arn:{PARTITION}:iam::{s4.account}:role/{DHMC_PATH}{dhmc}"
        identities.append((f"the Default Host Management role {dhmc}", arn, s4.statements_for_role_name(dhmc)))
        if s1.params.get("DefaultHostManagementRoleName", dhmc) != dhmc:
            problems.append(f"{s1.name}/{s4.name}: DefaultHostManagementRoleName defaults differ")
    for label, arn, statements in identities:
        who = Who(arn=arn)
        for action, resource, extra in requests:
            ctx = {**who.context(), **extra}
            if decide(statements, action, resource, ctx)[0] != "allow":
                problems.append(f"{s4.name}: {label} has no identity policy allowing {action} on {resource} (aws:downloadContent)")
            verdict, sid = decide(bucket_statements, action, resource, ctx, who)
            if verdict != "allow":
                problems.append(
                    f"{s1.name}: {policy_lid} does not admit {label} of a member account ({arn}) to {action} on "
                    f"{resource}" + (f" (denied by {sid})" if verdict == "deny" else "") + ": the download fails with AccessDenied"
                )
    return problems


def _documents(stacks: dict[str, Stack]) -> list[tuple[str, dict]]:
    out = []
    s4 = stacks["4-member.yaml"]
    for lid, _ in s4.resources("AWS::SSM::Document"):
        content = s4.props(lid)["Content"]
        out.append((f"{s4.name}: {lid}", json.loads(content) if isinstance(content, str) else content))
    for path in sorted((REPO / "ssm-documents").glob("*.json")):
        out.append((str(path.relative_to(REPO)), json.loads(path.read_text())))
    return out


def rule_documents_pinned(stacks: dict[str, Stack]) -> list[str]:
    """The member documents run only the deployed artifact bucket's agent and upload only to
    AWS S3: whoever may send them (the controller) cannot swap in its own binary or server,
    which no IAM policy would stop."""
    problems = []
    s4 = stacks["4-member.yaml"]
    wanted = {"ArtifactBucket": [s4.params.get("ArtifactBucket")], "EndpointUrl": [""]}
    for lid, _ in s4.resources("AWS::SSM::Document"):
        content = s4.props(lid)["Content"]
        doc = json.loads(content) if isinstance(content, str) else content
        params = doc.get("parameters") or {}
        for name, values in wanted.items():
            spec = params.get(name)
            if spec is None:
                continue
            if spec.get("allowedValues") != values or "allowedPattern" in spec:
                problems.append(
                    f"{s4.name}: {lid}: parameter {name} accepts {spec.get('allowedValues') or spec.get('allowedPattern')!r}, "
                    f"not only {values!r}: the controller could point the document at another "
                    f"{'bucket (its own agent)' if name == 'ArtifactBucket' else 'endpoint (its own server)'}. "
                    "Fix: embed the document with @include-json-pinned (generate.py)"
                )
    return problems


def timeout_problems(where: str, doc: dict) -> list[str]:
    problems = []
    param = (doc.get("parameters") or {}).get("ExecutionTimeout")
    if param is not None:
        pattern = param.get("allowedPattern")
        if pattern is None:
            problems.append(f"{where}: ExecutionTimeout has no allowedPattern (SSM's maximum is {SSM_MAX_TIMEOUT})")
        else:
            for value in ("172801", "999999", "1000000"):
                if re.search(pattern, value):
                    problems.append(
                        f"{where}: ExecutionTimeout allowedPattern {pattern} accepts {value}, over SSM's maximum of "
                        f"{SSM_MAX_TIMEOUT} s for timeoutSeconds. Fix: a pattern that stops at {SSM_MAX_TIMEOUT}"
                    )
                    break
            for value in ("100", str(SSM_MAX_TIMEOUT), str(param.get("default", "100"))):
                if not re.search(pattern, value):
                    problems.append(f"{where}: ExecutionTimeout allowedPattern {pattern} refuses {value}")
        if int(param.get("default", 0)) > SSM_MAX_TIMEOUT:
            problems.append(f"{where}: ExecutionTimeout default {param['default']} is over {SSM_MAX_TIMEOUT}")
    for step in doc.get("mainSteps") or []:
        t = (step.get("inputs") or {}).get("timeoutSeconds")
        if t is not None and not str(t).startswith("{{") and int(t) > SSM_MAX_TIMEOUT:
            problems.append(f"{where}: step {step.get('name')} timeoutSeconds {t} is over {SSM_MAX_TIMEOUT}")
    return problems


def rule_ssm_timeout(stacks: dict[str, Stack]) -> list[str]:
    problems = []
    for where, doc in _documents(stacks):
        problems += timeout_problems(where, doc)
    return problems


def built_lambda_architectures() -> set[str]:
    """Lambda architectures of the controller builds: build-controller.sh's musl target."""
    text = (REPO / "packaging" / "musl-toolchain.sh").read_text()
    targets = re.findall(r"^target=([A-Za-z0-9_-]+)", text, re.MULTILINE)
    names = {"x86_64": "x86_64", "aarch64": "arm64"}
    return {names[t.split("-")[0]] for t in targets if t.split("-")[0] in names}


def rule_lambda_arch(stacks: dict[str, Stack]) -> list[str]:
    s3 = stacks["3-security.yaml"]
    spec = (s3.t.get("Parameters") or {}).get("LambdaArchitecture")
    if spec is None:
        return []
    built = built_lambda_architectures()
    extra = sorted(set(spec.get("AllowedValues") or []) - built)
    if extra:
        return [
            f"{s3.name}: LambdaArchitecture allows {', '.join(extra)}, but packaging/build-controller.sh builds only "
            f"{', '.join(sorted(built))}: the function could not run its bootstrap. Fix: drop it from AllowedValues "
            "or build that architecture"
        ]
    return []


def rule_deploy_readme(_stacks: dict[str, Stack]) -> list[str]:
    """The README's deploy steps (run in packaging/cloudformation) upload the zip that
    build-controller.sh writes (it runs from the repository root)."""
    script = (REPO / "packaging" / "build-controller.sh").read_text()
    written = re.findall(r'^echo "\$PWD/([^"]+\.zip)"', script, re.MULTILINE)
    if not written:
        return ["packaging/build-controller.sh: no final echo of the zip it writes; the rule cannot find it"]
    zip_path = (REPO / written[-1]).resolve()
    readme = CFN / "README.md"
    problems = []
    uploads = re.findall(r"^aws s3 cp (\S+\.zip) ", readme.read_text(), re.MULTILINE)
    if not uploads:
        problems.append(f"{readme.relative_to(REPO)}: no `aws s3 cp <zip>` step for the controller")
    for src in uploads:
        if (CFN / src).resolve() != zip_path:
            problems.append(
                f"{readme.relative_to(REPO)}: the deploy step uploads {src}, which is not what build-controller.sh "
                f"writes ({zip_path.relative_to(REPO)}; from packaging/cloudformation: "
                f"{Path('../..') / zip_path.relative_to(REPO)})"
            )
    return problems


def _named_role(s: Stack, name: str) -> str | None:
    return next((r for r, _ in s.resources("AWS::IAM::Role") if s.physical_name(r) == name), None)


def rule_snapshot_path(stacks: dict[str, Stack]) -> list[str]:
    s1, s3, s4 = stacks["1-forensics.yaml"], stacks["3-security.yaml"], stacks["4-member.yaml"]
    problems: list[str] = []
    if not s3.condition("DeploySnapshots"):
        return [f"{s3.name}: DeploySnapshots is false with subnets, a VPC and an image given: the snapshot path cannot be deployed"]
    task_name = s3.params["SnapshotTaskRoleName"]
    reader_name = s3.params["SnapshotReaderRoleName"]
    for stack, param, want in ((s1, "SnapshotTaskRoleName", task_name), (s4, "SnapshotTaskRoleName", task_name),
                               (s4, "SnapshotReaderRoleName", reader_name)):
        if stack.params.get(param) != want:
            problems.append(f"{stack.name}: {param} defaults to {stack.params.get(param)!r}, template 3's to {want!r}: "
                            "the policies would name a role that does not exist. Fix: the same default in both")
    task = _named_role(s3, task_name)
    reader = _named_role(s4, s4.params.get("SnapshotReaderRoleName", ""))
    if task is None or reader is None:
        return problems + [f"no role named {task_name} in {s3.name} or {reader_name} in {s4.name}"]
    task_arn, reader_arn = s3.arn(task), s4.arn(reader)
    task_who = Who(arn=task_arn)
    task_statements = s3.role_statements(task)
    reader_statements = s4.role_statements(reader)

    # The hop into the member account: the task role's AssumeRole and the reader's trust.
    verdict, _ = decide(task_statements, "sts:AssumeRole", reader_arn, {**task_who.context(), "aws:ResourceOrgID": ORG})
    if verdict != "allow":
        problems.append(f"{s3.name}: {task} may not sts:AssumeRole {reader_arn}: airf-agent snapshot --role-arn fails. "
                        "Fix: allow it on arn:aws:iam::*:role/<SnapshotReaderRoleName> in the organization")
    trust = as_list(s4.props(reader)["AssumeRolePolicyDocument"].get("Statement"))
    if decide(trust, "sts:AssumeRole", reader_arn, task_who.context(), task_who)[0] != "allow":
        problems.append(f"{s4.name}: {reader}'s trust policy does not admit {task_arn}. Fix: trust the Security account "
                        "narrowed to that role (aws:PrincipalArn)")
    for other in (CONTROLLER, f"arn:{PARTITION}:iam::{SECURITY}:role/somebody-else"):
        who = Who(arn=other)
        if decide(trust, "sts:AssumeRole", reader_arn, who.context(), who)[0] == "allow":
            problems.append(f"{s4.name}: {reader}'s trust policy admits {other}: only the snapshot task role may read snapshots")

    # What the reader may do in the member account.
    ctx = Who(arn=reader_arn).context()
    tagged = f"arn:{PARTITION}:ec2:{REGION}::snapshot/snap-0123456789abcdef0"
    tag = {"aws:ResourceTag/airf:case": "IR-1", "aws:ResourceTag/airf:instance": "i-0abc1234def567890"}
    if decide(reader_statements, "ec2:DescribeSnapshots", "*", ctx)[0] != "allow":
        problems.append(f"{s4.name}: {reader} does not allow ec2:DescribeSnapshots (the agent waits for a pending snapshot)")
    for action in ("ebs:ListSnapshotBlocks", "ebs:GetSnapshotBlock", "ebs:ListChangedBlocks"):
        if decide(reader_statements, action, tagged, {**ctx, **tag})[0] != "allow":
            problems.append(f"{s4.name}: {reader} does not allow {action} on a snapshot tagged airf:case")
        verdict, sid = decide(reader_statements, action, tagged, ctx)
        if verdict == "allow":
            problems.append(f"{s4.name}: {reader} statement {sid} allows {action} on a snapshot without the airf:case tag: "
                            "the task could read any snapshot of the account. Fix: the condition "
                            "aws:ResourceTag/airf:case (StringLike \"*\")")
    for action in ("ebs:StartSnapshot", "ebs:PutSnapshotBlock", "ec2:CreateVolume", "ec2:ModifySnapshotAttribute", "ec2:CopySnapshot"):
        verdict, sid = decide(reader_statements, action, tagged, {**ctx, **tag})
        if verdict == "allow":
            problems.append(f"{s4.name}: {reader} statement {sid} allows {action}: the reader only reads. Fix: remove it")
    key = f"arn:{PARTITION}:kms:{REGION}:{s4.account}:key/{KEY_ID}"
    if decide(reader_statements, "kms:Decrypt", key, {**ctx, "kms:ViaService": f"ec2.{REGION}.amazonaws.com"})[0] != "allow":
        problems.append(f"{s4.name}: {reader} may not kms:Decrypt through EBS (kms:ViaService ec2.{REGION}.amazonaws.com): "
                        "encrypted snapshots cannot be read")
    for via in ("", f"s3.{REGION}.amazonaws.com"):
        c = {**ctx, "kms:ViaService": via} if via else ctx
        verdict, sid = decide(reader_statements, "kms:Decrypt", key, c)
        if verdict == "allow":
            problems.append(f"{s4.name}: {reader} statement {sid} allows kms:Decrypt {'through ' + via if via else 'directly'}: "
                            "only EBS may use the snapshot keys. Fix: kms:ViaService ec2.*.amazonaws.com")

    # The evidence write, as the acquisition role's, from another account.
    bucket_arn = f"arn:{PARTITION}:s3:::{s1.physical_name('EvidenceBucket')}"
    obj = f"{bucket_arn}/{s1.params['EvidencePrefix']}/IR-1/i-0abc1234def567890/20260102T030405Z-r1/snap-0123456789abcdef0.raw.zst"
    policy_lid, bucket_statements = s1.bucket_policy(s1.physical_name("EvidenceBucket"))
    put = {**task_who.context(), "s3:x-amz-server-side-encryption": "aws:kms",
           "s3:x-amz-server-side-encryption-aws-kms-key-id": KEY_ARN, "s3:ObjectCreationOperation": "true"}
    for where, stmts, w in ((f"{s3.name} {task}", task_statements, None), (f"{s1.name} {policy_lid}", bucket_statements, task_who)):
        verdict, sid = decide(stmts, "s3:PutObject", obj, {**put, "s3:if-none-match": "*"}, w)
        if verdict != "allow":
            problems.append(f"{where}: the snapshot task role ({task_arn}) cannot s3:PutObject {obj}"
                            + (f" (denied by {sid})" if sid else "")
                            + ". Fix: admit it with the acquisition role's statements (aws:PrincipalArn)")
    if s1.params.get("RequireIfNoneMatch", "true") == "true":
        verdict, _ = decide(bucket_statements, "s3:PutObject", obj, put, task_who)
        if verdict != "deny":
            problems.append(f"{s1.name}: {policy_lid} does not deny the snapshot task role a PutObject without "
                            "If-None-Match: its evidence could be overwritten. Fix: its ARN in AcquisitionRolesNeverOverwrite")
    for action in ("s3:GetObject", "s3:DeleteObject", "s3:PutObjectAcl"):
        verdict, sid = decide(bucket_statements, action, obj, task_who.context(), task_who)
        if verdict != "deny":
            problems.append(f"{s1.name}: {policy_lid} does not deny the snapshot task role {action}: it must be write-only "
                            "like the acquisition role. Fix: its ARN in AcquisitionRolesNothingElse")
    kms_ctx = {**task_who.context(), "kms:ViaService": f"s3.{REGION}.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": bucket_arn}
    key_statements = as_list(s1.props("EvidenceKey")["KeyPolicy"].get("Statement"))
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        if decide(task_statements, action, KEY_ARN, kms_ctx)[0] != "allow":
            problems.append(f"{s3.name}: {task} does not allow {action} on the evidence key through S3")
        if decide(key_statements, action, KEY_ARN, kms_ctx, task_who)[0] != "allow":
            problems.append(f"{s1.name}: EvidenceKey's key policy does not let the snapshot task role {action} through S3: "
                            "every evidence upload fails. Fix: its ARN in AcquisitionRolesEncryptThroughS3")

    # The task definition and ecs:runTask.sync.
    td = next((lid for lid, _ in s3.resources("AWS::ECS::TaskDefinition")), None)
    cluster = next((lid for lid, _ in s3.resources("AWS::ECS::Cluster")), None)
    if td is None or cluster is None:
        return problems + [f"{s3.name}: no ECS task definition or cluster with DeploySnapshots"]
    tdp = s3.props(td)
    family = tdp.get("Family")
    containers = {c.get("Name"): c for c in as_list(tdp.get("ContainerDefinitions"))}
    agent = containers.get("airf-agent")
    if family != "airf-snapshot" or agent is None:
        problems.append(f"{s3.name}: {td} must be family airf-snapshot with a container airf-agent (the workflow "
                        f"overrides that container's command), not {family!r} with {sorted(containers)}")
    else:
        if agent.get("ReadonlyRootFilesystem") is not True:
            problems.append(f"{s3.name}: {td}'s airf-agent container must have ReadonlyRootFilesystem true")
        if agent.get("Image") != s3.params["SnapshotImageUri"]:
            problems.append(f"{s3.name}: {td}'s airf-agent image is not SnapshotImageUri")
    if tdp.get("TaskRoleArn") != task_arn:
        problems.append(f"{s3.name}: {td}'s TaskRoleArn is not {task} ({task_arn})")
    execution = tdp.get("ExecutionRoleArn")
    workflow = s3.props("StateMachine")["RoleArn"]
    wf_role = next((r for r, _ in s3.resources("AWS::IAM::Role") if s3.arn(r) == workflow or workflow == f"{r}.Arn"), None)
    if wf_role is None:
        return problems + [f"{s3.name}: the state machine's role is not a role of this template"]
    wf = s3.role_statements(wf_role)
    wctx = Who(arn=s3.arn(wf_role)).context()
    cluster_arn = s3.getatt(cluster, "Arn")
    td_arn = f"arn:{PARTITION}:ecs:{REGION}:{s3.account}:task-definition/{family}:7"
    task_id = f"arn:{PARTITION}:ecs:{REGION}:{s3.account}:task/{s3.props(cluster).get('ClusterName')}/0123456789abcdef0123456789abcdef"
    needs = [("ecs:RunTask", td_arn, {"ecs:cluster": cluster_arn}),
             ("ecs:DescribeTasks", task_id, {"ecs:cluster": cluster_arn}),
             ("ecs:StopTask", task_id, {"ecs:cluster": cluster_arn}),
             ("iam:PassRole", task_arn, {"iam:PassedToService": "ecs-tasks.amazonaws.com"}),
             ("iam:PassRole", execution, {"iam:PassedToService": "ecs-tasks.amazonaws.com"})]
    rule_arn = f"arn:{PARTITION}:events:{REGION}:{s3.account}:rule/StepFunctionsGetEventsForECSTaskRule"
    needs += [(a, rule_arn, {}) for a in ("events:PutTargets", "events:PutRule", "events:DescribeRule")]
    for action, resource, extra in needs:
        if decide(wf, action, resource, {**wctx, **extra})[0] != "allow":
            problems.append(f"{s3.name}: {wf_role} does not allow {action} on {resource}: the workflow's ecs:runTask.sync "
                            "state fails (Step Functions developer guide, IAM policies for Amazon ECS/Fargate)")
    other = f"arn:{PARTITION}:ecs:{REGION}:{s3.account}:cluster/default"
    if decide(wf, "ecs:RunTask", td_arn, {**wctx, "ecs:cluster": other})[0] == "allow":
        problems.append(f"{s3.name}: {wf_role} may RunTask the snapshot task in any cluster. Fix: ecs:cluster condition")

    # The controller's environment names what was deployed.
    env = s3.props("ControllerFunction")["Environment"]["Variables"]
    want = {
        "AIRF_SNAPSHOT_CLUSTER_ARN": cluster_arn,
        "AIRF_SNAPSHOT_TASK_DEFINITION_ARN": s3.ref(td),
        "AIRF_SNAPSHOT_SUBNET_IDS": ",".join(s3.params["SnapshotSubnetIds"]),
        "AIRF_SNAPSHOT_SECURITY_GROUP_ID": s3.getatt(next(l for l, _ in s3.resources("AWS::EC2::SecurityGroup")), "GroupId"),
        "AIRF_SNAPSHOT_READER_ROLE_NAME": reader_name,
    }
    for var, value in want.items():
        if env.get(var) != value:
            problems.append(f"{s3.name}: ControllerFunction's {var} is {env.get(var)!r}, not {value!r}")
    return problems


RULES = {
    "config-delivery": rule_config_delivery,
    "evidence-readers": rule_evidence_readers,
    "object-lock": rule_object_lock,
    "incomplete-uploads": rule_incomplete_uploads,
    "acquisition-role": rule_acquisition_role,
    "artifact-read": rule_artifact_read,
    "ssm-timeout": rule_ssm_timeout,
    "documents-pinned": rule_documents_pinned,
    "lambda-arch": rule_lambda_arch,
    "deploy-readme": rule_deploy_readme,
    "snapshot-path": rule_snapshot_path,
}


def stacks_from(templates: dict[str, dict]) -> dict[str, Stack]:
    out = {}
    for name, (account, params) in SCENARIO.items():
        if name in templates:
            out[name] = Stack(name, templates[name], account, params)
    return out


def load_stacks(template_dir: Path) -> dict[str, Stack]:
    return stacks_from({name: load(template_dir / name) for name in SCENARIO if (template_dir / name).is_file()})


def run(stacks: dict[str, Stack], only: list[str] | None = None) -> dict[str, list[str]]:
    results = {}
    for name, rule in RULES.items():
        if only and name not in only:
            continue
        try:
            results[name] = rule(stacks)
        except (RuleError, KeyError) as e:
            results[name] = [f"the rule could not be evaluated: {e!r}"]
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--templates", type=Path, default=CFN, help="folder of the numbered templates")
    ap.add_argument("--rule", action="append", choices=sorted(RULES), help="run only this rule (repeatable)")
    args = ap.parse_args(argv)
    results = run(load_stacks(args.templates), args.rule)
    failed = 0
    for name, problems in results.items():
        print(f"deploy_rules: {'ok' if not problems else 'FAILED'}: {name}", file=sys.stderr)
        for p in problems:
            print(f"deploy_rules:   {p}", file=sys.stderr)
        failed += bool(problems)
    print(f"deploy_rules: {len(results) - failed} of {len(results)} rules hold", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
