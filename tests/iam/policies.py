"""The policies a rendered deployment puts in force, found the way AWS finds them.

- identity policies of a role: its inline `Policies`, its `ManagedPolicyArns` (AWS managed ones
  from the vendored documents in managed-policies/, customer managed ones from the templates),
  and AWS::IAM::Policy / ManagedPolicy resources that name the role;
- its permissions boundary (`PermissionsBoundary`);
- resource policies: S3 bucket policies (for the bucket and its objects), KMS key policies, a
  role's trust policy (for sts:AssumeRole), SQS queue and SNS topic policies.

Each policy carries a name that says where it is written ("4-member.yaml ControllerAccessRole
policy airf-controller-access"), which the evaluation reports with the deciding statement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cfn import RenderError
from deployment import MANAGED, Deployment


@dataclass
class Policy:
    name: str
    document: dict


@dataclass
class RolePolicies:
    role_arn: str
    identity: list[Policy] = field(default_factory=list)
    boundary: Policy | None = None
    # Managed policies that could not be read (not vendored): evaluating this role is an error.
    missing: list[str] = field(default_factory=list)


def _as_list(v) -> list:
    return v if isinstance(v, list) else [] if v is None else [v]


def managed_policy(arn: str, dep: Deployment, managed_dir: Path = MANAGED) -> Policy:
    if ":iam::aws:policy/" in arn:
        name = arn.rsplit("/", 1)[1]
        path = managed_dir / f"{name}.json"
        if not path.exists():
            raise RenderError(
                f"AWS managed policy {arn} is not vendored: add its document to {path} "
                "(from the AWS Managed Policy Reference, with its source)"
            )
        data = json.loads(path.read_text())
        return Policy(f"AWS managed {name}", data["PolicyDocument"])
    for tname, stack in dep.stacks.items():
        for r in stack.resources.values():
            if r.type == "AWS::IAM::ManagedPolicy" and r.ref == arn:
                return Policy(f"{tname} {r.logical_id}", r.properties["PolicyDocument"])
    raise RenderError(f"managed policy {arn} is neither AWS managed nor in the templates")


def role_policies(dep: Deployment) -> dict[str, RolePolicies]:
    """role ARN -> its policies, for every role the deployment creates."""
    out: dict[str, RolePolicies] = {}
    for tname, stack in dep.stacks.items():
        for r in stack.resources.values():
            if r.type != "AWS::IAM::Role":
                continue
            rp = RolePolicies(r.attr("Arn"))
            for pol in _as_list(r.properties.get("Policies")):
                rp.identity.append(Policy(f"{tname} {r.logical_id} policy {pol['PolicyName']}", pol["PolicyDocument"]))
            for arn in _as_list(r.properties.get("ManagedPolicyArns")):
                try:
                    rp.identity.append(managed_policy(arn, dep))
                except RenderError as e:
                    rp.missing.append(str(e))
            if r.properties.get("PermissionsBoundary"):
                try:
                    rp.boundary = managed_policy(r.properties["PermissionsBoundary"], dep)
                except RenderError as e:
                    rp.missing.append(str(e))
            out[rp.role_arn] = rp
    # Policies attached from outside the role.
    for tname, stack in dep.stacks.items():
        for r in stack.resources.values():
            if r.type not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                continue
            for role_name in _as_list(r.properties.get("Roles")):
                for rp in out.values():
                    if rp.role_arn.rsplit("/", 1)[1] == role_name:
                        rp.identity.append(Policy(f"{tname} {r.logical_id}", r.properties["PolicyDocument"]))
    return out


@dataclass
class ResourcePolicies:
    by_arn: dict[str, Policy] = field(default_factory=dict)
    trust: dict[str, Policy] = field(default_factory=dict)
    owner: dict[str, str] = field(default_factory=dict)  # bucket name -> account

    def for_check(self, action: str, resource: str) -> Policy | None:
        if action.lower() == "sts:assumerole":
            return self.trust.get(resource)
        if resource.startswith("arn:aws:s3:::"):
            bucket = resource[len("arn:aws:s3:::"):].split("/", 1)[0]
            return self.by_arn.get(f"arn:aws:s3:::{bucket}")
        return self.by_arn.get(resource)

    def resource_account(self, resource: str, default: str) -> str:
        if resource.startswith("arn:aws:s3:::"):
            return self.owner.get(resource[len("arn:aws:s3:::"):].split("/", 1)[0], default)
        parts = resource.split(":")
        return parts[4] if len(parts) > 5 and parts[4] else default


def resource_policies(dep: Deployment) -> ResourcePolicies:
    out = ResourcePolicies()
    for tname, stack in dep.stacks.items():
        res = stack.resources
        for r in res.values():
            p = r.properties
            if r.type == "AWS::S3::Bucket":
                out.owner[r.ref] = stack.account
            elif r.type == "AWS::S3::BucketPolicy":
                out.by_arn[f"arn:aws:s3:::{p['Bucket']}"] = Policy(f"{tname} {r.logical_id}", p["PolicyDocument"])
            elif r.type == "AWS::KMS::Key":
                out.by_arn[r.attr("Arn")] = Policy(f"{tname} {r.logical_id} key policy", p["KeyPolicy"])
            elif r.type == "AWS::IAM::Role":
                out.trust[r.attr("Arn")] = Policy(f"{tname} {r.logical_id} trust policy", p["AssumeRolePolicyDocument"])
            elif r.type == "AWS::SQS::QueuePolicy":
                for url in _as_list(p.get("Queues")):
                    for q in res.values():
                        if q.type == "AWS::SQS::Queue" and q.ref == url:
                            out.by_arn[q.attr("Arn")] = Policy(f"{tname} {r.logical_id}", p["PolicyDocument"])
            elif r.type == "AWS::SNS::TopicPolicy":
                for topic in _as_list(p.get("Topics")):
                    out.by_arn[topic] = Policy(f"{tname} {r.logical_id}", p["PolicyDocument"])
    return out


def encryption_keys(dep: Deployment) -> tuple[dict[str, str], dict[str, str]]:
    """(bucket name -> default SSE-KMS key ARN, topic ARN -> KMS key ARN)."""
    buckets, topics = {}, {}

    def key_arn(stack, key: str) -> str:
        if key.startswith("arn:"):
            return key
        for r in stack.resources.values():
            if r.type == "AWS::KMS::Key" and key == r.ref:
                return r.attr("Arn")
        return f"arn:aws:kms:{stack.region}:{stack.account}:key/{key}"

    for stack in dep.stacks.values():
        for r in stack.resources.values():
            if r.type == "AWS::S3::Bucket":
                rules = ((r.properties.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration")) or []
                for rule in rules:
                    d = rule.get("ServerSideEncryptionByDefault") or {}
                    if d.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse") and d.get("KMSMasterKeyID"):
                        buckets[r.ref] = key_arn(stack, d["KMSMasterKeyID"])
            elif r.type == "AWS::SNS::Topic" and r.properties.get("KmsMasterKeyId"):
                topics[r.ref] = key_arn(stack, r.properties["KmsMasterKeyId"])
    return buckets, topics
