"""AWS's own refusals, which moto does not make, for moto_aws.py (imported there).

Each is modelled on what the real service answers, so the controller's error handling is tested
against the real shape (code, HTTP status, message):

- Spot instances: EC2 refuses termination and stop protection with `UnsupportedOperation`
  ("Modifying 'disableApiTermination' is not supported for spot instances."). moto runs Spot
  instances (RunInstances with InstanceMarketOptions) and then lets both through.
- Injected faults: $AIRF_SSM_OUTPUT_DIR/faults.json, {"<service>:<Action>": [CODE, TIMES]},
  makes the next TIMES calls of that action fail with CODE, shaped as the service does:
  EC2 RequestLimitExceeded (HTTP 503, query-protocol XML), IAM LimitExceeded (HTTP 409, IAM's
  ErrorResponse XML), SSM ThrottlingException (HTTP 400, JSON 1.1), or AccessDenied /
  AccessDeniedException.
- GetCommandInvocation as SSM answers it: StandardOutputContent is the first 24,000 characters
  of the step's stdout, StandardErrorContent the first 8,000 of its stderr, each cut with the SSM
  Agent's "--output truncated--" suffix (amazon-ssm-agent runpluginutil.go, StringPrefix). The
  answer for one step (plugin) comes from $AIRF_SSM_OUTPUT_DIR/<command-id>.<plugin>.json when
  the test wrote one (a download step that failed), else from <command-id>.json as before; a
  download step (Download*) is Success once the shell step has an answer, since it ran.
"""
import json
import os
import threading
import uuid

from moto.core.responses import ActionResult, BaseResponse
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import ec2_backends
from moto.ec2.responses.instances import InstanceResponse
from moto.ssm.responses import SimpleSystemManagerResponse

OUTPUT_DIR = os.environ.get("AIRF_SSM_OUTPUT_DIR", "")
FAULTS = os.path.join(OUTPUT_DIR, "faults.json") if OUTPUT_DIR else ""
MAX_STDOUT = 24000
MAX_STDERR = 8000
TRUNCATED = "--output truncated--"
_lock = threading.Lock()

# (HTTP status, message) of each fault code, as the services send them.
EC2_FAULTS = {
    "RequestLimitExceeded": (503, "Request limit exceeded."),
    "UnauthorizedOperation": (403, "You are not authorized to perform this operation."),
}
# IAM (query protocol): LimitExceeded is HTTP 409 with IAM's own ErrorResponse body; the message
# is the one IAM gives a managed policy document over its quota.
IAM_FAULTS = {
    "LimitExceeded": (409, "Cannot exceed quota for PolicySize: 6144"),
}
JSON_FAULTS = {
    "ThrottlingException": (400, "Rate exceeded"),
    "AccessDeniedException": (400, "User is not authorized to perform this action"),
}


def _take_fault(key):
    """The fault code for this call, consuming one of its TIMES; None: no fault."""
    if not FAULTS:
        return None
    with _lock:
        try:
            with open(FAULTS, encoding="utf-8") as f:
                faults = json.load(f)
        except FileNotFoundError:
            return None
        entry = faults.get(key)
        if not entry or entry[1] <= 0:
            return None
        entry[1] -= 1
        with open(FAULTS, "w", encoding="utf-8") as f:
            json.dump(faults, f)
        return entry[0]


def _ec2_error(code):
    status, message = EC2_FAULTS.get(code, (400, code))
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    )
    return status, {"status": status, "Content-Type": "text/xml"}, body


def _iam_error(code):
    status, message = IAM_FAULTS.get(code, (400, code))
    body = (
        '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
        f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return status, {"status": status, "Content-Type": "text/xml"}, body


def _json_error(code):
    status, message = JSON_FAULTS.get(code, (400, code))
    body = json.dumps({"__type": code, "message": message})
    return status, {"status": status, "Content-Type": "application/x-amz-json-1.1"}, body


_call_action = BaseResponse.call_action


def call_action(self):
    # EBS (restJson, with a Reason) shapes its own faults: moto_ebs.py.
    if self.service_name == "ebs":
        return _call_action(self)
    key = f"{self.service_name}:{self._get_action()}"
    code = _take_fault(key)
    if code is not None:
        if self.service_name == "ec2":
            return _ec2_error(code)
        if self.service_name == "iam":
            return _iam_error(code)
        return _json_error(code)
    return _call_action(self)


_modify_instance_attribute = InstanceResponse.modify_instance_attribute


def modify_instance_attribute(self):
    instance_id = self._get_param("InstanceId")
    backend = ec2_backends[self.current_account][self.region]
    instance = backend.get_instance(instance_id)
    if instance.lifecycle == "spot":
        for attribute in ("DisableApiTermination", "DisableApiStop"):
            if self._get_param(f"{attribute}.Value") is not None:
                name = attribute[0].lower() + attribute[1:]
                raise EC2ClientError(
                    "UnsupportedOperation",
                    f"Modifying '{name}' is not supported for spot instances.",
                )
    return _modify_instance_attribute(self)


def _prefix(text, limit):
    if len(text) < limit:
        return text
    return text[: limit - len(TRUNCATED)] + TRUNCATED


def get_command_invocation(self):
    command_id = self._get_param("CommandId")
    instance_id = self._get_param("InstanceId")
    plugin = self._get_param("PluginName")
    # Unknown command ids fail as in moto (and AWS).
    self.ssm_backend.get_command_by_id(command_id)
    answer = {"status": "InProgress", "stdout": "", "stderr": ""}
    step = os.path.join(OUTPUT_DIR, f"{command_id}.{plugin}.json")
    whole = os.path.join(OUTPUT_DIR, f"{command_id}.json")
    if OUTPUT_DIR and os.path.exists(step):
        with open(step, encoding="utf-8") as f:
            answer.update(json.load(f))
    elif OUTPUT_DIR and os.path.exists(whole):
        if plugin.startswith("Download"):
            # The shell step ran, so the download steps before it succeeded.
            answer = {"status": "Success", "stdout": "Content downloaded to /dev/shm/airf-dl/", "stderr": ""}
        else:
            with open(whole, encoding="utf-8") as f:
                answer.update(json.load(f))
    return ActionResult({
        "CommandId": command_id,
        "InstanceId": instance_id,
        "PluginName": plugin,
        "Status": answer["status"],
        "StatusDetails": answer["status"],
        "StandardOutputContent": _prefix(answer["stdout"], MAX_STDOUT),
        "StandardErrorContent": _prefix(answer["stderr"], MAX_STDERR),
    })


BaseResponse.call_action = call_action
InstanceResponse.modify_instance_attribute = modify_instance_attribute
SimpleSystemManagerResponse.get_command_invocation = get_command_invocation
