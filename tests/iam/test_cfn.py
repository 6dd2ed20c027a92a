"""Tests of tests/iam/cfn.py, the template renderer: each intrinsic function, conditions,
parameters, and properties over generated inputs (seeded, so a failure reproduces).

    python3 -m unittest discover -s tests/iam -t tests/iam -v
"""

from __future__ import annotations

import random
import string
import tempfile
import textwrap
import unittest
from pathlib import Path

from cfn import NO_VALUE, RenderError, Stack, load

ACCOUNT, REGION = "123456789012", "us-east-1"


def stack(template: dict, **params) -> Stack:
    return Stack("s", template, params, ACCOUNT, REGION).render()


def value(expr, params=None, resources=None, conditions=None) -> object:
    """Renders `expr` as the property of a resource and returns it."""
    template = {
        "Parameters": {k: {"Type": "String"} for k in (params or {})},
        "Conditions": conditions or {},
        "Resources": {"Probe": {"Type": "AWS::SSM::Document", "Properties": {"V": expr}}, **(resources or {})},
    }
    props = Stack("s", template, params or {}, ACCOUNT, REGION).render().resources["Probe"].properties
    return props.get("V", NO_VALUE)


class Intrinsics(unittest.TestCase):
    def test_ref_parameter_pseudo_resource_and_no_value(self):
        self.assertEqual(value({"Ref": "P"}, {"P": "x"}), "x")
        self.assertEqual(value({"Ref": "AWS::AccountId"}), ACCOUNT)
        self.assertEqual(value({"Ref": "AWS::Region"}), REGION)
        self.assertEqual(value({"Ref": "AWS::Partition"}), "aws")
        role = {"R": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "airf-x"}}}
        self.assertEqual(value({"Ref": "R"}, resources=role), "airf-x")
        self.assertIs(value({"Ref": "AWS::NoValue"}), NO_VALUE)
        with self.assertRaisesRegex(RenderError, "Ref to Nope"):
            value({"Ref": "Nope"})

    def test_getatt_of_each_modelled_type(self):
        resources = {
            "R": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "r", "Path": "/p/"}},
            "B": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "b"}},
            "K": {"Type": "AWS::KMS::Key", "Properties": {}},
            "Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "q"}},
            "L": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": "/g"}},
        }
        self.assertEqual(value({"Fn::GetAtt": ["R", "Arn"]}, resources=resources), f"arn:aws:iam::{ACCOUNT}:role/p/r")
        self.assertEqual(value({"Fn::GetAtt": ["B", "Arn"]}, resources=resources), "arn:aws:s3:::b")
        key = value({"Fn::GetAtt": ["K", "Arn"]}, resources=resources)
        self.assertRegex(key, rf"^arn:aws:kms:{REGION}:{ACCOUNT}:key/[0-9a-f-]{{36}}$")
        self.assertEqual(value({"Fn::GetAtt": ["Q", "Arn"]}, resources=resources), f"arn:aws:sqs:{REGION}:{ACCOUNT}:q")
        # CloudFormation's Arn of a log group ends in ":*".
        self.assertTrue(value({"Fn::GetAtt": ["L", "Arn"]}, resources=resources).endswith("log-group:/g:*"))
        with self.assertRaisesRegex(RenderError, "no rule for GetAtt Nope"):
            value({"Fn::GetAtt": ["R", "Nope"]}, resources=resources)

    def test_the_snapshot_task_types(self):
        resources = {
            "C": {"Type": "AWS::ECS::Cluster", "Properties": {"ClusterName": "c"}},
            "T": {"Type": "AWS::ECS::TaskDefinition", "Properties": {"Family": "f"}},
            "E": {"Type": "AWS::ECR::Repository", "Properties": {"RepositoryName": "airf-agent"}},
            "G": {"Type": "AWS::EC2::SecurityGroup", "Properties": {}},
        }
        self.assertEqual(value({"Fn::GetAtt": ["C", "Arn"]}, resources=resources), f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/c")
        # Ref of a task definition is the ARN of the revision the stack registers.
        self.assertEqual(value({"Ref": "T"}, resources=resources), f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/f:1")
        self.assertEqual(value({"Fn::GetAtt": ["E", "RepositoryUri"]}, resources=resources),
                         f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/airf-agent")
        gid = value({"Fn::GetAtt": ["G", "GroupId"]}, resources=resources)
        self.assertRegex(gid, r"^sg-[0-9a-f]{17}$")
        self.assertEqual(value({"Ref": "G"}, resources=resources), gid)

    def test_sub_forms(self):
        resources = {"B": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "b"}}}
        self.assertEqual(value({"Fn::Sub": "${AWS::Region}-${P}"}, {"P": "x"}), f"{REGION}-x")
        self.assertEqual(value({"Fn::Sub": "${B.Arn}/*"}, resources=resources), "arn:aws:s3:::b/*")
        self.assertEqual(value({"Fn::Sub": ["${A}:${P}", {"A": {"Ref": "P"}}]}, {"P": "y"}), "y:y")
        self.assertEqual(value({"Fn::Sub": "${!Literal}"}), "${Literal}")
        with self.assertRaisesRegex(RenderError, "not a string"):
            value({"Fn::Sub": ["${A}", {"A": ["a", "b"]}]})

    def test_if_conditions_and_no_value_in_lists(self):
        conditions = {
            "Yes": {"Fn::Equals": [{"Ref": "P"}, "on"]},
            "No": {"Fn::Not": [{"Condition": "Yes"}]},
            "Both": {"Fn::And": [{"Condition": "Yes"}, {"Condition": "No"}]},
            "Either": {"Fn::Or": [{"Condition": "Yes"}, {"Condition": "No"}]},
        }
        self.assertEqual(value({"Fn::If": ["Yes", "a", "b"]}, {"P": "on"}, conditions=conditions), "a")
        self.assertEqual(value({"Fn::If": ["Yes", "a", "b"]}, {"P": "off"}, conditions=conditions), "b")
        self.assertEqual(value({"Fn::If": ["Both", "a", "b"]}, {"P": "on"}, conditions=conditions), "b")
        self.assertEqual(value({"Fn::If": ["Either", "a", "b"]}, {"P": "off"}, conditions=conditions), "a")
        listed = ["x", {"Fn::If": ["Yes", "y", {"Ref": "AWS::NoValue"}]}]
        self.assertEqual(value(listed, {"P": "off"}, conditions=conditions), ["x"])
        self.assertEqual(value(listed, {"P": "on"}, conditions=conditions), ["x", "y"])
        with self.assertRaisesRegex(RenderError, "refers to itself"):
            value("x", conditions={"Loop": {"Fn::Not": [{"Condition": "Loop"}]}})

    def test_resource_condition_removes_the_resource(self):
        template = {
            "Parameters": {"P": {"Type": "String", "Default": "off"}},
            "Conditions": {"On": {"Fn::Equals": [{"Ref": "P"}, "on"]}},
            "Resources": {
                "R": {"Type": "AWS::IAM::Role", "Condition": "On", "Properties": {"RoleName": "r"}},
                "Uses": {"Type": "AWS::SSM::Document", "Properties": {"V": {"Fn::GetAtt": ["R", "Arn"]}}},
            },
        }
        with self.assertRaisesRegex(RenderError, "GetAtt of R, which is not deployed"):
            stack(template)
        self.assertIn("R", stack(template, P="on").resources)

    def test_join_select_split_findinmap_base64(self):
        self.assertEqual(value({"Fn::Join": [",", ["a", {"Ref": "P"}]]}, {"P": "b"}), "a,b")
        self.assertEqual(value({"Fn::Select": [1, ["a", "b"]]}), "b")
        self.assertEqual(value({"Fn::Select": [4, {"Fn::Split": [":", "arn:aws:iam::111122223333:role/x"]}]}),
                         "111122223333")
        with self.assertRaisesRegex(RenderError, "out of"):
            value({"Fn::Select": [2, ["a", "b"]]})
        with self.assertRaisesRegex(RenderError, "Join of something else"):
            value({"Fn::Join": [",", ["a", ["b"]]]})
        template = {"Mappings": {"M": {"k": {"v": "found"}}},
                    "Resources": {"Probe": {"Type": "AWS::SSM::Document",
                                            "Properties": {"V": {"Fn::FindInMap": ["M", "k", "v"]}}}}}
        self.assertEqual(stack(template).resources["Probe"].properties["V"], "found")
        self.assertEqual(value({"Fn::Base64": "hi"}), "aGk=")

    def test_unknown_intrinsic_and_parameters(self):
        with self.assertRaisesRegex(RenderError, "Fn::ImportValue is not modelled"):
            value({"Fn::ImportValue": "x"})
        with self.assertRaisesRegex(RenderError, "parameter P has no default and no value"):
            stack({"Parameters": {"P": {"Type": "String"}}, "Resources": {}})
        with self.assertRaisesRegex(RenderError, "does not declare"):
            stack({"Resources": {}}, Q="x")
        self.assertEqual(stack({"Parameters": {"P": {"Type": "String", "Default": "d"}}, "Resources": {}}).values["P"],
                         "d")

    def test_yaml_short_forms_load_as_long_forms(self):
        text = textwrap.dedent("""\
            A: !Ref P
            B: !GetAtt R.Arn
            C: !Sub "x-${P}"
            D: !If [Cond, !Ref P, !Ref AWS::NoValue]
            E: !Join [",", [a, b]]
            F: !Select [0, !Split [",", "a,b"]]
            G: !Equals [a, b]
            """)
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "t.yaml"
            path.write_text(text)
            data = load(path)
        self.assertEqual(data["A"], {"Ref": "P"})
        self.assertEqual(data["B"], {"Fn::GetAtt": ["R", "Arn"]})
        self.assertEqual(data["C"], {"Fn::Sub": "x-${P}"})
        self.assertEqual(data["D"], {"Fn::If": ["Cond", {"Ref": "P"}, {"Ref": "AWS::NoValue"}]})
        self.assertEqual(data["E"], {"Fn::Join": [",", ["a", "b"]]})
        self.assertEqual(data["F"], {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]})
        self.assertEqual(data["G"], {"Fn::Equals": ["a", "b"]})


