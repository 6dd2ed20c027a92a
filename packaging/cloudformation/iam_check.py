#!/usr/bin/env python3
"""Checks that the templates' IAM policies grant what the code calls, and nothing broader.

    packaging/cloudformation/iam_check.py [--controller-src DIR] [--agent-src DIR] [--strict]

1. Derives the AWS SDK calls from the Rust sources:
   - the controller (controller/src): calls on clients held in fields named ec2, iam, ssm,
     autoscaling, elb (made with the assumed member role AirfControllerAccess, template 4) and
     sns, sfn, s3, sts (made with the controller's own role, template 3), in the fluent style
     `.ec2.describe_instances()` or `self.sns\n    .publish()`;
   - the agent (agent/src): every `.<operation>()` whose name is an S3 operation (made with the
     acquisition instance role, template 4).
   Each method is matched to the service's operation in botocore's service model (installed
   with the AWS CLI) and turned into its IAM action: the operation name with the service's IAM
   prefix, except where IAM names it otherwise (IAM_ACTION_EXCEPTIONS).
2. For each of those three roles: every derived action must be allowed by the role, and every
   action the role allows must be derived, implied (IMPLIED: a service calling KMS as the
   caller) or on the role's commented ALLOWLIST.
3. In every policy of every template: no Allow with a wildcard action ("*", "svc:*", "svc:Get*")
   or NotAction, and every `Resource: "*"` carries a YAML comment on its line or the line above
   saying why the service needs it.
4. The acquisition role has no action but PutObject/AbortMultipartUpload on the evidence bucket.
5. Every checkov suppression in a template (Metadata: checkov: skip) has a written reason.

Exit status 0 when all hold, 1 otherwise (each problem on its own line). Standard library,
cfn-lint's YAML reader (cfnlint.decode) and botocore only.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

# ------------------------------------------------------------------ what the code may call

# Client field name -> (botocore service name, IAM prefix, role key).
CONTROLLER_CLIENTS = {
    "ec2": ("ec2", "ec2", "member"),
    "iam": ("iam", "iam", "member"),
    "ssm": ("ssm", "ssm", "member"),
    "autoscaling": ("autoscaling", "autoscaling", "member"),
    "elb": ("elbv2", "elasticloadbalancing", "member"),
    "sns": ("sns", "sns", "controller"),
    "sfn": ("stepfunctions", "states", "controller"),
    "s3": ("s3", "s3", "controller"),
    "sts": ("sts", "sts", "controller"),
}
# The agent's S3 client (any variable name), made with the acquisition instance role.
AGENT_CLIENT = "agent-s3"
CLIENTS = {**CONTROLLER_CLIENTS, AGENT_CLIENT: ("s3", "s3", "acquisition")}

# (IAM prefix, SDK method) -> IAM actions, where IAM does not name the action after the
# operation. An empty list: the call needs no permission.
IAM_ACTION_EXCEPTIONS: dict[tuple[str, str], list[str]] = {
    ("s3", "put_object"): ["s3:PutObject"],
    ("s3", "create_multipart_upload"): ["s3:PutObject"],
    ("s3", "upload_part"): ["s3:PutObject"],
    ("s3", "complete_multipart_upload"): ["s3:PutObject"],
    ("s3", "abort_multipart_upload"): ["s3:AbortMultipartUpload"],
    ("s3", "get_object"): ["s3:GetObject"],
    ("s3", "head_object"): ["s3:GetObject"],
    ("s3", "get_object_attributes"): ["s3:GetObject", "s3:GetObjectAttributes"],
    ("s3", "list_objects"): ["s3:ListBucket"],
    ("s3", "list_objects_v2"): ["s3:ListBucket"],
    ("s3", "head_bucket"): ["s3:ListBucket"],
    ("s3", "list_object_versions"): ["s3:ListBucketVersions"],
    ("s3", "list_parts"): ["s3:ListMultipartUploadParts"],
    ("s3", "list_multipart_uploads"): ["s3:ListBucketMultipartUploads"],
    ("sts", "get_caller_identity"): [],
}

# Agent calls that the acquisition role does not make.
AGENT_EXCLUDED = {
    # `airf-agent verify` reads evidence back; a responder runs it with their own credentials,
    # never the instance role, which must not read evidence.
    "get_object",
}

# role key -> (template, logical id of the AWS::IAM::Role)
ROLES = {
    "controller": ("3-security.yaml", "ControllerRole"),
    "member": ("4-member.yaml", "ControllerAccessRole"),
    "acquisition": ("4-member.yaml", "AcquisitionInstanceRole"),
}

# Actions a role needs because a service makes them as the caller (SSE-KMS).
IMPLIED: dict[str, dict[str, list[str]]] = {
    "controller": {
        # manifests are SSE-KMS objects: S3 calls KMS Decrypt as the reader; and S3 answers
        # 404 for a missing key only to a caller allowed s3:ListBucket (403 otherwise), which
        # the controller needs to tell "not there yet" from "denied"
        "s3:GetObject": ["kms:Decrypt", "s3:ListBucket"],
        # the topics are encrypted with the Security key: SNS calls KMS as the publisher
        "sns:Publish": ["kms:GenerateDataKey", "kms:Decrypt"],
    },
    "acquisition": {
        # SSE-KMS; a multipart upload needs Decrypt too (S3 reads the parts back to complete it)
        "s3:PutObject": ["kms:GenerateDataKey", "kms:Decrypt"],
    },
    "member": {
        # passing the instance profile's role is checked as iam:PassRole on these calls
        "ec2:AssociateIamInstanceProfile": ["iam:PassRole"],
        "ec2:ReplaceIamInstanceProfileAssociation": ["iam:PassRole"],
    },
}

# Actions a role may hold that no code of ours calls, and why.
ALLOWLIST: dict[str, dict[str, str]] = {
    "controller": {
        "logs:CreateLogStream": "the Lambda service writes the function's logs with its role",
        "logs:PutLogEvents": "the Lambda service writes the function's logs with its role",
        "sqs:SendMessage": "the Lambda service sends failed asynchronous invocations to the dead-letter queue with its role",
    },
    "acquisition": {
        "s3:GetObject": "the SSM Agent's aws:downloadContent fetches the agent and LiME modules with the instance role",
        "s3:ListBucket": "the SSM Agent's aws:downloadContent lists the artifact path first",
    },
    "member": {},
}

# ------------------------------------------------------------------ extracting calls from Rust

CONTROLLER_CALL = re.compile(
    r"\.(?P<client>" + "|".join(CONTROLLER_CLIENTS) + r")\s*\.\s*(?P<method>[a-z][a-z0-9_]*)\s*\("
)
ANY_CALL = re.compile(r"\.\s*(?P<method>[a-z][a-z0-9_]*)\s*\(")
LINE_COMMENT = re.compile(r"//[^\n]*")


@dataclass
class Call:
    client: str
    method: str
    where: list[str] = field(default_factory=list)


def _rust_files(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*.rs") if p.is_file())


def _strip_comments(text: str) -> str:
    # Line comments only (doc comments included): enough to keep examples in docs out.
    return LINE_COMMENT.sub("", text)


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def extract_controller_calls(src: Path) -> dict[tuple[str, str], Call]:
    calls: dict[tuple[str, str], Call] = {}
    for path in _rust_files(src):
        text = _strip_comments(path.read_text())
        for m in CONTROLLER_CALL.finditer(text):
            key = (m["client"], m["method"])
            calls.setdefault(key, Call(*key)).where.append(f"{path}:{_line_of(text, m.start())}")
    return calls


def extract_agent_calls(src: Path) -> dict[tuple[str, str], Call]:
    s3_methods = operations("s3")
    calls: dict[tuple[str, str], Call] = {}
    for path in _rust_files(src):
        text = _strip_comments(path.read_text())
        for m in ANY_CALL.finditer(text):
            method = m["method"]
            if method in s3_methods and method not in AGENT_EXCLUDED:
                key = (AGENT_CLIENT, method)
                calls.setdefault(key, Call(*key)).where.append(f"{path}:{_line_of(text, m.start())}")
    return calls


_OPERATIONS: dict[str, dict[str, str]] = {}


def operations(service: str) -> dict[str, str]:
    """SDK method name (snake_case) -> operation name (PascalCase), from botocore's model."""
    if service not in _OPERATIONS:
        import botocore.session  # noqa: PLC0415 - heavy; only when needed
        from botocore import xform_name  # noqa: PLC0415

        model = botocore.session.get_session().get_service_model(service)
        _OPERATIONS[service] = {xform_name(op): op for op in model.operation_names}
    return _OPERATIONS[service]


