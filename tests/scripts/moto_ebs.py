"""The EBS direct APIs as AWS serves them, for moto_aws.py (imported there).

moto's EBS backend stores blocks of any size under string indexes, pages nothing, checks no
checksum or block token, leaves every snapshot `completed` in EC2, and lists only one side of a
change. Here, after the EBS direct APIs reference (ebs-2019-11-02) and user guide:

- Blocks are 524,288 bytes (BlockSize); PutSnapshotBlock refuses another length and a body whose
  SHA-256 is not its base64 x-amz-Checksum (ValidationException), and each write gets a new
  block token. StartSnapshot with ParentSnapshotId starts from the parent's blocks and volume
  (an incremental snapshot); Encrypted/KmsKeyArn are recorded in EC2.
- A snapshot is `pending` in EC2's DescribeSnapshots until CompleteSnapshot; the EBS direct APIs
  refuse to read a pending snapshot (the user guide: only completed snapshots can be accessed).
- ListSnapshotBlocks and ListChangedBlocks page (MaxResults 100-10,000, default 10,000;
  NextToken; StartingBlockIndex), in ascending index order.
- GetSnapshotBlock needs the block's token and answers with x-amz-Checksum (base64 SHA-256),
  x-amz-Checksum-Algorithm SHA256 and x-amz-Data-Length.
- ListChangedBlocks lists every block whose token differs between the two snapshots (written in
  either), and refuses snapshots of different volumes (UNRELATED_SNAPSHOTS).
- A snapshot EC2's CreateSnapshot took (the controller's) holds the blocks of
  $AIRF_SSM_OUTPUT_DIR/ebs-volumes/<volume-id>.img, when a test put the volume's content there
  (the test plays the instance's disk), else none (an all-zero volume).
- Errors are restJson: HTTP status, x-amzn-ErrorType, {"Message", "Reason"}.
- $AIRF_SSM_OUTPUT_DIR/ebs-page-size, when a test writes it, makes pages that short.
- Injected faults (moto_faults.py's faults.json): "ebs:<Action>" with RequestThrottledException,
  InternalServerException or AccessDeniedException fails the next TIMES calls;
  "ebs:GetSnapshotBlock:<index>" with CorruptBlock serves that block with one byte flipped
  (its checksum header unchanged) TIMES times; "ebs:ListSnapshotBlocks:page" with
  ExpiredPageToken refuses the next TIMES page tokens as expired (INVALID_PAGE_TOKEN).
"""
import base64
import hashlib
import json
import os
import uuid

from moto.ebs import models as ebs_models
from moto.ebs.models import EBSBackend
from moto.ebs.responses import EBSResponse
from moto.ec2.models import ec2_backends

import moto_faults

BLOCK_SIZE = 524288
OUTPUT_DIR = os.environ.get("AIRF_SSM_OUTPUT_DIR", "")

ERRORS = {
    "ValidationException": 400,
    "ResourceNotFoundException": 404,
    "AccessDeniedException": 403,
    "RequestThrottledException": 400,
    "InternalServerException": 500,
    "ConflictException": 409,
}
FAULT_REASONS = {
    "RequestThrottledException": ("ACCOUNT_THROTTLED", "The request was throttled."),
    "InternalServerException": (None, "An internal error has occurred."),
    "AccessDeniedException": ("UNAUTHORIZED_ACCOUNT", "User is not authorized to perform ebs action on the snapshot."),
}


class EbsError(Exception):
    def __init__(self, code, message, reason=None):
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason

    def response(self):
        body = {"Message": self.message}
        if self.reason:
            body["Reason"] = self.reason
        status = ERRORS.get(self.code, 400)
        # moto takes the status from the headers' "status", not the tuple's first element.
        return status, {"status": status, "x-amzn-ErrorType": self.code, "Content-Type": "application/json"}, json.dumps(body)


class Block:
    def __init__(self, data):
        self.data = data
        self.checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
        self.token = base64.b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes).decode()


class Snap:
    def __init__(self, ec2_snapshot, volume_size, blocks):
        self.ec2 = ec2_snapshot
        self.volume_size = volume_size
        self.blocks = blocks  # {int index: Block}

    @property
    def id(self):
        return self.ec2.id


def _ec2(backend):
    return ec2_backends[backend.account_id][backend.region_name]


def _volume_image_blocks(volume_id):
    path = os.path.join(OUTPUT_DIR, "ebs-volumes", f"{volume_id}.img") if OUTPUT_DIR else ""
    blocks = {}
    if not path or not os.path.exists(path):
        return blocks
    with open(path, "rb") as f:
        index = 0
        while True:
            data = f.read(BLOCK_SIZE)
            if not data:
                break
            data = data.ljust(BLOCK_SIZE, b"\0")
            if data.count(0) != len(data):
                blocks[index] = Block(data)
            index += 1
    return blocks


