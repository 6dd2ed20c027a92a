"""A CloudFormation renderer: a template and its parameters in, the resources as deployed out.

Only what IAM evaluation needs: the intrinsic functions (Ref, Fn::Sub, Fn::GetAtt, Fn::If,
Fn::Join, Fn::Select, Fn::Split, Fn::FindInMap, Fn::Base64, the condition functions), parameter
defaults, pseudo parameters and resource conditions, with the physical names and ARNs
CloudFormation would give the resources (`Resource.ref` and `Resource.attr`). Anything it does
not model (an unknown intrinsic, a GetAtt it has no rule for, a missing parameter) raises
`RenderError`: a policy rendered wrong would make the evaluation say nothing true.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

NO_VALUE = object()  # AWS::NoValue: the key or list item disappears

INTRINSICS = {
    "Ref", "Fn::Sub", "Fn::GetAtt", "Fn::If", "Fn::Join", "Fn::Select", "Fn::Split",
    "Fn::FindInMap", "Fn::Base64", "Fn::Equals", "Fn::And", "Fn::Or", "Fn::Not", "Condition",
    "Fn::GetAZs", "Fn::ImportValue", "Fn::Cidr", "Fn::Length", "Fn::ToJsonString",
}


class RenderError(ValueError):
    pass


# ------------------------------------------------------------------ YAML with the short forms


class _Loader(yaml.SafeLoader):
    pass


def _short_form(name: str):
    full = name if name in ("Ref", "Condition") else f"Fn::{name}"

    def construct(loader: yaml.Loader, node: yaml.Node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if full == "Fn::GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {full: value}

    return construct


for _name in ("Ref", "Condition", "Sub", "GetAtt", "If", "Join", "Select", "Split", "FindInMap",
              "Base64", "Equals", "And", "Or", "Not", "GetAZs", "ImportValue", "Cidr", "Length",
              "ToJsonString"):
    _Loader.add_constructor(f"!{_name}", _short_form(_name))


def load(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


# ------------------------------------------------------------------ physical names and ARNs


@dataclass
class Resource:
    logical_id: str
    type: str
    properties: dict
    ref: str
    attrs: dict[str, str] = field(default_factory=dict)

    def attr(self, name: str) -> str:
        if name not in self.attrs:
            raise RenderError(f"{self.logical_id} ({self.type}): no rule for GetAtt {name}")
        return self.attrs[name]


def generated_name(stack: str, logical_id: str, max_len: int = 64) -> str:
    """A name like CloudFormation's stack-Logical-SUFFIX, deterministic for the tests."""
    suffix = hashlib.sha256(f"{stack}/{logical_id}".encode()).hexdigest()[:12].upper()
    return f"{stack}-{logical_id}-{suffix}"[:max_len]


def key_id(stack: str, logical_id: str) -> str:
    return str(uuid.UUID(hashlib.sha256(f"{stack}/{logical_id}".encode()).hexdigest()[:32]))


# ------------------------------------------------------------------ the renderer


