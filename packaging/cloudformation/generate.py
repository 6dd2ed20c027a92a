#!/usr/bin/env python3
"""Builds the committed CloudFormation templates and SSM documents from their sources, so they
never drift.

    packaging/cloudformation/generate.py           # write the generated templates and documents
    packaging/cloudformation/generate.py --check   # exit 1 (with a diff) if a committed one differs

The SSM documents ssm-documents/airf-acquire-*.json are built first, from ssm-documents/src/
(ssm_documents.py says how), so the templates embed what is generated, not what is committed.

Every template's source lives in src/. A source without a directive is copied as is (behind
the GENERATED header). Two directives, each alone on its line:

    <indent>Key: "@include-json <path from the repository root>"
        The JSON file, loaded and written as YAML under Key (the Step Functions definition in
        3-security.yaml). The result is read back and must equal the file.
    <indent>Key: "@include-json-text <path from the repository root>"
        The JSON file on one line, as the text of Key, for a property that takes JSON as an
        object or a string (the SSM documents in 4-member.yaml: as YAML they would take a quarter
        more bytes, and the template would not fit the 51,200 bytes of an inline template body).
        The text is read back and must parse to the file's JSON.
    <indent>Key: "@include-json-pinned <path from the repository root>"
        As -text, for an SSM document deployed to member accounts: its ArtifactBucket and
        EndpointUrl parameters allow only the template's ArtifactBucket and "" (PINNED_PARAMETERS),
        given as !Sub text.
    <indent># @generate <name>
        The YAML that the function GENERATORS[name] returns, at that indent (the analysis
        subnets of 2-analysis.yaml).

Only the standard library and PyYAML (a dependency of cfn-lint) are used.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path

import yaml

import ssm_documents

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SRC = HERE / "src"

INCLUDE = re.compile(
    r'^(?P<indent> *)(?P<key>[A-Za-z0-9]+): "@include-json(?P<text>-text|-pinned)? (?P<path>[^"]+)"\s*$'
)

# The SSM document parameters that a member account's documents pin (-pinned): whoever may run
# the documents (the controller) must not be able to point them at another artifact bucket (its
# own binary, with its own hash) or another S3 endpoint (the evidence sent to its own server).
# IAM cannot stop either: the download and the upload's destination are the document's.
PINNED_PARAMETERS = {
    "ArtifactBucket": ["${ArtifactBucket}"],
    "EndpointUrl": [""],
}


def pinned(rel: str, document: dict) -> dict:
    """`document` with PINNED_PARAMETERS as allowedValues (CloudFormation fills in the
    ${ArtifactBucket} of the template's parameter)."""
    out = json.loads(json.dumps(document))
    if "${" in json.dumps(document):
        raise GenerateError(f"{rel}: contains '${{', which !Sub would read as a reference")
    for name, values in PINNED_PARAMETERS.items():
        spec = (out.get("parameters") or {}).get(name)
        if spec is None:
            raise GenerateError(f"{rel}: no parameter {name} to pin")
        spec.pop("allowedPattern", None)
        spec["allowedValues"] = values
    return out
GENERATE = re.compile(r"^(?P<indent> *)# @generate (?P<name>[a-z0-9-]+)\s*$")

# ------------------------------------------------------------------ analysis subnets
# The Analysis VPC is a /16 cut into /20 subnets: it holds 16 of them, the most SubnetCount
# may ask for. Subnet n (1-based) goes to Availability Zone (n-1) mod AzCount, and the
# interface endpoints use the first subnet of each zone (they accept one subnet per zone).
MAX_SUBNETS = 16
AZ_COUNTS = (2, 3, 4)


def _subnet_conditions() -> list[str]:
    out = []
    for n in range(MAX_SUBNETS, 1, -1):
        if n == MAX_SUBNETS:
            out.append(f'HasSubnet{n}: !Equals [!Ref SubnetCount, "{n}"]')
        else:
            out.append(f'HasSubnet{n}: !Or [!Equals [!Ref SubnetCount, "{n}"], !Condition HasSubnet{n + 1}]')
    for n in AZ_COUNTS[1:]:
        values = ", ".join(f'!Equals [!Ref AzCount, "{c}"]' for c in AZ_COUNTS if c >= n)
        if values.count("!Equals") == 1:
            out.append(f"AzCountAtLeast{n}: {values}")
        else:
            out.append(f"AzCountAtLeast{n}: !Or [{values}]")
    for n in range(2, max(AZ_COUNTS) + 1):
        if n <= min(AZ_COUNTS):
            continue
        out.append(f"EndpointInSubnet{n}: !And [!Condition HasSubnet{n}, !Condition AzCountAtLeast{n}]")
    return out


def _subnet_mapping() -> list[str]:
    out = ["AzIndex:"]
    for c in AZ_COUNTS:
        out.append(f'  "{c}":')
        for n in range(1, MAX_SUBNETS + 1):
            out.append(f"    Subnet{n}: {(n - 1) % c}")
    return out


def _subnet_resources() -> list[str]:
    out = []
    for n in range(1, MAX_SUBNETS + 1):
        cond = [] if n == 1 else [f"  Condition: HasSubnet{n}"]
        out += [
            f"AnalysisSubnet{n}:",
            "  Type: AWS::EC2::Subnet",
            *cond,
            "  Properties:",
            "    VpcId: !Ref AnalysisVpc",
            f"    CidrBlock: !Select [{n - 1}, !Cidr [!GetAtt AnalysisVpc.CidrBlock, {MAX_SUBNETS}, 12]]",
            "    AvailabilityZone: !Select",
            f"      - !FindInMap [AzIndex, !Ref AzCount, Subnet{n}]",
            '      - !GetAZs ""',
            "    MapPublicIpOnLaunch: false",
            "    Tags:",
            "      - Key: Name",
            f"        Value: airf-analysis-{n}",
            f"AnalysisSubnet{n}Routes:",
            "  Type: AWS::EC2::SubnetRouteTableAssociation",
            *cond,
            "  Properties:",
            f"    SubnetId: !Ref AnalysisSubnet{n}",
            "    RouteTableId: !Ref AnalysisRouteTable",
        ]
    return out


def _endpoint_subnets() -> list[str]:
    out = ["- !Ref AnalysisSubnet1"]
    for n in range(2, max(AZ_COUNTS) + 1):
        cond = f"HasSubnet{n}" if n <= min(AZ_COUNTS) else f"EndpointInSubnet{n}"
        out.append(f"- !If [{cond}, !Ref AnalysisSubnet{n}, !Ref AWS::NoValue]")
    return out


def _all_subnets() -> list[str]:
    out = ["- !Ref AnalysisSubnet1"]
    for n in range(2, MAX_SUBNETS + 1):
        out.append(f"- !If [HasSubnet{n}, !Ref AnalysisSubnet{n}, !Ref AWS::NoValue]")
    return out


GENERATORS = {
    "analysis-subnet-conditions": _subnet_conditions,
    "analysis-subnet-mapping": _subnet_mapping,
    "analysis-subnets": _subnet_resources,
    "analysis-endpoint-subnets": _endpoint_subnets,
    "analysis-all-subnets": _all_subnets,
}

# ------------------------------------------------------------------ the build


class GenerateError(Exception):
    pass


def _header(src: Path, included: list[str]) -> list[str]:
    lines = [
        f"# GENERATED by packaging/cloudformation/generate.py from {src.relative_to(REPO)}"
        + (" and " + ", ".join(included) if included else "")
        + ".",
        "# Do not edit: edit the sources, then run packaging/cloudformation/generate.py.",
    ]
    return lines


def _load_include(rel: str, generated: dict[str, str]) -> object:
    """The JSON file `rel`: as this run generates it, else as it is on disk."""
    if rel in generated:
        return json.loads(generated[rel])
    path = REPO / rel
    if not path.is_file():
        raise GenerateError(
            f"{rel} does not exist (it is embedded into a template); create it, or wait for it "
            "to be committed, then run generate.py again"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise GenerateError(f"{rel}: not valid JSON: {e}") from e


def render(src: Path, generated: dict[str, str]) -> tuple[str, dict[str, object]]:
    """Returns the generated text and the included documents by path; `generated` holds the
    files this run builds before the templates, by path from the repository root."""
    out: list[str] = []
    included: dict[str, object] = {}
    for lineno, line in enumerate(src.read_text().splitlines(), 1):
        if m := INCLUDE.match(line):
            indent, key, rel = m["indent"], m["key"], m["path"]
            data = _load_include(rel, generated)
            if m["text"] == "-pinned":
                data = pinned(rel, data)
            included[rel] = data
            if m["text"]:
                # A literal block: JSON needs no YAML escaping there.
                tag = " !Sub" if m["text"] == "-pinned" else ""
                out.append(f"{indent}{key}:{tag} |-")
                out.append(f"{indent}  {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}")
            else:
                body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100, allow_unicode=True)
                out.append(f"{indent}{key}:")
                out += [f"{indent}  {b}" if b else "" for b in body.splitlines()]
        elif m := GENERATE.match(line):
            fn = GENERATORS.get(m["name"])
            if fn is None:
                raise GenerateError(f"{src.name}:{lineno}: no generator named {m['name']!r}")
            out += [f"{m['indent']}{g}" for g in fn()]
        elif "@include-json" in line or "@generate" in line:
            raise GenerateError(f"{src.name}:{lineno}: malformed directive: {line.strip()}")
        else:
            out.append(line)
    text = "\n".join(_header(src, sorted(included)) + out) + "\n"
    return text, included


def _verify_roundtrip(name: str, text: str, included: dict[str, object]) -> None:
    """The embedded documents, read back the way CloudFormation tools read YAML, equal the files."""
    from cfnlint.decode import cfn_yaml  # cfn-lint's YAML reader (knows !Ref, !Sub...)

    template = cfn_yaml.loads(text)
    for rel, data in included.items():
        if not _contains(template, json.loads(json.dumps(data))):
            raise GenerateError(f"{name}: {rel} does not read back identically from the generated YAML")


def _contains(node: object, wanted: object) -> bool:
    if _plain(node) == wanted:
        return True
    if isinstance(node, str) and node.startswith("{"):
        try:
            return json.loads(node) == wanted
        except json.JSONDecodeError:
            return False
    if isinstance(node, dict):
        return any(_contains(v, wanted) for v in node.values())
    if isinstance(node, list):
        return any(_contains(v, wanted) for v in node)
    return False


def _plain(node: object) -> object:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


def build() -> dict[Path, str]:
    try:
        outputs = ssm_documents.build(REPO)
    except ssm_documents.DocumentError as e:
        raise GenerateError(str(e)) from e
    generated = {path.relative_to(REPO).as_posix(): text for path, text in outputs.items()}
    for src in sorted(SRC.glob("*.yaml")):
        text, included = render(src, generated)
        _verify_roundtrip(src.name, text, included)
        outputs[HERE / src.name] = text
    return outputs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed templates; write nothing")
    args = ap.parse_args()
    try:
        outputs = build()
    except GenerateError as e:
        print(f"generate.py: error: {e}", file=sys.stderr)
        return 1
    drift = False
    for stray in sorted(set(HERE.glob("[0-9]-*.yaml")) - set(outputs)):
        print(f"generate.py: error: {stray.relative_to(REPO)} has no source in {SRC.relative_to(REPO)}/", file=sys.stderr)
        drift = True
    for path, text in outputs.items():
        rel = path.relative_to(REPO)
        old = path.read_text() if path.exists() else ""
        if old == text:
            continue
        if args.check:
            drift = True
            sys.stdout.writelines(
                difflib.unified_diff(old.splitlines(True), text.splitlines(True), f"{rel} (committed)", f"{rel} (generated)")
            )
        else:
            path.write_text(text)
            print(f"wrote {rel}")
    if drift:
        print(
            "generate.py: the committed files differ from their sources; run packaging/cloudformation/generate.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