def _snap(backend, snapshot_id, completed=True):
    snaps = backend.__dict__.setdefault("airf_snaps", {})
    snap = snaps.get(snapshot_id)
    if snap is None:
        ec2_snapshot = _ec2(backend).snapshots.get(snapshot_id)
        if ec2_snapshot is None:
            raise EbsError("ResourceNotFoundException", f"The snapshot '{snapshot_id}' does not exist.", "SNAPSHOT_NOT_FOUND")
        snap = Snap(ec2_snapshot, ec2_snapshot.volume.size, _volume_image_blocks(ec2_snapshot.volume.id))
        snaps[snapshot_id] = snap
    if completed and snap.ec2.status != "completed":
        raise EbsError("ValidationException", f"The snapshot '{snapshot_id}' is not in a completed state.", "INVALID_SNAPSHOT_ID")
    return snap


def _fault(action):
    code = moto_faults._take_fault(f"ebs:{action}")
    if code:
        reason, message = FAULT_REASONS.get(code, (None, code))
        raise EbsError(code, message, reason)


def _page(self, items, default_start=0):
    """(page, next token) of sorted (index, ...) items, by MaxResults / NextToken / StartingBlockIndex."""
    q = self.querystring
    max_results = int(q.get("maxResults", ["10000"])[0])
    if not 100 <= max_results <= 10000:
        max_results = max(100, min(max_results, 10000))
    # A test may make pages shorter than asked (AWS may too), to exercise paging.
    cap_file = os.path.join(OUTPUT_DIR, "ebs-page-size") if OUTPUT_DIR else ""
    if cap_file and os.path.exists(cap_file):
        with open(cap_file, encoding="utf-8") as f:
            max_results = min(max_results, int(f.read().strip()))
    token = q.get("pageToken", [None])[0]
    start = int(q.get("startingBlockIndex", [str(default_start)])[0])
    if token:
        try:
            start = int(base64.b64decode(token).decode().split(":", 1)[1])
        except (ValueError, IndexError, UnicodeDecodeError):
            raise EbsError("ValidationException", "The pagination token is invalid.", "INVALID_PAGE_TOKEN")
    chosen = [i for i in items if i[0] >= start]
    page, rest = chosen[:max_results], chosen[max_results:]
    next_token = base64.b64encode(f"page:{rest[0][0]}".encode()).decode() if rest else None
    return page, next_token