def iam_actions(service: str, prefix: str, method: str) -> list[str] | None:
    """IAM actions for one SDK call; None when the method is no operation of the service."""
    if (prefix, method) in IAM_ACTION_EXCEPTIONS:
        return IAM_ACTION_EXCEPTIONS[(prefix, method)]
    op = operations(service).get(method)
    return None if op is None else [f"{prefix}:{op}"]


# ------------------------------------------------------------------ reading templates


def load_template(path: Path) -> tuple[dict, list[str]]:
    from cfnlint.decode import cfn_yaml  # noqa: PLC0415 - cfn-lint's reader knows !Ref, !Sub...

    return cfn_yaml.load(str(path)), path.read_text().splitlines()


def _branches(node):
    """A statement or list item, with Fn::If expanded into both branches."""
    if isinstance(node, dict) and list(node) == ["Fn::If"]:
        for branch in node["Fn::If"][1:]:
            yield from _branches(branch)
    elif isinstance(node, dict) and list(node) == ["Ref"] and node["Ref"] == "AWS::NoValue":
        return
    else:
        yield node


def _as_list(node) -> list:
    if node is None:
        return []
    items = node if isinstance(node, list) else [node]
    out = []
    for item in items:
        out.extend(_branches(item))
    return out


def _statements(document) -> list[dict]:
    if not isinstance(document, dict):
        return []
    return [s for s in _as_list(document.get("Statement")) if isinstance(s, dict)]


