"""The state machine's role in template 3 allows what its definition makes Step Functions do.

A Map state in Distributed mode runs each item as a child execution of the same state machine:
Step Functions starts it, describes it and, when the parent stops, stops it, all with the state
machine's role (Step Functions developer guide, "IAM policies for using Distributed Map
states"). Without these grants every Map Run fails at once with an access error, which no
emulator reproduces (moto does not evaluate IAM; aws-local-stepfunctions runs Map items inline).

    python3 -m unittest discover -s tests/cloudformation -v
"""

from __future__ import annotations

import fnmatch
import json
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CFN = REPO / "packaging" / "cloudformation"
sys.path.insert(0, str(CFN))

import iam_check  # noqa: E402


def _strings(node):
    """A policy field as a list: a string, a list, or Fn::Sub / Fn::GetAtt kept as text."""
    items = node if isinstance(node, list) else [node]
    out = []
    for item in items:
        if isinstance(item, dict) and "Fn::Sub" in item:
            sub = item["Fn::Sub"]
            out.append(sub if isinstance(sub, str) else sub[0])
        else:
            out.append(item if isinstance(item, str) else json.dumps(item))
    return out


def _maps(states):
    for state in states.values():
        if state.get("Type") == "Map":
            yield state
            yield from _maps(state.get("ItemProcessor", state.get("Iterator", {})).get("States", {}))


class WorkflowRole(unittest.TestCase):
    def setUp(self):
        template, _ = iam_check.load_template(CFN / "3-security.yaml")
        resources = template["Resources"]
        machine = resources["StateMachine"]["Properties"]
        self.name = machine["StateMachineName"]
        self.definition = machine["Definition"]
        get_att = machine["RoleArn"]["Fn::GetAtt"]
        role_id = get_att[0] if isinstance(get_att, list) else get_att.split(".")[0]
        self.statements = [
            s
            for policy in resources[role_id]["Properties"].get("Policies", [])
            for s in policy["PolicyDocument"]["Statement"]
        ]

    def allowed(self, action: str, resource: str) -> bool:
        for s in self.statements:
            if s.get("Effect") != "Allow":
                continue
            if action not in _strings(s.get("Action", [])):
                continue
            if any(fnmatch.fnmatchcase(resource, pattern) for pattern in _strings(s.get("Resource", []))):
                return True
        return False

    def test_a_distributed_map_can_start_watch_and_stop_its_child_executions(self):
        distributed = [
            m
            for m in _maps(self.definition["States"])
            if m.get("ItemProcessor", {}).get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED"
        ]
        self.assertTrue(distributed, "the workflow has no Distributed Map: nothing to check")
        arn = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}"
        machine = f"{arn}:stateMachine:{self.name}"
        for m in distributed:
            label = m.get("Label", "0f1e2d3c-aaaa-bbbb-cccc-111122223333")
            child = f"{arn}:execution:{self.name}/{label}:5a6b7c8d-1111-2222-3333-444455556666"
            self.assertTrue(self.allowed("states:StartExecution", machine), f"StartExecution on {machine}")
            for action in ("states:DescribeExecution", "states:StopExecution"):
                self.assertTrue(self.allowed(action, child), f"{action} on {child}")

    def test_nothing_beyond_its_own_executions(self):
        for s in self.statements:
            actions = _strings(s.get("Action", []))
            if not any(a.startswith("states:") for a in actions):
                continue
            for resource in _strings(s.get("Resource", [])):
                self.assertRegex(resource, rf":(stateMachine|execution):{self.name}([:/]\*)?$", s.get("Sid"))


if __name__ == "__main__":
    unittest.main()
