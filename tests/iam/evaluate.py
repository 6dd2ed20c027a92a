#!/usr/bin/env python3
"""Evaluates recorded AWS calls against the policies the CloudFormation templates deploy.

    tests/iam/evaluate.py [--table OUT.md] [--json OUT.json] LOG.jsonl...

Each LOG is a call log of tests/iam/record.py (one per test; the file's stem names the test).
For every call: tests/iam/authz.py gives the authorizations AWS makes (action, resource,
condition keys), tests/iam/deployment.py renders templates 1, 3 and 4, tests/iam/policies.py
finds the caller's identity policies, its boundary and the resource's policy, and
@cloud-copilot/iam-simulate (tests/iam/simulate.cjs) decides. Exit status 1 when any call would
be denied, has no mapping, or comes from a principal the templates do not deploy; each such call
is printed with the statement that denied it, or "no statement allows it".

--table writes every recorded authorization with the statement that allows it (identical rows
merged, resource ids generalized) as a markdown table.

--unused (over the logs of every end-to-end test, as tests/run.sh runs it): each Allow statement
of airf's roles (CHECKED_ROLES) must be the one that allows some recorded call, or be listed in
UNEXERCISED with the reason no test can make that call: a statement no call needs grants more
than airf uses.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import authz  # noqa: E402
from deployment import ORGANIZATION_ID, deploy  # noqa: E402
from policies import encryption_keys, resource_policies, role_policies  # noqa: E402


# Roles whose inline Allow statements must each allow a recorded call (--unused).
CHECKED_ROLES = [
    ("3-security.yaml", "ControllerRole"),
    ("4-member.yaml", "ControllerAccessRole"),
    ("4-member.yaml", "AcquisitionInstanceRole"),
    ("3-security.yaml", "SnapshotTaskRole"),
    ("4-member.yaml", "SnapshotReaderRole"),
]

# Statements no end-to-end test exercises, and why. A listed statement that a test does exercise
# is an error too: the list says only what is true.
UNEXERCISED = {
    "3-security.yaml ControllerRole policy airf-controller: WriteOwnLogs":
        "the Lambda service writes the function's logs with its role; no airf code calls CloudWatch Logs",
    "3-security.yaml ControllerRole policy airf-controller: DeadLetters":
        "the Lambda service sends failed asynchronous invocations to the queue with the role",
    "4-member.yaml AcquisitionInstanceRole policy airf-acquisition: ReadArtifacts":
        "the SSM Agent's aws:downloadContent fetches the agent with the instance role; moto plays no SSM Agent",
    "4-member.yaml AcquisitionInstanceRole policy airf-acquisition: ListArtifacts":
        "as ReadArtifacts: aws:downloadContent lists the path first",
    "4-member.yaml AcquisitionInstanceRole policy airf-acquisition: ListOwnUploads":
        "the agent lists its key's open uploads only after a lost CreateMultipartUpload response; no test against moto loses one (the fault-proxy suite runs against Garage)",
    "4-member.yaml AcquisitionInstanceRole policy airf-acquisition: ListOwnEvidenceKeys":
        "the agent lists its own key only after a lost CompleteMultipartUpload response; no test against moto loses one (the fault-proxy suite runs against Garage)",
    "3-security.yaml SnapshotTaskRole policy airf-snapshot-task: ListOwnUploads":
        "as the acquisition role's: only after a lost CreateMultipartUpload response, which no test against moto loses",
    "3-security.yaml SnapshotTaskRole policy airf-snapshot-task: ListOwnEvidenceKeys":
        "as the acquisition role's: only after a lost CompleteMultipartUpload response, which no test against moto loses",
    "4-member.yaml SnapshotReaderRole policy airf-snapshot-reader: ReadSnapshotKeysThroughEbs":
        "moto's EBS direct API (StartSnapshot) writes unencrypted snapshots only, so no recorded read decrypts",
    "4-member.yaml AcquisitionInstanceRole policy airf-acquisition: SsmAgentRunCommand":
        "the SSM Agent's own calls (registration, Run Command channels); moto plays no SSM Agent",
}


@dataclass
class Row:
    test: str
    seq: int
    principal: str
    call: str
    action: str
    resource: str
    implied_by: str
    decision: str = ""
    statements: list[str] = field(default_factory=list)
    problem: str = ""


def global_context(record: dict, resource_account: str) -> dict:
    p = record["principal"]
    ctx = {
        "aws:PrincipalArn": p["role_arn"],
        "aws:PrincipalAccount": p["account"],
        "aws:PrincipalOrgID": ORGANIZATION_ID,
        "aws:PrincipalType": "AssumedRole",
        "aws:SecureTransport": "true",
        "aws:RequestedRegion": record.get("region") or "us-east-1",
        "aws:ResourceAccount": resource_account,
        "aws:ResourceOrgID": ORGANIZATION_ID,
    }
    if p.get("issued"):
        ctx["aws:TokenIssueTime"] = p["issued"]
    # EC2 names an instance role's session after the instance.
    if re.fullmatch(r"i-[0-9a-f]{8,17}", p.get("session") or ""):
        ctx["ec2:SourceInstanceARN"] = f"arn:aws:ec2:{ctx['aws:RequestedRegion']}:{p['account']}:instance/{p['session']}"
    return ctx


def _statement(policy_names: dict[str, str], reason: dict) -> str:
    sid = reason.get("statementId") or f"statement #{reason.get('statementIndex')}"
    ptype = reason.get("policyType")
    if ptype == "resource":
        where = policy_names.get("resource", "resource policy")
    elif ptype == "pb":
        where = policy_names.get("boundary", "permissions boundary")
    else:
        where = reason.get("policyIdentifier") or ptype
    return f"{where}: {sid}"


def evaluate(logs: list[Path], node: str = "node") -> list[Row]:
    dep = deploy()
    roles = role_policies(dep)
    resources = resource_policies(dep)
    bucket_keys, topic_keys = encryption_keys(dep)
    knowledge = authz.Deployment(bucket_keys=bucket_keys, topic_keys=topic_keys)

    rows: list[Row] = []
    sims: list[tuple[Row, dict, dict]] = []
    for log in logs:
        test = log.stem
        for line in log.read_text().splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            principal = record["principal"]["role_arn"]
            call = f"{record['service']}:{record['operation']}"
            base = Row(test, record.get("seq", 0), principal.rsplit("/", 1)[1], call, "", "", "")
            if "recorder_error" in record:
                base.problem = f"the recorder could not read the call: {record['recorder_error']}"
                rows.append(base)
                continue
            if principal not in roles:
                base.problem = f"the caller {principal} is no role the templates deploy"
                rows.append(base)
                continue
            if roles[principal].missing:
                base.problem = "; ".join(roles[principal].missing)
                rows.append(base)
                continue
            try:
                checks = authz.checks_for(record, knowledge)
            except authz.MappingError as e:
                base.problem = str(e)
                rows.append(base)
                continue
            rp = roles[principal]
            for check in checks:
                row = Row(test, base.seq, base.principal, call, check.action, check.resource, check.implied_by)
                account = resources.resource_account(check.resource, record["account"])
                resource_policy = resources.for_check(check.action, check.resource)
                names = {}
                simulation = {
                    "request": {
                        "principal": record["principal"]["arn"],
                        "action": check.action,
                        "resource": {"resource": check.resource, "accountId": account},
                        "contextVariables": {**global_context(record, account), **check.context},
                    },
                    "identityPolicies": [{"name": p.name, "policy": p.document} for p in rp.identity],
                    "serviceControlPolicies": [],
                    "resourceControlPolicies": [],
                }
                if resource_policy is not None:
                    simulation["resourcePolicy"] = resource_policy.document
                    names["resource"] = resource_policy.name
                if rp.boundary is not None:
                    simulation["permissionBoundaryPolicies"] = [{"name": rp.boundary.name, "policy": rp.boundary.document}]
                    names["boundary"] = rp.boundary.name
                sims.append((row, {"simulation": simulation, "wildcard": check.resource == "*",
                                   "keys": sorted(check.context)}, names))
                rows.append(row)
    if sims:
        modules = os.environ.get("AIRF_NODE_MODULES", "/opt/airf-cache/node/node_modules")
        proc = subprocess.run(
            [node, str(HERE / "simulate.cjs")],
            input=json.dumps([s for _, s, _ in sims]),
            capture_output=True, text=True, env={**os.environ, "AIRF_NODE_MODULES": modules}, check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"tests/iam/simulate.cjs failed (tests/scripts/install-deps.sh installs "
                             f"@cloud-copilot/iam-simulate):\n{proc.stderr}")
        for (row, sim, names), result in zip(sims, json.loads(proc.stdout), strict=True):
            row.decision = result["overall"]
            if result["overall"] == "Error":
                row.problem = f"iam-simulate refused the request: {json.dumps(result.get('errors'))}"
            elif sim["wildcard"] and not result.get("wildcardOnly"):
                row.problem = (f"tests/iam/authz.py authorizes {row.action} on \"*\", but the action supports "
                               "resource-level permissions: map its resource")
            elif result["overall"] == "Allowed":
                row.statements = [_statement(names, g) for g in result.get("grants") or []]
            else:
                explicit = [d for d in result.get("denials") or [] if d.get("denialType") == "Explicit"]
                if explicit:
                    row.statements = [_statement(names, d) for d in explicit]
                    row.problem = "explicitly denied by " + "; ".join(row.statements)
                else:
                    kinds = sorted({d.get("policyType", "?") for d in result.get("denials") or []})
                    row.problem = f"no statement allows it (implicit deny in: {', '.join(kinds)})"
    return rows


def unused_statements(rows: list[Row]) -> list[str]:
    """Allow statements of CHECKED_ROLES that allow no recorded call (and are not UNEXERCISED),
    and UNEXERCISED entries that do allow one or name no statement."""
    dep = deploy()
    used = {st for r in rows if r.decision == "Allowed" for st in r.statements}
    declared = set()
    problems = []
    for template, logical in CHECKED_ROLES:
        role = dep.stacks[template].resources[logical]
        for pol in role.properties.get("Policies") or []:
            for i, st in enumerate(pol["PolicyDocument"].get("Statement") or [], 1):
                if st.get("Effect") != "Allow":
                    continue
                name = f"{template} {logical} policy {pol['PolicyName']}: {st.get('Sid') or f'statement #{i}'}"
                declared.add(name)
                if name in used and name in UNEXERCISED:
                    problems.append(f"{name} allows recorded calls: remove it from UNEXERCISED in tests/iam/evaluate.py")
                elif name not in used and name not in UNEXERCISED:
                    problems.append(f"{name} allows no call any end-to-end test makes: narrow or remove it "
                                    "(or list it in UNEXERCISED with the reason no test can make the call)")
    problems += [f"UNEXERCISED names {n}, which is no Allow statement of the templates" for n in UNEXERCISED
                 if n not in declared]
    return problems


def generalize(resource: str) -> str:
    resource = re.sub(r"\b(i|sg|vol|snap|eni|vpc|subnet)-[0-9a-f]{8,17}\b", r"\1-*", resource)
    resource = re.sub(r"(arn:aws:s3:::[^/]+/[^/]+/)\S+", r"\1*", resource)
    resource = re.sub(r"(assumed-role/[^/]+/)\S+", r"\1*", resource)
    return resource


def table(rows: list[Row]) -> str:
    merged: dict[tuple, set[str]] = {}
    for r in rows:
        key = (r.principal, r.call, r.action, generalize(r.resource), r.implied_by,
               r.problem or r.decision, "<br>".join(r.statements))
        merged.setdefault(key, set()).add(r.test)
    lines = [
        "# Every AWS call recorded in the end-to-end tests, with the statement that decides it",
        "",
        "Generated by tests/iam/evaluate.py from the recorded calls (tests/iam/record.py) and the",
        "policies of templates 1, 3 and 4 (tests/iam/deployment.py); evaluated by",
        "@cloud-copilot/iam-simulate. Resource ids are generalized; identical rows are merged.",
        "",
        "| Caller (role) | Call | IAM action | Resource | Decision | Statement | Tests |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in sorted(merged):
        principal, call, action, resource, implied, decision, statements = key
        action_text = f"{action} (implied: {implied})" if implied else action
        lines.append(f"| {principal} | {call} | {action_text} | `{resource}` | {decision} | {statements} | "
                     f"{len(merged[key])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("logs", nargs="+", type=Path)
    ap.add_argument("--table", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--unused", action="store_true", help="fail on Allow statements no recorded call needs")
    args = ap.parse_args(argv)
    missing = [str(p) for p in args.logs if not p.is_file()]
    if missing:
        print(f"iam: no call log {', '.join(missing)} (did the end-to-end tests run?)", file=sys.stderr)
        return 1
    rows = evaluate(args.logs)
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    problems = [r for r in rows if r.problem]
    for r in problems:
        print(f"iam: DENIED in {r.test} (call #{r.seq}): {r.principal} {r.call} -> {r.action} on {r.resource}: "
              f"{r.problem}", file=sys.stderr)
    calls = len({(r.test, r.seq) for r in rows})
    print(f"iam: {calls} call(s), {len(rows)} authorization(s), {len(problems)} denied or unplaceable")
    unused = unused_statements(rows) if args.unused else []
    for u in unused:
        print(f"iam: BROADER THAN NEEDED: {u}", file=sys.stderr)
    return 1 if problems or unused else 0


if __name__ == "__main__":
    sys.exit(main())
