"""Tests of packaging/cloudformation/ssm_documents.py: which lines of the one script each SSM
document gets, and which parameters it takes.

    python3 -m unittest discover -s tests/cloudformation -v
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "packaging" / "cloudformation"))

import ssm_documents  # noqa: E402
from ssm_documents import DocumentError, document, shell_lines  # noqa: E402

NAMES = {"memory", "disk", "all"}

SCRIPT = textwrap.dedent(
    """\
    set -u
    # @only memory all
    LIME='{{ LimeSha256 }}'
    # @only disk
    DEVICES='{{ Devices }}'
    # @end
    run
    # @only all
    both
    # @end
    exit
    """
)


def spec() -> dict:
    param = {"type": "String", "description": "d", "allowedPattern": "^x$"}
    return {
        "parameters": {
            "Devices": dict(param, default="all"),
            "LimeSha256": dict(param, default=""),
            "ExecutionTimeout": dict(param, default="21600"),
        },
        "downloads": {"DownloadAgent": {"sourceType": "S3", "sourceInfo": "{}", "destinationPath": "/dev/shm/a"}},
        "documents": {
            "memory": {
                "description": "m",
                "downloads": ["DownloadAgent"],
                "shell_step": "AcquireMemory",
                "defaults": {"ExecutionTimeout": "3600"},
            },
            "disk": {"description": "d", "downloads": [], "shell_step": "AcquireDisks"},
            "all": {"description": "a", "downloads": ["DownloadAgent"], "shell_step": "AcquireAll"},
        },
    }


class ShellLines(unittest.TestCase):
    def test_each_document_gets_the_shared_lines_and_its_blocks(self):
        self.assertEqual(shell_lines(SCRIPT, "memory", NAMES), ["set -u", "LIME='{{ LimeSha256 }}'", "run", "exit"])
        self.assertEqual(shell_lines(SCRIPT, "disk", NAMES), ["set -u", "DEVICES='{{ Devices }}'", "run", "exit"])
        self.assertEqual(
            shell_lines(SCRIPT, "all", NAMES), ["set -u", "LIME='{{ LimeSha256 }}'", "run", "both", "exit"]
        )

    def test_an_unknown_document_name_fails(self):
        with self.assertRaisesRegex(DocumentError, "no document named memroy"):
            shell_lines("# @only memroy\nx\n# @end\n", "memory", NAMES)

    def test_an_unclosed_block_fails(self):
        with self.assertRaisesRegex(DocumentError, "no @end"):
            shell_lines("# @only disk\nx\n", "memory", NAMES)

    def test_an_end_without_a_block_fails(self):
        with self.assertRaisesRegex(DocumentError, "@end without @only"):
            shell_lines("x\n# @end\n", "memory", NAMES)

    def test_a_malformed_marker_fails(self):
        with self.assertRaisesRegex(DocumentError, "malformed marker"):
            shell_lines("  # @only disk\nx\n# @end\n", "memory", NAMES)


class Document(unittest.TestCase):
    def test_parameters_are_those_referenced_in_definition_order_with_own_defaults(self):
        doc = document(spec(), SCRIPT, "memory")
        self.assertEqual(list(doc["parameters"]), ["LimeSha256", "ExecutionTimeout"])
        self.assertEqual(doc["parameters"]["ExecutionTimeout"]["default"], "3600")
        self.assertEqual(list(document(spec(), SCRIPT, "disk")["parameters"]), ["Devices", "ExecutionTimeout"])
        self.assertEqual(document(spec(), SCRIPT, "all")["parameters"]["ExecutionTimeout"]["default"], "21600")

    def test_steps_are_the_downloads_then_the_shell(self):
        steps = document(spec(), SCRIPT, "memory")["mainSteps"]
        self.assertEqual([s["name"] for s in steps], ["DownloadAgent", "AcquireMemory"])
        self.assertEqual(steps[-1]["inputs"]["runCommand"], shell_lines(SCRIPT, "memory", NAMES))
        self.assertEqual([s["name"] for s in document(spec(), SCRIPT, "disk")["mainSteps"]], ["AcquireDisks"])

    def test_an_undefined_reference_fails(self):
        with self.assertRaisesRegex(DocumentError, "CaseId referenced but not defined"):
            document(spec(), SCRIPT + "CASE='{{ CaseId }}'\n", "disk")

    def test_a_default_for_a_parameter_not_taken_fails(self):
        s = spec()
        s["documents"]["disk"]["defaults"] = {"LimeSha256": "x"}
        with self.assertRaisesRegex(DocumentError, "does not take: LimeSha256"):
            document(s, SCRIPT, "disk")

    def test_an_unknown_download_step_fails(self):
        s = spec()
        s["documents"]["disk"]["downloads"] = ["DownloadLime"]
        with self.assertRaisesRegex(DocumentError, "no download step named DownloadLime"):
            document(s, SCRIPT, "disk")


def generated() -> dict[str, dict]:
    """The documents as generate.py builds them, by file name."""
    return {path.name: json.loads(text) for path, text in ssm_documents.build(REPO).items()}


class ExecutionTimeout(unittest.TestCase):
    """SSM refuses a timeoutSeconds above 172800 (48 h); the parameter's pattern stops there."""

    def test_the_pattern_admits_100_to_172800_exactly(self):
        docs = generated()
        self.assertEqual(len(docs), 4)
        for name, doc in docs.items():
            param = doc["parameters"]["ExecutionTimeout"]
            pattern = param["allowedPattern"]
            with self.subTest(document=name):
                for value in ("100", "999", "3600", "21600", "99999", "100000", "169999", "170000", "171999", "172000", "172799", "172800", param["default"]):
                    self.assertRegex(value, pattern)
                for value in ("", "0", "99", "0100", "172801", "172810", "172900", "173000", "180000", "199999", "999999", "1000000", "-1", "1e5", "3600 "):
                    self.assertNotRegex(value, pattern)

    def test_every_value_up_to_the_maximum_and_none_above(self):
        import re

        pattern = re.compile(generated()["airf-acquire-disk.json"]["parameters"]["ExecutionTimeout"]["allowedPattern"])
        accepted = [v for v in range(0, 1_000_001) if pattern.search(str(v))]
        self.assertEqual((accepted[0], accepted[-1], len(accepted)), (100, 172800, 172800 - 100 + 1))


