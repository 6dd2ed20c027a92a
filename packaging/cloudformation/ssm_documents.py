"""Builds the SSM documents ssm-documents/airf-acquire-<name>.json from ssm-documents/src/.

    documents.yaml   the parameters (each defined once), the download steps, and per document
                     its description, download steps, shell step name and own defaults
    airf-run.sh      the one shell script of every document's shell step

Lines of airf-run.sh between "# @only NAME..." and the next "# @only" or "# @end" (each alone
on its line) go only into the named documents; the marker lines themselves go nowhere. All
other lines go into every document. A document takes exactly the parameters its steps reference
as {{ Name }}, so none is unused and none is missing.

Used by generate.py, which writes the documents and embeds them into 4-member.yaml.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

SOURCE_DIR = "ssm-documents/src"
SPEC = f"{SOURCE_DIR}/documents.yaml"
SCRIPT = f"{SOURCE_DIR}/airf-run.sh"
OUTPUT = "ssm-documents/airf-acquire-{name}.json"

ONLY = re.compile(r"^# @only(?P<names>( [a-z0-9-]+)+)\s*$")
END = re.compile(r"^# @end\s*$")
PARAM_REF = re.compile(r"\{\{\s*([A-Za-z0-9_.:-]+)\s*\}\}")
LINUX_ONLY = {"StringEquals": ["platformType", "Linux"]}


class DocumentError(Exception):
    pass


def shell_lines(script: str, name: str, known: set[str]) -> list[str]:
    """The lines of `script` that document `name` runs."""
    out: list[str] = []
    only: set[str] | None = None
    for lineno, line in enumerate(script.splitlines(), 1):
        if m := ONLY.match(line):
            only = set(m["names"].split())
            if unknown := only - known:
                raise DocumentError(f"{SCRIPT}:{lineno}: no document named {', '.join(sorted(unknown))}")
        elif END.match(line):
            if only is None:
                raise DocumentError(f"{SCRIPT}:{lineno}: @end without @only")
            only = None
        elif "# @only" in line or "# @end" in line:
            raise DocumentError(f"{SCRIPT}:{lineno}: malformed marker: {line.strip()}")
        elif only is None or name in only:
            out.append(line)
    if only is not None:
        raise DocumentError(f"{SCRIPT}: the last @only block has no @end")
    return out


def _references(node: object) -> set[str]:
    if isinstance(node, str):
        return set(PARAM_REF.findall(node))
    if isinstance(node, list):
        return set().union(*map(_references, node)) if node else set()
    if isinstance(node, dict):
        return _references(list(node.values()))
    return set()


def document(spec: dict, script: str, name: str) -> dict:
    """The SSM document `name` as a JSON-ready dict."""
    doc_spec = spec["documents"][name]
    steps = []
    for step in doc_spec["downloads"]:
        inputs = spec["downloads"].get(step)
        if inputs is None:
            raise DocumentError(f"{SPEC}: {name}: no download step named {step}")
        steps.append({"action": "aws:downloadContent", "name": step, "precondition": LINUX_ONLY, "inputs": inputs})
    steps.append(
        {
            "action": "aws:runShellScript",
            "name": doc_spec["shell_step"],
            "precondition": LINUX_ONLY,
            "inputs": {
                "timeoutSeconds": "{{ ExecutionTimeout }}",
                "runCommand": shell_lines(script, name, set(spec["documents"])),
            },
        }
    )
    used = _references(steps)
    if missing := used - set(spec["parameters"]):
        raise DocumentError(f"{name}: {', '.join(sorted(missing))} referenced but not defined in {SPEC}")
    defaults = doc_spec.get("defaults", {})
    if unknown := set(defaults) - used:
        raise DocumentError(f"{SPEC}: {name}: defaults for parameters it does not take: {', '.join(sorted(unknown))}")
    parameters = {}
    for pname, param in spec["parameters"].items():
        if pname not in used:
            continue
        param = dict(param)
        if pname in defaults:
            param["default"] = defaults[pname]
        parameters[pname] = param
    return {
        "schemaVersion": "2.2",
        "description": doc_spec["description"],
        "parameters": parameters,
        "mainSteps": steps,
    }


def build(repo: Path) -> dict[Path, str]:
    """The generated documents' text by output path."""
    spec = yaml.safe_load((repo / SPEC).read_text())
    script = (repo / SCRIPT).read_text()
    return {
        repo / OUTPUT.format(name=name): json.dumps(document(spec, script, name), indent=2, ensure_ascii=False) + "\n"
        for name in spec["documents"]
    }