@dataclass
class Stack:
    """One template deployed with `parameters` in `account`/`region`."""

    name: str
    template: dict
    parameters: dict[str, str]
    account: str
    region: str
    partition: str = "aws"
    resources: dict[str, Resource] = field(default_factory=dict)
    conditions: dict[str, bool] = field(default_factory=dict)
    values: dict[str, object] = field(default_factory=dict)

    # -- entry
    def render(self) -> Stack:
        declared = self.template.get("Parameters") or {}
        unknown = set(self.parameters) - set(declared)
        if unknown:
            raise RenderError(f"{self.name}: parameters the template does not declare: {sorted(unknown)}")
        for pname, spec in declared.items():
            if pname in self.parameters:
                self.values[pname] = self.parameters[pname]
            elif "Default" in (spec or {}):
                self.values[pname] = spec["Default"]
            else:
                raise RenderError(f"{self.name}: parameter {pname} has no default and no value")
            if (spec or {}).get("Type") == "CommaDelimitedList":
                self.values[pname] = [v.strip() for v in str(self.values[pname]).split(",")]
            else:
                self.values[pname] = str(self.values[pname])
        for cname in self.template.get("Conditions") or {}:
            self._condition(cname, set())
        # Names first (a Sub may name any resource), properties second.
        raw = self.template.get("Resources") or {}
        for rid, res in raw.items():
            if not self._included(res):
                continue
            self.resources[rid] = Resource(rid, res["Type"], {}, "")
        for rid, res in raw.items():
            if rid in self.resources:
                self._name(self.resources[rid], res.get("Properties") or {})
        for rid, res in raw.items():
            if rid in self.resources:
                props = self.resolve(res.get("Properties") or {})
                self.resources[rid].properties = {} if props is NO_VALUE else props
        return self

    def _included(self, res: dict) -> bool:
        cond = res.get("Condition")
        return cond is None or self.conditions[cond]

    def _condition(self, name: str, seen: set[str]) -> bool:
        if name in self.conditions:
            return self.conditions[name]
        if name in seen:
            raise RenderError(f"{self.name}: condition {name} refers to itself")
        defs = self.template.get("Conditions") or {}
        if name not in defs:
            raise RenderError(f"{self.name}: no condition {name}")
        value = self._cond_value(defs[name], seen | {name})
        self.conditions[name] = value
        return value

    def _cond_value(self, node, seen: set[str]) -> bool:
        if not isinstance(node, dict) or len(node) != 1:
            raise RenderError(f"{self.name}: not a condition function: {node!r}")
        (fn, arg), = node.items()
        if fn == "Condition":
            return self._condition(arg, seen)
        if fn == "Fn::Equals":
            a, b = (self.resolve(x) for x in arg)
            return str(a) == str(b)
        if fn == "Fn::Not":
            return not self._cond_value(arg[0], seen)
        if fn == "Fn::And":
            return all(self._cond_value(x, seen) for x in arg)
        if fn == "Fn::Or":
            return any(self._cond_value(x, seen) for x in arg)
        raise RenderError(f"{self.name}: not a condition function: {fn}")

    # -- physical names
    def _name(self, r: Resource, props: dict) -> None:
        a, p, reg = self.account, self.partition, self.region

        def prop(key: str, max_len: int = 64) -> str:
            v = props.get(key)
            return generated_name(self.name, r.logical_id, max_len) if v is None else str(self.resolve(v))

        t = r.type
        if t == "AWS::IAM::Role":
            name = prop("RoleName")
            path = str(self.resolve(props.get("Path", "/")))
            r.ref, r.attrs = name, {"Arn": f"arn:{p}:iam::{a}:role{path}{name}", "RoleId": f"AROA{name.upper()[:16]}"}
        elif t == "AWS::IAM::InstanceProfile":
            name = prop("InstanceProfileName", 128)
            r.ref, r.attrs = name, {"Arn": f"arn:{p}:iam::{a}:instance-profile/{name}"}
        elif t == "AWS::IAM::ManagedPolicy":
            name = prop("ManagedPolicyName", 128)
            arn = f"arn:{p}:iam::{a}:policy/{name}"
            r.ref, r.attrs = arn, {"PolicyArn": arn}
        elif t == "AWS::KMS::Key":
            kid = key_id(self.name, r.logical_id)
            r.ref, r.attrs = kid, {"Arn": f"arn:{p}:kms:{reg}:{a}:key/{kid}", "KeyId": kid}
        elif t == "AWS::S3::Bucket":
            name = prop("BucketName", 63).lower()
            r.ref, r.attrs = name, {"Arn": f"arn:{p}:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com"}
        elif t == "AWS::SNS::Topic":
            arn = f"arn:{p}:sns:{reg}:{a}:{prop('TopicName', 256)}"
            r.ref, r.attrs = arn, {"TopicArn": arn, "TopicName": arn.rsplit(":", 1)[1]}
        elif t == "AWS::SQS::Queue":
            name = prop("QueueName", 80)
            r.ref = f"https://sqs.{reg}.amazonaws.com/{a}/{name}"
            r.attrs = {"Arn": f"arn:{p}:sqs:{reg}:{a}:{name}", "QueueName": name, "QueueUrl": r.ref}
        elif t == "AWS::Lambda::Function":
            name = prop("FunctionName")
            r.ref, r.attrs = name, {"Arn": f"arn:{p}:lambda:{reg}:{a}:function:{name}"}
        elif t == "AWS::Logs::LogGroup":
            name = prop("LogGroupName", 512)
            # CloudFormation's Arn of a log group ends in ":*".
            r.ref, r.attrs = name, {"Arn": f"arn:{p}:logs:{reg}:{a}:log-group:{name}:*"}
        elif t == "AWS::Events::EventBus":
            name = prop("Name", 256)
            r.ref, r.attrs = name, {"Arn": f"arn:{p}:events:{reg}:{a}:event-bus/{name}", "Name": name}
        elif t == "AWS::Events::Rule":
            name = prop("Name")
            bus = props.get("EventBusName")
            path = f"{self.resolve(bus)}/{name}" if bus not in (None, "default") else name
            r.ref, r.attrs = name, {"Arn": f"arn:{p}:events:{reg}:{a}:rule/{path}"}
        elif t == "AWS::StepFunctions::StateMachine":
            arn = f"arn:{p}:states:{reg}:{a}:stateMachine:{prop('StateMachineName', 80)}"
            r.ref, r.attrs = arn, {"Arn": arn}
        elif t == "AWS::SSM::Document":
            r.ref = prop("Name", 128)
        elif t == "AWS::ECS::Cluster":
            name = prop("ClusterName", 255)
            r.ref, r.attrs = name, {"Arn": f"arn:{p}:ecs:{reg}:{a}:cluster/{name}"}
        elif t == "AWS::ECS::TaskDefinition":
            # Ref is the ARN of the revision the stack registers: the first, in a new account.
            arn = f"arn:{p}:ecs:{reg}:{a}:task-definition/{prop('Family', 255)}:1"
            r.ref, r.attrs = arn, {"TaskDefinitionArn": arn}
        elif t == "AWS::ECR::Repository":
            name = prop("RepositoryName", 256)
            r.ref, r.attrs = name, {"Arn": f"arn:{p}:ecr:{reg}:{a}:repository/{name}",
                                    "RepositoryUri": f"{a}.dkr.ecr.{reg}.amazonaws.com/{name}"}
        elif t == "AWS::EC2::SecurityGroup":
            gid = "sg-" + hashlib.sha256(f"{self.name}/{r.logical_id}".encode()).hexdigest()[:17]
            r.ref, r.attrs = gid, {"GroupId": gid}
        elif t == "AWS::SecurityHub::ActionTarget":
            arn = f"arn:{p}:securityhub:{reg}:{a}:action/custom/{prop('Id', 20)}"
            r.ref, r.attrs = arn, {"Arn": arn}
        else:
            # A resource nothing evaluates: its Ref is a stable id, it has no attributes.
            r.ref = generated_name(self.name, r.logical_id)

    # -- intrinsics
    def resolve(self, node):
        if isinstance(node, list):
            out = [self.resolve(x) for x in node]
            return [x for x in out if x is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key in INTRINSICS:
                return self._intrinsic(key, arg)
        out = {}
        for k, v in node.items():
            rv = self.resolve(v)
            if rv is not NO_VALUE:
                out[k] = rv
        return out

    def _ref(self, name: str):
        pseudo = {
            "AWS::AccountId": self.account,
            "AWS::Region": self.region,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.name,
            "AWS::StackId": f"arn:{self.partition}:cloudformation:{self.region}:{self.account}:stack/{self.name}/"
                            + key_id(self.name, "stack"),
            "AWS::NotificationARNs": [],
        }
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in pseudo:
            return pseudo[name]
        if name in self.values:
            return self.values[name]
        if name in self.resources:
            return self.resources[name].ref
        raise RenderError(f"{self.name}: Ref to {name}, which is no parameter or (deployed) resource")

    def _getatt(self, rid: str, attr: str) -> str:
        if rid not in self.resources:
            raise RenderError(f"{self.name}: GetAtt of {rid}, which is not deployed")
        return self.resources[rid].attr(attr)

    def _sub(self, text: str, variables: dict) -> str:
        def repl(m: re.Match) -> str:
            expr = m.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            if expr in variables:
                value = variables[expr]
            elif "." in expr and expr.split(".", 1)[0] in self.resources:
                value = self._getatt(*expr.split(".", 1))
            else:
                value = self._ref(expr)
            if not isinstance(value, str):
                raise RenderError(f"{self.name}: ${{{expr}}} in a Sub is not a string: {value!r}")
            return value

        return re.sub(r"\$\{([^}]*)\}", repl, text)

    def _intrinsic(self, key: str, arg):
        if key == "Ref":
            return self._ref(arg)
        if key == "Condition":
            return self._condition(arg, set())
        if key == "Fn::GetAtt":
            if not (isinstance(arg, list) and len(arg) == 2):
                raise RenderError(f"{self.name}: Fn::GetAtt takes [resource, attribute]: {arg!r}")
            return self._getatt(str(arg[0]), str(self.resolve(arg[1])))
        if key == "Fn::Sub":
            if isinstance(arg, str):
                return self._sub(arg, {})
            if isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], dict):
                variables = {k: self.resolve(v) for k, v in arg[1].items()}
                return self._sub(arg[0], variables)
            raise RenderError(f"{self.name}: Fn::Sub takes a string or [string, variables]: {arg!r}")
        if key == "Fn::If":
            if not (isinstance(arg, list) and len(arg) == 3):
                raise RenderError(f"{self.name}: Fn::If takes [condition, then, else]: {arg!r}")
            return self.resolve(arg[1] if self._condition(arg[0], set()) else arg[2])
        if key == "Fn::Join":
            delim, items = arg
            items = self.resolve(items)
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise RenderError(f"{self.name}: Fn::Join of something else than strings: {items!r}")
            return str(delim).join(items)
        if key == "Fn::Select":
            index, items = int(self.resolve(arg[0])), self.resolve(arg[1])
            if not isinstance(items, list) or not 0 <= index < len(items):
                raise RenderError(f"{self.name}: Fn::Select index {index} out of {items!r}")
            return items[index]
        if key == "Fn::Split":
            delim, text = arg[0], self.resolve(arg[1])
            if not isinstance(text, str):
                raise RenderError(f"{self.name}: Fn::Split of a non-string {text!r}")
            return text.split(delim)
        if key == "Fn::FindInMap":
            m, k1, k2 = (self.resolve(x) for x in arg)
            try:
                return self.template["Mappings"][m][k1][k2]
            except (KeyError, TypeError) as e:
                raise RenderError(f"{self.name}: Fn::FindInMap {m}/{k1}/{k2}: no such entry") from e
        if key == "Fn::Base64":
            return base64.b64encode(str(self.resolve(arg)).encode()).decode()
        if key in ("Fn::Equals", "Fn::And", "Fn::Or", "Fn::Not"):
            return self._cond_value({key: arg}, set())
        if key == "Fn::GetAZs":
            return [f"{self.region}{c}" for c in "abc"]
        raise RenderError(f"{self.name}: {key} is not modelled by tests/iam/cfn.py")


def render(name: str, path: Path, parameters: dict[str, str], account: str, region: str) -> Stack:
    return Stack(name, load(path), parameters, account, region).render()