class Credentials(unittest.TestCase):
    """With Default Host Management the SSM Agent exports its own credentials file to the shell
    step (amazon-ssm-agent agent/plugins/runscript/runscript.go, setShareCredsEnvironment);
    airf-agent must not pick it up before the instance profile (IMDS)."""

    def prologue_env(self, doc: dict) -> dict[str, str]:
        lines = doc["mainSteps"][-1]["inputs"]["runCommand"]
        # everything before the first line that touches the machine (DL=..., then traps and
        # mounts): the variables every later line, the agent included, inherits
        end = next(i for i, line in enumerate(lines) if line.startswith("DL="))
        script = "\n".join(lines[:end] + ["env"]) + "\n"
        env = {
            "PATH": "/usr/bin:/bin",
            "AWS_SHARED_CREDENTIALS_FILE": "/var/lib/amazon/ssm/credentials",
            "AWS_PROFILE": "default",
            "AWS_ACCESS_KEY_ID": "from-the-environment",
        }
        out = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, check=True).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def test_the_agents_credentials_file_is_hidden_before_anything_runs(self):
        for name, doc in generated().items():
            with self.subTest(document=name):
                env = self.prologue_env(doc)
                self.assertEqual(env.get("AWS_SHARED_CREDENTIALS_FILE"), "/dev/null")
                self.assertEqual(env.get("AWS_CONFIG_FILE"), "/dev/null")
                self.assertNotIn("AWS_PROFILE", env)
                # explicit environment credentials (the tests' S3 server) still count
                self.assertEqual(env.get("AWS_ACCESS_KEY_ID"), "from-the-environment")
                later = doc["mainSteps"][-1]["inputs"]["runCommand"]
                self.assertFalse([line for line in later if "AWS_SHARED_CREDENTIALS_FILE=" in line and "/dev/null" not in line])


class Committed(unittest.TestCase):
    def test_the_committed_documents_are_what_the_sources_make(self):
        for path, text in ssm_documents.build(REPO).items():
            with self.subTest(path=path.name):
                self.assertEqual(path.read_text(), text)


if __name__ == "__main__":
    unittest.main()
