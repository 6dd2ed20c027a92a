"""The deployment the end-to-end tests stand for, rendered from the CloudFormation templates.

Templates 1 (forensics), 3 (security) and 4 (member) deployed as the README says, each one's
parameters taken from the outputs of the ones before and from the defaults, in moto's account
and region. The Security and member account are moto's one account (moto serves one); the
forensics account is another, so that the evidence bucket and key are reached across accounts
as in a real organization.

    python3 tests/iam/deployment.py emulator   # JSON: what tests/src/emulator.rs creates

The emulator creates the roles and instance profiles named here, and configures the controller
with the environment template 3 gives its Lambda: no role, profile or bucket name is typed in
the tests.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cfn import Stack, load, render  # noqa: E402

REPO = HERE.parents[1]
TEMPLATES = REPO / "packaging" / "cloudformation"
MANAGED = HERE / "managed-policies"

REGION = "us-east-1"
SECURITY_ACCOUNT = "123456789012"  # moto's account
MEMBER_ACCOUNT = SECURITY_ACCOUNT
FORENSICS_ACCOUNT = "444455556666"
ORGANIZATION_ID = "o-airfemulator1"
AGENT_VERSION = "0.1.0"
AGENT_SHA256 = "ab" * 32
# Template 3 is deployed with the snapshot path (DeploySnapshots), so that its task role and the
# member reader role exist and the agent's `snapshot` calls are evaluated against them.
SNAPSHOT_VPC = "vpc-0a1b2c3d4e5f60718"
SNAPSHOT_SUBNETS = "subnet-0a1b2c3d4e5f60718,subnet-0f1e2d3c4b5a69788"


@dataclass
class Deployment:
    stacks: dict[str, Stack] = field(default_factory=dict)

    def resources(self, rtype: str):
        for stack in self.stacks.values():
            for r in stack.resources.values():
                if r.type == rtype:
                    yield stack, r


def deploy(templates: Path = TEMPLATES) -> Deployment:
    """Renders 1, 3 and 4 in order, chaining outputs into parameters."""
    security_defaults = load(templates / "3-security.yaml")["Parameters"]
    controller_role_arn = (
        f"arn:aws:iam::{SECURITY_ACCOUNT}:role/{security_defaults['ControllerRoleName']['Default']}"
    )
    forensics = render("airf-forensics", templates / "1-forensics.yaml", {
        "OrganizationId": ORGANIZATION_ID,
        "ControllerRoleArn": controller_role_arn,
    }, FORENSICS_ACCOUNT, REGION)

    def out(stack: Stack, logical: str, attr: str | None = None) -> str:
        r = stack.resources[logical]
        return r.attr(attr) if attr else r.ref

    evidence = {
        "EvidenceBucket": out(forensics, "EvidenceBucket"),
        "EvidencePrefix": forensics.values["EvidencePrefix"],
        "EvidenceRegion": REGION,
        "EvidenceKmsKeyArn": out(forensics, "EvidenceKey", "Arn"),
        "ArtifactBucket": out(forensics, "ArtifactBucket"),
    }
    security = render("airf-security", templates / "3-security.yaml", {
        "CodeBucket": f"airf-code-{SECURITY_ACCOUNT}",
        "OrganizationId": ORGANIZATION_ID,
        "AgentVersion": AGENT_VERSION,
        "AgentSha256": AGENT_SHA256,
        "SnapshotImageUri": f"{SECURITY_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/airf-agent:{AGENT_VERSION}",
        "SnapshotVpcId": SNAPSHOT_VPC,
        "SnapshotSubnetIds": SNAPSHOT_SUBNETS,
        **evidence,
    }, SECURITY_ACCOUNT, REGION)
    member = render("airf-member", templates / "4-member.yaml", {
        "HomeRegion": REGION,
        "ControllerRoleArn": out(security, "ControllerRole", "Arn"),
        "SecurityEventBusArn": out(security, "EventBus", "Arn"),
        **evidence,
    }, MEMBER_ACCOUNT, REGION)
    return Deployment({"1-forensics.yaml": forensics, "3-security.yaml": security, "4-member.yaml": member})


def emulator_world(dep: Deployment) -> dict:
    """What the emulator creates in moto and how it configures the controller."""
    roles = []
    profiles = []
    policies = []
    for name in ("3-security.yaml", "4-member.yaml"):
        stack = dep.stacks[name]
        for r in stack.resources.values():
            if r.type == "AWS::IAM::Role":
                roles.append({"logical_id": r.logical_id, "template": name, "name": r.ref,
                              "trust": r.properties.get("AssumeRolePolicyDocument"),
                              "boundary": r.properties.get("PermissionsBoundary")})
            elif r.type == "AWS::IAM::ManagedPolicy":
                policies.append({"logical_id": r.logical_id, "name": r.ref.rsplit("/", 1)[1],
                                 "arn": r.ref, "document": r.properties["PolicyDocument"]})
            elif r.type == "AWS::IAM::InstanceProfile":
                profiles.append({"logical_id": r.logical_id, "name": r.ref, "roles": r.properties.get("Roles", [])})
    security = dep.stacks["3-security.yaml"]
    forensics = dep.stacks["1-forensics.yaml"]
    env = security.resources["ControllerFunction"].properties["Environment"]["Variables"]
    signing = security.resources["SigningKey"]
    return {
        # Created in moto with this id (tests/scripts/moto_aws.py), so its ARN is the rendered one.
        "signing_key": {
            "id": signing.attr("KeyId"),
            "arn": signing.attr("Arn"),
            "key_spec": signing.properties["KeySpec"],
            "key_usage": signing.properties["KeyUsage"],
            "description": signing.properties.get("Description", ""),
            "policy": signing.properties["KeyPolicy"],
        },
        "account": SECURITY_ACCOUNT,
        "region": REGION,
        "controller_role": security.resources["ControllerRole"].ref,
        "acquisition_role": dep.stacks["4-member.yaml"].resources["AcquisitionInstanceRole"].ref,
        # airf-agent snapshot: the Fargate task's role (template 3) and the member role it
        # assumes with --role-arn (template 4).
        "snapshot_task_role": security.resources["SnapshotTaskRole"].ref,
        "snapshot_reader_role": dep.stacks["4-member.yaml"].resources["SnapshotReaderRole"].ref,
        "roles": roles,
        "profiles": profiles,
        "managed_policies": policies,
        "controller_env": env,
        "evidence_bucket": forensics.resources["EvidenceBucket"].ref,
        "artifact_bucket": forensics.resources["ArtifactBucket"].ref,
    }


if __name__ == "__main__":
    if sys.argv[1:] != ["emulator"]:
        sys.exit("usage: deployment.py emulator")
    print(json.dumps(emulator_world(deploy()), indent=1, sort_keys=True))