def random_text(rng: random.Random, alphabet: str = string.ascii_letters + string.digits + ":/-_.*") -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))


class Properties(unittest.TestCase):
    """Properties over generated inputs; 300 cases each, fixed seeds."""

    def test_join_of_split_is_identity(self):
        rng = random.Random(1)
        for _ in range(300):
            text, delim = random_text(rng), rng.choice([",", ":", "/", "-"])
            self.assertEqual(value({"Fn::Join": [delim, {"Fn::Split": [delim, text]}]}), text)

    def test_sub_replaces_every_reference_and_nothing_else(self):
        rng = random.Random(2)
        for _ in range(300):
            params = {f"P{i}": random_text(rng, string.ascii_letters) for i in range(rng.randint(1, 4))}
            pieces = [rng.choice([random_text(rng, "abc:/-"), "${" + rng.choice(list(params)) + "}"])
                      for _ in range(rng.randint(0, 6))]
            expected = "".join(params[p[2:-1]] if p.startswith("${") else p for p in pieces)
            self.assertEqual(value({"Fn::Sub": "".join(pieces)}, params), expected)

    def test_select_picks_the_index(self):
        rng = random.Random(3)
        for _ in range(300):
            items = [random_text(rng) for _ in range(rng.randint(1, 8))]
            i = rng.randrange(len(items))
            self.assertEqual(value({"Fn::Select": [i, items]}), items[i])

    def test_plain_values_render_unchanged(self):
        rng = random.Random(4)

        def plain(depth: int):
            kind = rng.choice(["str", "int", "list", "dict"] if depth < 3 else ["str", "int"])
            if kind == "str":
                return random_text(rng)
            if kind == "int":
                return rng.randint(-5, 5)
            if kind == "list":
                return [plain(depth + 1) for _ in range(rng.randint(0, 3))]
            # Two keys or more are never an intrinsic, whatever their names.
            return {f"k{i}{random_text(rng, string.ascii_letters)}": plain(depth + 1) for i in range(rng.randint(2, 4))}

        for _ in range(300):
            v = plain(0)
            self.assertEqual(value(v), v)

    def test_if_picks_the_branch_of_its_condition(self):
        rng = random.Random(5)
        conditions = {"C": {"Fn::Equals": [{"Ref": "P"}, "on"]}}
        for _ in range(300):
            a, b, on = random_text(rng), random_text(rng), rng.choice(["on", "off"])
            self.assertEqual(value({"Fn::If": ["C", a, b]}, {"P": on}, conditions=conditions), a if on == "on" else b)