def _json_api(fn):
    def wrapped(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except EbsError as e:
            return e.response()
    return wrapped


@_json_api
def start_snapshot(self):
    params = json.loads(self.body or b"{}")
    backend = self.ebs_backend
    ec2 = _ec2(backend)
    parent_id = params.get("ParentSnapshotId")
    parent = _snap(backend, parent_id) if parent_id else None
    if parent is not None:
        volume = parent.ec2.volume
        if int(params["VolumeSize"]) != parent.volume_size:
            raise EbsError("ValidationException", "The volume size must match the parent snapshot's.", "INVALID_VOLUME_SIZE")
    else:
        volume = ec2.create_volume(size=int(params["VolumeSize"]), zone_name=f"{backend.region_name}a")
    snapshot = ec2.create_snapshot(volume_id=volume.id, description=params.get("Description", ""))
    snapshot.status = "pending"
    if params.get("Encrypted") or params.get("KmsKeyArn"):
        snapshot.encrypted = True
        snapshot.kms_key_id = params.get("KmsKeyArn")
    if params.get("Tags"):
        snapshot.add_tags({t["Key"]: t["Value"] for t in params["Tags"]})
    snap = Snap(snapshot, int(params["VolumeSize"]), dict(parent.blocks) if parent else {})
    backend.__dict__.setdefault("airf_snaps", {})[snapshot.id] = snap
    return 201, {"status": 201, "Content-Type": "application/json"}, json.dumps({
        "SnapshotId": snapshot.id, "OwnerId": backend.account_id, "Status": "pending",
        "StartTime": 0, "VolumeSize": snap.volume_size, "BlockSize": BLOCK_SIZE,
        "Tags": params.get("Tags") or [], "ParentSnapshotId": parent_id or "",
        "KmsKeyArn": params.get("KmsKeyArn") or "", "SseType": "sse-ebs" if snapshot.encrypted else "none",
    })


@_json_api
def put_snapshot_block(self):
    backend = self.ebs_backend
    parts = self.parsed_url.path.split("/")
    snap = _snap(backend, parts[-3], completed=False)
    if snap.ec2.status != "pending":
        raise EbsError("ValidationException", "The snapshot is already completed.", "INVALID_SNAPSHOT_ID")
    index = int(parts[-1])
    data = self.body if isinstance(self.body, bytes) else self.body.encode()
    headers = {k.lower(): v for k, v in self.headers.items()}
    if headers.get("x-amz-checksum-algorithm") != "SHA256":
        raise EbsError("ValidationException", "ChecksumAlgorithm must be SHA256.", "INVALID_PARAMETER_VALUE")
    if len(data) != BLOCK_SIZE or int(headers.get("x-amz-data-length", "-1")) != BLOCK_SIZE:
        raise EbsError("ValidationException", f"The data length must be {BLOCK_SIZE} bytes.", "INVALID_BLOCK")
    if index >= snap.volume_size * (1 << 30) // BLOCK_SIZE:
        raise EbsError("ValidationException", "The block index is beyond the volume.", "INVALID_BLOCK")
    block = Block(data)
    if block.checksum != headers.get("x-amz-checksum"):
        raise EbsError("ValidationException", "The checksum does not match the data.", "INVALID_PARAMETER_VALUE")
    snap.blocks[index] = block
    return 201, {"status": 201, "x-amz-Checksum": block.checksum, "x-amz-Checksum-Algorithm": "SHA256"}, "{}"


@_json_api
def complete_snapshot(self):
    backend = self.ebs_backend
    snap = _snap(backend, self.parsed_url.path.split("/")[-1], completed=False)
    snap.ec2.status = "completed"
    return 202, {"status": 202, "Content-Type": "application/json"}, json.dumps({"Status": "completed"})


@_json_api
def list_snapshot_blocks(self):
    _fault("ListSnapshotBlocks")
    # A page token lives 60 minutes (EBS direct APIs FAQ): a test expires one on demand.
    if self.querystring.get("pageToken") and moto_faults._take_fault("ebs:ListSnapshotBlocks:page") == "ExpiredPageToken":
        raise EbsError("ValidationException", "The pagination token has expired.", "INVALID_PAGE_TOKEN")
    snap = _snap(self.ebs_backend, self.path.split("?")[0].split("/")[-2])
    items = sorted((i, b) for i, b in snap.blocks.items())
    page, next_token = _page(self, items)
    body = {
        "Blocks": [{"BlockIndex": i, "BlockToken": b.token} for i, b in page],
        "ExpiryTime": 2000000000, "VolumeSize": snap.volume_size, "BlockSize": BLOCK_SIZE,
    }
    if next_token:
        body["NextToken"] = next_token
    return 200, {"status": 200, "Content-Type": "application/json"}, json.dumps(body)


@_json_api
def get_snapshot_block(self):
    path = self.path.split("?")[0].split("/")
    snap = _snap(self.ebs_backend, path[-3])
    index = int(path[-1])
    _fault("GetSnapshotBlock")
    token = self.querystring.get("blockToken", [None])[0]
    block = snap.blocks.get(index)
    if block is None or token != block.token:
        raise EbsError("ValidationException", "The block token is not valid for this block.", "INVALID_BLOCK_TOKEN")
    data = block.data
    if moto_faults._take_fault(f"ebs:GetSnapshotBlock:{index}") == "CorruptBlock":
        data = bytes([data[0] ^ 0xFF]) + data[1:]
    return 200, {
        "status": 200, "x-amz-Checksum": block.checksum, "x-amz-Checksum-Algorithm": "SHA256",
        "x-amz-Data-Length": str(len(data)), "Content-Type": "application/octet-stream",
    }, data


@_json_api
def list_changed_blocks(self):
    _fault("ListChangedBlocks")
    backend = self.ebs_backend
    second = _snap(backend, self.path.split("?")[0].split("/")[-2])
    first_id = self.querystring.get("firstSnapshotId", [None])[0]
    first = _snap(backend, first_id) if first_id else None
    if first is not None and first.ec2.volume.id != second.ec2.volume.id:
        raise EbsError("ValidationException", "The snapshots are not related: they are of different volumes.", "UNRELATED_SNAPSHOTS")
    old = first.blocks if first else {}
    changed = []
    for i in sorted(set(old) | set(second.blocks)):
        a, b = old.get(i), second.blocks.get(i)
        if (a.token if a else None) != (b.token if b else None):
            entry = {"BlockIndex": i}
            if a:
                entry["FirstBlockToken"] = a.token
            if b:
                entry["SecondBlockToken"] = b.token
            changed.append((i, entry))
    page, next_token = _page(self, changed)
    body = {
        "ChangedBlocks": [e for _, e in page], "ExpiryTime": 2000000000,
        "VolumeSize": second.volume_size, "BlockSize": BLOCK_SIZE,
    }
    if next_token:
        body["NextToken"] = next_token
    return 200, {"status": 200, "Content-Type": "application/json"}, json.dumps(body)


for _name, _fn in [("start_snapshot", start_snapshot), ("put_snapshot_block", put_snapshot_block),
                   ("complete_snapshot", complete_snapshot), ("list_snapshot_blocks", list_snapshot_blocks),
                   ("get_snapshot_block", get_snapshot_block), ("list_changed_blocks", list_changed_blocks)]:
    setattr(EBSResponse, _name, _fn)
del ebs_models, EBSBackend
