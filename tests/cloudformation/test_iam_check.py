"""Tests of packaging/cloudformation/iam_check.py: the extractor finds the calls, and the check
catches a missing action, an unused grant, wildcards and uncommented "*" resources.

    python3 -m unittest discover -s tests/cloudformation -v
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CFN = REPO / "packaging" / "cloudformation"
sys.path.insert(0, str(CFN))

import iam_check  # noqa: E402

FIXTURE = HERE / "fixtures" / "controller" / "src"
AGENT = REPO / "agent" / "src"

CONTRACT = {
    ("ec2", m)
    for m in (
        "describe_instances create_tags describe_iam_instance_profile_associations "
        "associate_iam_instance_profile replace_iam_instance_profile_association "
        "modify_instance_attribute modify_network_interface_attribute describe_security_groups "
        "create_security_group authorize_security_group_ingress authorize_security_group_egress "
        "revoke_security_group_egress revoke_security_group_ingress create_snapshot describe_snapshots clone"
    ).split()
} | {
    ("iam", "get_instance_profile"),
    ("iam", "put_role_policy"),
    ("ssm", "describe_instance_information"),
    ("ssm", "send_command"),
    ("ssm", "get_command_invocation"),
    ("autoscaling", "describe_auto_scaling_instances"),
    ("autoscaling", "detach_instances"),
    ("elb", "describe_target_groups"),
    ("elb", "describe_target_health"),
    ("elb", "deregister_targets"),
    ("sts", "get_caller_identity"),
    ("sts", "assume_role"),
    ("sfn", "start_execution"),
    ("sns", "publish"),
    ("s3", "get_object"),
    ("s3", "head_object"),
}


class Extractor(unittest.TestCase):
    def test_finds_every_contract_call_and_nothing_in_comments(self):
        calls = iam_check.extract_controller_calls(FIXTURE)
        self.assertEqual(set(calls), CONTRACT)
        self.assertNotIn(("ec2", "terminate_instances"), calls)

    def test_multi_line_call_is_located(self):
        call = iam_check.extract_controller_calls(FIXTURE)[("elb", "deregister_targets")]
        self.assertEqual(len(call.where), 1)
        self.assertTrue(call.where[0].endswith("aws.rs:39"), call.where)

    def test_iam_names(self):
        self.assertEqual(iam_check.iam_actions("elbv2", "elasticloadbalancing", "deregister_targets"),
                         ["elasticloadbalancing:DeregisterTargets"])
        self.assertEqual(iam_check.iam_actions("stepfunctions", "states", "start_execution"),
                         ["states:StartExecution"])
        self.assertEqual(iam_check.iam_actions("ec2", "ec2", "describe_iam_instance_profile_associations"),
                         ["ec2:DescribeIamInstanceProfileAssociations"])
        self.assertEqual(iam_check.iam_actions("s3", "s3", "complete_multipart_upload"), ["s3:PutObject"])
        self.assertEqual(iam_check.iam_actions("s3", "s3", "list_objects_v2"), ["s3:ListBucket"])
        self.assertEqual(iam_check.iam_actions("sts", "sts", "get_caller_identity"), [])
        self.assertIsNone(iam_check.iam_actions("ec2", "ec2", "clone"))

    def test_agent_s3_calls_without_verify_read(self):
        methods = {m for (_, m) in iam_check.extract_agent_calls(AGENT)}
        self.assertEqual(
            methods,
            {"put_object", "create_multipart_upload", "upload_part", "complete_multipart_upload", "abort_multipart_upload"},
        )


class Check(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="airf-iam-check-"))
        self.addCleanup(shutil.rmtree, self.tmp)

    def fixture_with(self, edit) -> Path:
        src = self.tmp / "controller" / "src"
        shutil.copytree(FIXTURE, src)
        path = src / "aws.rs"
        path.write_text(edit(path.read_text()))
        return src

    def test_committed_templates_grant_exactly_the_fixture_and_agent_calls(self):
        result = iam_check.run(CFN, FIXTURE, AGENT, strict=True)
        self.assertEqual(result.problems, [])

    def test_a_call_the_role_does_not_allow_is_reported(self):
        src = self.fixture_with(lambda t: t.replace(
            "Ok(())\n    }\n}\n\nimpl SecurityAccount",
            "self.ec2\n            .terminate_instances()\n            .send();\n        Ok(())\n    }\n}\n\nimpl SecurityAccount",
        ))
        problems = iam_check.run(CFN, src, None, strict=True).problems
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("ControllerAccessRole: missing ec2:TerminateInstances", problems[0])
        self.assertIn("aws.rs:", problems[0])

    def test_a_grant_the_code_never_uses_is_reported(self):
        src = self.fixture_with(lambda t: t.replace("self.autoscaling.detach_instances().send().await?;", ""))
        problems = iam_check.run(CFN, src, None, strict=True).problems
        self.assertEqual(problems, ["4-member.yaml ControllerAccessRole: grants autoscaling:DetachInstances, which the code never calls"])

    def test_no_controller_calls_is_a_problem_only_when_strict(self):
        empty = self.tmp / "empty"
        empty.mkdir()
        self.assertEqual(iam_check.run(CFN, empty, None, strict=False).problems, [])
        self.assertEqual(len(iam_check.run(CFN, empty, None, strict=True).problems), 1)

    def test_wildcard_action_and_uncommented_star_resource(self):
        path = self.tmp / "9-bad.yaml"
        path.write_text(textwrap.dedent("""\
            Resources:
              Bad:
                Type: AWS::IAM::Role
                Properties:
                  AssumeRolePolicyDocument:
                    Statement:
                      - Effect: Allow
                        Principal: { Service: ec2.amazonaws.com }
                        Action: "sts:AssumeRole"
                  Policies:
                    - PolicyName: p
                      PolicyDocument:
                        Statement:
                          - Sid: Wild
                            Effect: Allow
                            Action: ["ec2:*", "s3:Get*"]
                            Resource: "*"
                          - Sid: Commented
                            Effect: Allow
                            Action: ec2:DescribeInstances
                            Resource: "*" # DescribeInstances supports no resource-level permissions
                          - Sid: CommentAbove
                            Effect: Allow
                            Action: ssm:GetCommandInvocation
                            # GetCommandInvocation supports no resource-level permissions
                            Resource: "*"
                          - Sid: DenyIsFine
                            Effect: Deny
                            Action: "*"
                            Resource: "*"
            """))
        problems = iam_check.policy_problems(path)
        self.assertEqual(len(problems), 3, problems)
        self.assertIn("wildcard action 'ec2:*'", problems[0])
        self.assertIn("wildcard action 's3:Get*'", problems[1])
        self.assertIn('9-bad.yaml:17: Bad policy p statement Wild: Resource "*" without a comment', problems[2])

    def test_suppression_without_reason(self):
        path = self.tmp / "9-skip.yaml"
        path.write_text(textwrap.dedent("""\
            Resources:
              Quiet:
                Type: AWS::SQS::Queue
                Metadata:
                  checkov:
                    skip:
                      - id: CKV_AWS_27
                      - id: CKV_AWS_28
                        comment: a reason long enough to be a reason
            """))
        self.assertEqual(
            iam_check.suppression_problems(path),
            ["9-skip.yaml: Quiet: checkov suppression of CKV_AWS_27 without a written reason"],
        )

    def test_acquisition_role_reading_evidence_is_reported(self):
        templates = self.tmp / "templates"
        shutil.copytree(CFN, templates, ignore=shutil.ignore_patterns("src", "*.py", "*.md", "*.sh", "__pycache__"))
        member = templates / "4-member.yaml"
        text = member.read_text()
        marker = "                  - s3:PutObject\n                  - s3:AbortMultipartUpload\n"
        self.assertIn(marker, text)
        member.write_text(text.replace(marker, marker + "                  - s3:GetObject\n", 1))
        problems = iam_check.run(templates, None, AGENT, strict=True).problems
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("s3:GetObject on the evidence bucket", problems[0])


if __name__ == "__main__":
    unittest.main()
