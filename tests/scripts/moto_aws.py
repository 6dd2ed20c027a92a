#!/usr/bin/env python3
"""moto_server, plus the calls the controller needs that moto lacks.

moto does not implement DescribeInstanceInformation, and its GetCommandInvocation always answers
Success with empty output. Here:
- DescribeInstanceInformation lists moto's EC2 instances that have an instance profile
  associated (the SSM Agent needs a role), Online while running; an instance whose
  $AIRF_SSM_OUTPUT_DIR/unregistered/<instance-id> exists is left out, as AWS leaves out an
  instance whose agent has not registered (the test's simulated clock writes and removes it).
- GetCommandInvocation answers from $AIRF_SSM_OUTPUT_DIR/<command-id>.json
  ({"status": "Success", "stdout": "...", "stderr": "..."}), written by the test that plays the
  instance's side; InProgress until that file exists (moto_faults.py, which also answers single
  steps and cuts the output as SSM does).
- CreateKey with the tag airf:emulator-key-id=<id> makes the key with that id (moto draws a
  random one), so a key the emulator creates from a template has the ARN tests/iam/cfn.py
  renders for it, and the calls that name it are evaluated against the policies that do.
moto_control_plane.py adds GetConsoleScreenshot and CloudTrail's LookupEvents (the control-plane
evidence), moto_ebs.py the EBS direct APIs, moto_faults.py AWS's refusals and limits.
With $AIRF_IAM_CALL_LOG set, every call made with an assumed role's credentials is appended to
that file (tests/iam/record.py), for tests/iam/evaluate.py to evaluate against the templates.

usage: moto_aws.py PORT
"""
import os
import signal
import sys
import threading

from moto.core.responses import ActionResult
from moto.ec2.models import ec2_backends
from moto.kms.models import KmsBackend
from moto.server import DomainDispatcherApplication, ThreadedMotoServer, create_backend_app
from moto.ssm.responses import SimpleSystemManagerResponse

OUTPUT_DIR = os.environ.get("AIRF_SSM_OUTPUT_DIR", "")
CALL_LOG = os.environ.get("AIRF_IAM_CALL_LOG", "")


def describe_instance_information(self):
    filters = self._get_param("Filters") or []
    wanted = {v for f in filters if f.get("Key") == "InstanceIds" for v in f.get("Values", [])}
    backend = ec2_backends[self.current_account][self.region]
    found = []
    for inst in backend.all_instances():
        if wanted and inst.id not in wanted:
            continue
        if inst.id not in backend.iam_instance_profile_associations:
            continue
        if OUTPUT_DIR and os.path.exists(os.path.join(OUTPUT_DIR, "unregistered", inst.id)):
            continue
        found.append({
            "InstanceId": inst.id,
            "PingStatus": "Online" if inst.state == "running" else "ConnectionLost",
            "PlatformType": "Linux",
            "ResourceType": "EC2Instance",
        })
    return ActionResult({"InstanceInformationList": found})


SimpleSystemManagerResponse.describe_instance_information = describe_instance_information

KEY_ID_TAG = "airf:emulator-key-id"
_create_key = KmsBackend.create_key


def create_key(self, policy, key_usage, key_spec, description, tags, multi_region=False, origin="AWS_KMS"):
    wanted = next((t.get("TagValue") for t in tags or [] if t.get("TagKey") == KEY_ID_TAG), None)
    rest = [t for t in tags or [] if t.get("TagKey") != KEY_ID_TAG]
    key = _create_key(self, policy, key_usage, key_spec, description, rest, multi_region, origin)
    if wanted and wanted != key.id:
        if wanted in self.keys:
            raise ValueError(f"a key {wanted} exists already")
        self.keys[wanted] = self.keys.pop(key.id)
        key.id = wanted
        key.arn = key.arn.rsplit("/", 1)[0] + "/" + wanted
        if rest:
            self.tag_resource(wanted, rest)
    return key


KmsBackend.create_key = create_key
import moto_faults  # noqa: E402,F401  AWS's refusals and limits that moto lacks (after the above: it wraps them)
import moto_ebs  # noqa: E402,F401  the EBS direct APIs with AWS's block size, checksums, paging and states
import moto_control_plane  # noqa: E402,F401  GetConsoleScreenshot and CloudTrail LookupEvents


class RecordingMotoServer(ThreadedMotoServer):
    """moto's threaded server with tests/iam/record.py around its application."""

    def _server_entry(self) -> None:
        from werkzeug.serving import make_server  # noqa: PLC0415 - moto's own server library

        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "iam"))
        from record import Recorder  # noqa: PLC0415

        app = Recorder(DomainDispatcherApplication(create_backend_app), CALL_LOG)
        self._server = make_server(self._ip_address, self._port, app, True)
        self._server_ready_event.set()
        self._server.serve_forever()


if __name__ == "__main__":
    server_class = RecordingMotoServer if CALL_LOG else ThreadedMotoServer
    server = server_class(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
    server.start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()
