"""The control-plane calls moto lacks, with AWS's response and error shapes.

- ec2 GetConsoleScreenshot (Amazon EC2 API Reference, "GetConsoleScreenshot"): `imageData`, the
  base64 of a PNG, and `instanceId`. The PNG is $AIRF_SSM_OUTPUT_DIR/screenshots/<instance-id>.png
  when a test put one there, else a small grey picture made here. An instance moto does not hold
  is InvalidInstanceID.NotFound (moto's own lookup raises it, as for GetConsoleOutput).
- cloudtrail LookupEvents (AWS CloudTrail API Reference, "LookupEvents"): the events of
  $AIRF_SSM_OUTPUT_DIR/cloudtrail-events.json (a JSON list of events shaped as LookupEvents
  returns them, EventTime in Unix seconds; the test plays CloudTrail), newest first, filtered by
  the one lookup attribute and the time range, in pages of MaxResults with a NextToken. AWS's
  refusals: more than one attribute or an unknown key (InvalidLookupAttributesException),
  MaxResults outside 1-50 (InvalidMaxResultsException), a start after the end
  (InvalidTimeRangeException), a NextToken this server did not issue for the same request
  (InvalidNextTokenException).
"""
import base64
import json
import os
import struct
import zlib

from moto.cloudtrail.responses import CloudTrailResponse
from moto.core.exceptions import JsonRESTError
from moto.core.responses import ActionResult
from moto.ec2.responses.general import General

OUTPUT_DIR = os.environ.get("AIRF_SSM_OUTPUT_DIR", "")

# LookupAttributeKey's values (API Reference, "LookupAttribute"), and the event field each reads.
ATTRIBUTES = {
    "EventId": "EventId",
    "EventName": "EventName",
    "ReadOnly": "ReadOnly",
    "Username": "Username",
    "ResourceType": None,
    "ResourceName": None,
    "EventSource": "EventSource",
    "AccessKeyId": "AccessKeyId",
}


def grey_png(width: int = 8, height: int = 8) -> bytes:
    """A valid PNG: signature, IHDR (8-bit greyscale), one IDAT, IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))  # filter 0, mid-grey
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def get_console_screenshot(self) -> ActionResult:
    instance_id = self._get_param("InstanceId")
    instance = self.ec2_backend.get_instance(instance_id)  # InvalidInstanceID.NotFound
    planted = os.path.join(OUTPUT_DIR, "screenshots", f"{instance.id}.png") if OUTPUT_DIR else ""
    if planted and os.path.exists(planted):
        with open(planted, "rb") as f:
            png = f.read()
    else:
        png = grey_png()
    return ActionResult({"ImageData": base64.b64encode(png).decode(), "InstanceId": instance.id})


General.get_console_screenshot = get_console_screenshot


class CloudTrailError(JsonRESTError):
    code = 400

    def __init__(self, error_type: str, message: str):
        super().__init__(error_type, message)


def _events() -> list:
    path = os.path.join(OUTPUT_DIR, "cloudtrail-events.json") if OUTPUT_DIR else ""
    if not path or not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f)


def _matches(event: dict, key: str, value: str) -> bool:
    if key == "ResourceName":
        return any(r.get("ResourceName") == value for r in event.get("Resources", []))
    if key == "ResourceType":
        return any(r.get("ResourceType") == value for r in event.get("Resources", []))
    return event.get(ATTRIBUTES[key]) == value


def _time(value, default: float) -> float:
    """A timestamp as the SDKs send it in JSON (Unix seconds), or ISO 8601 from other clients."""
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    from datetime import datetime  # noqa: PLC0415
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def lookup_events(self) -> str:
    attributes = self._get_param("LookupAttributes") or []
    if len(attributes) > 1:
        raise CloudTrailError("InvalidLookupAttributesException", "You cannot specify more than one lookup attribute.")
    key = value = None
    if attributes:
        key, value = attributes[0].get("AttributeKey"), attributes[0].get("AttributeValue")
        if key not in ATTRIBUTES or not value:
            raise CloudTrailError("InvalidLookupAttributesException", f"Invalid lookup attribute {key!r}.")
    max_results = self._get_param("MaxResults")
    if max_results is None:
        max_results = 50
    if not 1 <= int(max_results) <= 50:
        raise CloudTrailError("InvalidMaxResultsException", "MaxResults must be between 1 and 50.")
    start = _time(self._get_param("StartTime"), 0.0)
    end = _time(self._get_param("EndTime"), float("inf"))
    if start > end:
        raise CloudTrailError("InvalidTimeRangeException", "Start time must be before end time.")
    found = [e for e in _events()
             if start <= float(e.get("EventTime", 0)) <= end and (key is None or _matches(e, key, value))]
    found.sort(key=lambda e: float(e.get("EventTime", 0)), reverse=True)
    # The token names the request it continues and where: another request's token is refused.
    request = json.dumps([key, value, start, end], sort_keys=True)
    offset = 0
    token = self._get_param("NextToken")
    if token:
        try:
            issued_for, offset = json.loads(base64.b64decode(token))
        except (ValueError, TypeError):
            issued_for = None
        if issued_for != request or not isinstance(offset, int) or offset < 0:
            raise CloudTrailError("InvalidNextTokenException", "Invalid NextToken.")
    page = found[offset:offset + int(max_results)]
    answer = {"Events": page}
    if offset + len(page) < len(found):
        answer["NextToken"] = base64.b64encode(json.dumps([request, offset + len(page)]).encode()).decode()
    return json.dumps(answer)


CloudTrailResponse.lookup_events = lookup_events