class Deployment(unittest.TestCase):
    def test_the_emulator_gets_the_templates_names(self):
        from deployment import deploy, emulator_world  # noqa: PLC0415 - renders every template

        world = emulator_world(deploy())
        member = load(Path(__file__).resolve().parents[2] / "packaging/cloudformation/4-member.yaml")
        defaults = {k: v.get("Default") for k, v in member["Parameters"].items()}
        self.assertEqual(world["acquisition_role"], defaults["AcquisitionRoleName"])
        names = {r["name"] for r in world["roles"]}
        for p in ("MemberRoleName", "AcquisitionRoleName", "IsolationRoleName"):
            self.assertIn(defaults[p], names)
        profiles = {p["name"]: p["roles"] for p in world["profiles"]}
        self.assertEqual(profiles[defaults["AcquisitionProfileName"]], [defaults["AcquisitionRoleName"]])
        env = world["controller_env"]
        self.assertEqual(env["AIRF_ACQUISITION_PROFILE_NAME"], defaults["AcquisitionProfileName"])
        self.assertEqual(env["AIRF_EVIDENCE_BUCKET"], world["evidence_bucket"])
        # The snapshot path is deployed: its two principals exist and the controller is told.
        self.assertEqual(world["snapshot_reader_role"], defaults["SnapshotReaderRoleName"])
        self.assertIn(world["snapshot_task_role"], names)
        self.assertIn(world["snapshot_reader_role"], names)
        self.assertEqual(env["AIRF_SNAPSHOT_READER_ROLE_NAME"], world["snapshot_reader_role"])
        self.assertRegex(env["AIRF_SNAPSHOT_TASK_DEFINITION_ARN"], r":task-definition/airf-snapshot:1$")
        self.assertRegex(env["AIRF_SNAPSHOT_CLUSTER_ARN"], r":cluster/airf-snapshot$")
        self.assertRegex(env["AIRF_SNAPSHOT_SECURITY_GROUP_ID"], r"^sg-[0-9a-f]{17}$")
        self.assertEqual(len(env["AIRF_SNAPSHOT_SUBNET_IDS"].split(",")), 2)


if __name__ == "__main__":
    unittest.main()
