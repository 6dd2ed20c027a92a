"""Tests of packaging/cloudformation/iam_check.py: wildcards, uncommented "*" resources,
checkov suppressions without a reason, and an acquisition role that could read evidence.
(Whether the roles allow what the code calls is tested on the recorded calls: tests/iam/.)

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


class Check(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="airf-iam-check-"))
        self.addCleanup(shutil.rmtree, self.tmp)

    def test_committed_templates_pass(self):
        self.assertEqual(iam_check.run(CFN).problems, [])

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

    def test_allow_star_is_accepted_only_in_a_policy_used_as_a_permissions_boundary(self):
        # A boundary grants nothing: its Allow * lets the role's own policies decide. The same
        # document attached to a role as a permissions policy would make it administrator.
        def template(attach: str) -> str:
            return textwrap.dedent(f"""\
                Resources:
                  Boundary:
                    Type: AWS::IAM::ManagedPolicy
                    Properties:
                      {attach}
                      PolicyDocument:
                        Version: "2012-10-17"
                        Statement:
                          - Effect: Allow
                            Action: "*"
                            Resource: "*" # a boundary: the role's own policies decide
                  Role:
                    Type: AWS::IAM::Role
                    Properties:
                      PermissionsBoundary: !Ref Boundary
                      AssumeRolePolicyDocument: {{}}
                """)
        path = self.tmp / "9-boundary.yaml"
        path.write_text(template("Description: boundary only"))
        self.assertEqual(iam_check.policy_problems(path), [])
        path.write_text(template("Roles: [!Ref Role]"))
        self.assertEqual(
            iam_check.policy_problems(path),
            ["9-boundary.yaml: Boundary policy statement ?: wildcard action '*'"],
        )

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
        problems = iam_check.run(templates).problems
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("s3:GetObject on the evidence bucket", problems[0])

    def test_acquisition_role_listing_outside_the_prefix_is_reported(self):
        templates = self.tmp / "templates"
        shutil.copytree(CFN, templates, ignore=shutil.ignore_patterns("src", "*.py", "*.md", "*.sh", "__pycache__"))
        member = templates / "4-member.yaml"
        text = member.read_text()
        marker = "                    s3:prefix: !Sub ${EvidencePrefix}/*\n"
        self.assertIn(marker, text)
        member.write_text(text.replace(marker, "                    s3:prefix: '*'\n", 1))
        problems = iam_check.run(templates).problems
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("ListOwnEvidenceKeys: s3:ListBucket on the evidence bucket", problems[0])


if __name__ == "__main__":
    unittest.main()