def policy_documents(template: dict):
    """(resource id, where, document) of every permissions policy; trust policies excluded."""
    for rid, res in (template.get("Resources") or {}).items():
        props = res.get("Properties") or {}
        rtype = res.get("Type", "")
        if rtype == "AWS::IAM::Role":
            for pol in _as_list(props.get("Policies")):
                yield rid, f"policy {pol.get('PolicyName')}", pol.get("PolicyDocument")
        elif rtype in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            yield rid, "policy", props.get("PolicyDocument")
        elif rtype in ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy", "AWS::EC2::VPCEndpoint"):
            if props.get("PolicyDocument") is not None:
                yield rid, "policy", props.get("PolicyDocument")
        elif rtype == "AWS::KMS::Key":
            yield rid, "key policy", props.get("KeyPolicy")
        elif rtype == "AWS::Events::EventBus":
            if props.get("Policy") is not None:
                yield rid, "bus policy", props.get("Policy")


def _line(node) -> int | None:
    mark = getattr(node, "start_mark", None)
    return None if mark is None else mark.line  # 0-based


def _has_comment(lines: list[str], line: int | None) -> bool:
    if line is None or line >= len(lines):
        return False
    if re.search(r"""["']\*["']\s*#\s*\S""", lines[line]):
        return True
    above = line - 1
    while above >= 0 and not lines[above].strip():
        above -= 1
    return above >= 0 and lines[above].strip().startswith("#")


def policy_problems(path: Path) -> list[str]:
    template, lines = load_template(path)
    problems = []
    for rid, where, doc in policy_documents(template):
        for st in _statements(doc):
            if st.get("Effect") != "Allow":
                continue
            sid = st.get("Sid", "?")
            label = f"{path.name}: {rid} {where} statement {sid}"
            if "NotAction" in st:
                problems.append(f"{label}: Allow with NotAction grants everything else")
            for action in _as_list(st.get("Action")):
                if isinstance(action, str) and "*" in action:
                    problems.append(f"{label}: wildcard action {action!r}")
            for res in _as_list(st.get("Resource")):
                if isinstance(res, str) and res == "*" and not _has_comment(lines, _line(res)):
                    at = _line(res)
                    problems.append(
                        f"{path.name}:{at + 1 if at is not None else '?'}: {rid} {where} statement {sid}: "
                        'Resource "*" without a comment saying why the service needs it'
                    )
    return problems


def suppression_problems(path: Path) -> list[str]:
    """Every checkov suppression (Metadata: checkov: skip) names a check and gives a reason."""
    template, _ = load_template(path)
    problems = []
    for rid, res in (template.get("Resources") or {}).items():
        skips = ((res.get("Metadata") or {}).get("checkov") or {}).get("skip") or []
        for skip in skips:
            reason = str(skip.get("comment") or "").strip() if isinstance(skip, dict) else ""
            check = skip.get("id") if isinstance(skip, dict) else skip
            if not re.fullmatch(r"CKV2?_[A-Z0-9]+_[0-9]+", str(check or "")):
                problems.append(f"{path.name}: {rid}: checkov suppression without a check id: {skip!r}")
            if len(reason) < 20:
                problems.append(f"{path.name}: {rid}: checkov suppression of {check} without a written reason")
    return problems


def _role_statements(template: dict, role_id: str) -> list[dict]:
    resources = template.get("Resources") or {}
    role = resources.get(role_id)
    if role is None or role.get("Type") != "AWS::IAM::Role":
        raise KeyError(role_id)
    out = []
    for pol in _as_list((role.get("Properties") or {}).get("Policies")):
        out += _statements(pol.get("PolicyDocument"))
    # Separate policies attached to the role in the same template.
    for res in resources.values():
        if res.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            props = res.get("Properties") or {}
            if {"Ref": role_id} in _as_list(props.get("Roles")):
                out += _statements(props.get("PolicyDocument"))
    return out


def granted_actions(template: dict, role_id: str) -> dict[str, str]:
    """lower-case action -> action as written, over the role's Allow statements."""
    out = {}
    for st in _role_statements(template, role_id):
        if st.get("Effect") == "Allow":
            for action in _as_list(st.get("Action")):
                if isinstance(action, str):
                    out[action.lower()] = action
    return out


