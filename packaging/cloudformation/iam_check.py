#!/usr/bin/env python3
"""Checks the templates' policies for what no recorded call can show: nothing broader than needed.

    packaging/cloudformation/iam_check.py [--templates DIR]

Whether the roles grant what the code calls, with their resources and conditions, is no longer
derived here from the Rust sources: the end-to-end tests record every AWS call the controller
and the agent make and evaluate each against the deployed policies (tests/iam/, run by
tests/run.sh and tests/tests/e2e/iam.rs), and flag Allow statements no recorded call needs.
What stays here is about the templates alone:

1. In every policy of every template: no Allow with a wildcard action ("*", "svc:*", "svc:Get*")
   or NotAction, and every `Resource: "*"` carries a YAML comment on its line or the line above
   saying why the service needs it.
2. The acquisition role has no action but PutObject/AbortMultipartUpload on the evidence bucket
   (a grant no test exercises could still read evidence).
3. Every checkov suppression in a template (Metadata: checkov: skip) has a written reason.

Exit status 0 when all hold, 1 otherwise (each problem on its own line). Standard library and
cfn-lint's YAML reader (cfnlint.decode) only.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The acquisition role: template and logical id.
ACQUISITION_ROLE = ("4-member.yaml", "AcquisitionInstanceRole")


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


def boundary_only_policies(template: dict) -> set[str]:
    """Managed policies used only as permissions boundaries (a role's PermissionsBoundary, never
    attached through Roles, Users or Groups): they grant nothing, so their Allow * is the idiom
    that lets the role's own policies decide while their Deny statements take away."""
    resources = template.get("Resources") or {}
    used_as_boundary = {
        (res.get("Properties") or {}).get("PermissionsBoundary", {}).get("Ref")
        for res in resources.values()
        if isinstance((res.get("Properties") or {}).get("PermissionsBoundary"), dict)
    }
    return {
        rid
        for rid, res in resources.items()
        if res.get("Type") == "AWS::IAM::ManagedPolicy"
        and rid in used_as_boundary
        and not any((res.get("Properties") or {}).get(k) for k in ("Roles", "Users", "Groups"))
    }


def policy_problems(path: Path) -> list[str]:
    template, lines = load_template(path)
    problems = []
    boundaries = boundary_only_policies(template)
    for rid, where, doc in policy_documents(template):
        if rid in boundaries:
            continue
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


def _text(node) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and "Fn::Sub" in node:
        sub = node["Fn::Sub"]
        return sub if isinstance(sub, str) else str(sub[0])
    if isinstance(node, dict) and "Ref" in node:
        return "${" + str(node["Ref"]) + "}"
    return str(node)


def _lists_only_under_prefix(st: dict) -> bool:
    """An s3:ListBucket statement whose s3:prefix condition admits only the evidence prefix."""
    prefixes = [_text(p) for p in _as_list(((st.get("Condition") or {}).get("StringLike") or {}).get("s3:prefix"))]
    return bool(prefixes) and all(p.startswith("${EvidencePrefix}/") for p in prefixes)


def evidence_write_only_problems(template: dict, role_id: str) -> list[str]:
    problems = []
    # Content stays write-only: put, abort, and (after a lost response) list its own uploads and
    # keys: names and sizes, never an object's bytes.
    allowed = {"s3:putobject", "s3:abortmultipartupload", "s3:listbucketmultipartuploads"}
    for st in _role_statements(template, role_id):
        if st.get("Effect") != "Allow":
            continue
        resources = [_text(r) for r in _as_list(st.get("Resource"))]
        actions = [a.lower() for a in _as_list(st.get("Action")) if isinstance(a, str)]
        # "*" reaches the bucket only with an S3 action (the SSM Agent's statements have none)
        if any("${EvidenceBucket}" in r for r in resources) or (
            "*" in resources and any(a.startswith("s3:") for a in actions)
        ):
            ok = allowed | ({"s3:listbucket"} if _lists_only_under_prefix(st) else set())
            extra = [a for a in _as_list(st.get("Action")) if isinstance(a, str) and a.lower() not in ok]
            if extra:
                problems.append(
                    f"{role_id} statement {st.get('Sid', '?')}: {', '.join(extra)} on the evidence bucket "
                    "(the acquisition role may only put objects, abort and list its uploads, and list keys "
                    "under the evidence prefix)"
                )
    return problems


# ------------------------------------------------------------------ the check


@dataclass
class Result:
    problems: list[str] = field(default_factory=list)


def run(template_dir: Path) -> Result:
    result = Result()
    for path in sorted(template_dir.glob("[0-9]-*.yaml")):
        result.problems += policy_problems(path)
        result.problems += suppression_problems(path)
    tfile, role_id = ACQUISITION_ROLE
    template, _ = load_template(template_dir / tfile)
    result.problems += evidence_write_only_problems(template, role_id)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--templates", type=Path, default=HERE, help="folder of the numbered templates")
    args = ap.parse_args(argv)
    result = run(args.templates)
    for problem in result.problems:
        print(f"iam_check: PROBLEM: {problem}", file=sys.stderr)
    print(f"iam_check: {len(result.problems)} problem(s)")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
