#!/usr/bin/env python3
"""moto_server, plus the two SSM calls the controller needs that moto lacks.

moto does not implement DescribeInstanceInformation, and its GetCommandInvocation always answers
Success with empty output. Here:
- DescribeInstanceInformation lists moto's EC2 instances that have an instance profile
  associated (the SSM Agent needs a role), Online while running.
- GetCommandInvocation answers from $AIRF_SSM_OUTPUT_DIR/<command-id>.json
  ({"status": "Success", "stdout": "...", "stderr": "..."}), written by the test that plays the
  instance's side; InProgress until that file exists.

usage: moto_aws.py PORT
"""
import json
import os
import signal
import sys
import threading

from moto.core.responses import ActionResult
from moto.ec2.models import ec2_backends
from moto.server import ThreadedMotoServer
from moto.ssm.responses import SimpleSystemManagerResponse

OUTPUT_DIR = os.environ.get("AIRF_SSM_OUTPUT_DIR", "")


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
        found.append({
            "InstanceId": inst.id,
            "PingStatus": "Online" if inst.state == "running" else "ConnectionLost",
            "PlatformType": "Linux",
            "ResourceType": "EC2Instance",
        })
    return ActionResult({"InstanceInformationList": found})


def get_command_invocation(self):
    command_id = self._get_param("CommandId")
    instance_id = self._get_param("InstanceId")
    plugin = self._get_param("PluginName")
    # Unknown command ids fail as in moto (and AWS).
    self.ssm_backend.get_command_by_id(command_id)
    answer = {"status": "InProgress", "stdout": "", "stderr": ""}
    path = os.path.join(OUTPUT_DIR, f"{command_id}.json")
    if OUTPUT_DIR and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            answer.update(json.load(f))
    return ActionResult({
        "CommandId": command_id,
        "InstanceId": instance_id,
        "PluginName": plugin,
        "Status": answer["status"],
        "StatusDetails": answer["status"],
        "StandardOutputContent": answer["stdout"],
        "StandardErrorContent": answer["stderr"],
    })


SimpleSystemManagerResponse.describe_instance_information = describe_instance_information
SimpleSystemManagerResponse.get_command_invocation = get_command_invocation

if __name__ == "__main__":
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
    server.start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()