def _text(node) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and "Fn::Sub" in node:
        sub = node["Fn::Sub"]
        return sub if isinstance(sub, str) else str(sub[0])
    if isinstance(node, dict) and "Ref" in node:
        return "${" + str(node["Ref"]) + "}"
    return str(node)


def evidence_write_only_problems(template: dict, role_id: str) -> list[str]:
    problems = []
    allowed = {"s3:putobject", "s3:abortmultipartupload"}
    for st in _role_statements(template, role_id):
        if st.get("Effect") != "Allow":
            continue
        resources = [_text(r) for r in _as_list(st.get("Resource"))]
        if any("${EvidenceBucket}" in r or r == "*" for r in resources):
            extra = [a for a in _as_list(st.get("Action")) if isinstance(a, str) and a.lower() not in allowed]
            if extra:
                problems.append(
                    f"{role_id} statement {st.get('Sid', '?')}: {', '.join(extra)} on the evidence bucket "
                    "(the acquisition role may only put objects and abort its uploads)"
                )
    return problems


# ------------------------------------------------------------------ the check


@dataclass
class Result:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def required_actions(calls: dict[tuple[str, str], Call], role: str, result: Result) -> dict[str, list[str]]:
    """lower-case action -> where the code calls it, for the calls made with `role`."""
    need: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for (client, method), call in sorted(calls.items()):
        service, prefix, role_key = CLIENTS[client]
        if role_key != role:
            continue
        actions = iam_actions(service, prefix, method)
        if actions is None:
            result.notes.append(f"ignored .{client}.{method}(): not an operation of {service} ({call.where[0]})")
            continue
        for action in actions:
            need.setdefault(action.lower(), []).extend(call.where)
            names[action.lower()] = action
            for implied in IMPLIED[role].get(action, []):
                need.setdefault(implied.lower(), []).append(f"implied by {action}")
                names[implied.lower()] = implied
    return {names[k]: v for k, v in need.items()}


def check_role(template_dir: Path, role: str, calls: dict[tuple[str, str], Call], result: Result) -> None:
    tfile, role_id = ROLES[role]
    template, _ = load_template(template_dir / tfile)
    granted = granted_actions(template, role_id)
    need = required_actions(calls, role, result)
    need_lower = {a.lower() for a in need}
    for action, where in sorted(need.items()):
        if action.lower() not in granted:
            result.problems.append(f"{tfile} {role_id}: missing {action}, called at {', '.join(sorted(set(where)))}")
    allow = {a.lower() for a in ALLOWLIST[role]}
    for low, action in sorted(granted.items()):
        if low not in need_lower and low not in allow:
            result.problems.append(f"{tfile} {role_id}: grants {action}, which the code never calls")
    result.notes.append(f"{role_id}: {len(need)} actions derived from the code, {len(granted)} granted")


def run(template_dir: Path, controller_src: Path | None, agent_src: Path | None, strict: bool) -> Result:
    result = Result()
    for path in sorted(template_dir.glob("[0-9]-*.yaml")):
        result.problems += policy_problems(path)
        result.problems += suppression_problems(path)

    if controller_src is not None:
        calls = extract_controller_calls(controller_src) if controller_src.is_dir() else {}
        if calls:
            check_role(template_dir, "controller", calls, result)
            check_role(template_dir, "member", calls, result)
        elif strict:
            result.problems.append(f"{controller_src}: no controller SDK calls found")
        else:
            result.notes.append(f"{controller_src}: no controller SDK calls found yet; controller and member roles not checked")

    if agent_src is not None:
        calls = extract_agent_calls(agent_src)
        if not calls:
            result.problems.append(f"{agent_src}: no S3 calls found (has the agent's S3 code moved?)")
        else:
            check_role(template_dir, "acquisition", calls, result)
        template, _ = load_template(template_dir / ROLES["acquisition"][0])
        result.problems += evidence_write_only_problems(template, ROLES["acquisition"][1])
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--templates", type=Path, default=HERE, help="folder of the numbered templates")
    ap.add_argument("--controller-src", type=Path, default=REPO / "controller" / "src")
    ap.add_argument("--agent-src", type=Path, default=REPO / "agent" / "src")
    ap.add_argument("--strict", action="store_true", help="fail when the controller makes no SDK call yet")
    args = ap.parse_args(argv)
    result = run(args.templates, args.controller_src, args.agent_src, args.strict)
    for note in result.notes:
        print(f"iam_check: {note}")
    for problem in result.problems:
        print(f"iam_check: PROBLEM: {problem}", file=sys.stderr)
    print(f"iam_check: {len(result.problems)} problem(s)")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
