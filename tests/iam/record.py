"""Records every AWS call moto serves that was made with an assumed role's credentials.

A WSGI middleware around moto's application (tests/scripts/moto_aws.py installs it when
$AIRF_IAM_CALL_LOG names a file). For each signed request it appends one JSON line:
service and operation, region and account, the request parameters (query, form or JSON body;
for S3 the method, bucket, key, query and the headers IAM conditions read; for the EBS direct
APIs the operation and snapshot ids its REST path names), the calling principal
as moto knows it (the assumed role behind the access key: the controller's own role, the member
role it assumes, the acquisition role an instance holds), and `world`: what moto held, before the
call, about each resource the call names (tags, instance profile roles, role paths,
associations, Auto Scaling groups, snapshots' encryption). tests/iam/authz.py turns that into IAM authorizations.

Calls made with credentials that are no assumed role (the tests' own set-up with the static key
"testing") are not recorded: the tests stand in for AWS and the operator there, not for airf.
"""

from __future__ import annotations

import io
import json
import re
import threading
import urllib.parse

ID_PATTERN = re.compile(r"\b(?:i|sg|vol|snap|eni|vpc|subnet)-[0-9a-f]{8,17}\b|\biip-assoc-[0-9a-f]{8,17}\b")
CREATED_PATTERN = re.compile(r"<(?:groupId|snapshotId)>((?:sg|snap)-[0-9a-f]+)</")
S3_HEADERS = (
    "x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id", "x-amz-acl",
    "x-amz-storage-class", "x-amz-object-lock-mode", "if-none-match", "x-amz-copy-source",
    # Read by no IAM condition: kept so that tests can see which writes carried a checksum.
    "x-amz-checksum-sha256",
)
# EBS direct APIs (REST, the operation is in the path): /snapshots/<id>/blocks[/<index>],
# /snapshots/<id>/changedblocks; StartSnapshot, PutSnapshotBlock and CompleteSnapshot are writes
# airf never makes and are named so that the evaluator refuses them.
EBS_PATHS = (
    (re.compile(r"^/snapshots/(snap-[0-9a-f]+)/blocks/([0-9]+)$"), {"GET": "GetSnapshotBlock", "PUT": "PutSnapshotBlock"}),
    (re.compile(r"^/snapshots/(snap-[0-9a-f]+)/blocks$"), {"GET": "ListSnapshotBlocks"}),
    (re.compile(r"^/snapshots/(snap-[0-9a-f]+)/changedblocks$"), {"GET": "ListChangedBlocks"}),
    (re.compile(r"^/snapshots/completion/(snap-[0-9a-f]+)$"), {"POST": "CompleteSnapshot"}),
    (re.compile(r"^/snapshots$"), {"POST": "StartSnapshot"}),
)
CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")


def _credential(environ: dict) -> tuple[str, str, str] | None:
    """(access key, region, service) of a SigV4-signed request."""
    m = CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    if m is None:
        q = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        cred = (q.get("X-Amz-Credential") or [""])[0]
        m = CREDENTIAL.search("Credential=" + cred)
    if m is None:
        return None
    return m.group(1), m.group(3), m.group(4)


def _principal(access_key: str) -> dict | None:
    from moto.sts.models import sts_backends  # noqa: PLC0415 - moto is loaded by then

    for account in list(sts_backends.keys()):
        for partition in ("aws",):
            backend = sts_backends[account][partition]
            role = backend.get_assumed_role_from_access_key(access_key)
            if role is None:
                continue
            issued = getattr(role.access_key, "create_date", None)
            return {
                "arn": role.arn,
                "role_arn": role.role_arn,
                "session": role.session_name,
                "account": role.role_arn.split(":")[4],
                "issued": issued.strftime("%Y-%m-%dT%H:%M:%SZ") if issued else None,
            }
    return None


def s3_operation(method: str, key: str, query: dict[str, str], headers: dict[str, str]) -> str:
    """The S3 operation a REST request is, as S3's API reference names it."""
    if not key:
        if method == "HEAD":
            return "HeadBucket"
        if method == "GET":
            if "uploads" in query:
                return "ListMultipartUploads"
            if "location" in query:
                return "GetBucketLocation"
            if "versions" in query:
                return "ListObjectVersions"
            return "ListObjectsV2" if query.get("list-type") == "2" else "ListObjects"
        if method == "PUT" and not query:
            return "CreateBucket"
        return f"Bucket{method.title()}?{'&'.join(sorted(query))}"
    if method == "PUT":
        if "partNumber" in query and "uploadId" in query:
            return "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart"
        if "tagging" in query:
            return "PutObjectTagging"
        return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    if method == "GET":
        if "uploadId" in query:
            return "ListParts"
        if "attributes" in query:
            return "GetObjectAttributes"
        return "GetObject"
    if method == "HEAD":
        return "HeadObject"
    return f"Object{method.title()}?{'&'.join(sorted(query))}"


def ebs_operation(method: str, path: str) -> tuple[str, dict[str, str]]:
    """The EBS direct API operation a REST request is, and the ids its path carries."""
    for pattern, by_method in EBS_PATHS:
        m = pattern.match(path)
        if m is None:
            continue
        params = {}
        if m.groups():
            params["SnapshotId"] = m.group(1)
        if len(m.groups()) > 1:
            params["BlockIndex"] = m.group(2)
        return by_method.get(method, f"{method}?{path}"), params
    return f"{method}?{path}", {}


def _world(ids: set[str], names: dict[str, set[str]], account: str, region: str) -> dict:
    """What moto holds about the resources a call names."""
    from moto.autoscaling.models import autoscaling_backends  # noqa: PLC0415
    from moto.ec2.models import ec2_backends  # noqa: PLC0415
    from moto.iam.models import iam_backends  # noqa: PLC0415

    world: dict[str, dict] = {}
    ec2 = ec2_backends[account][region]
    for rid in ids:
        if rid.startswith("iip-assoc-"):
            for iid, assoc in ec2.iam_instance_profile_associations.items():
                if assoc.association_id == rid:
                    world[rid] = {"instance": iid}
                    ids_tags = dict(ec2.tags.get(iid, {}))
                    world.setdefault(iid, {"tags": ids_tags})
            continue
        world[rid] = {"tags": dict(ec2.tags.get(rid, {}))}
        if rid.startswith("snap-"):
            # An encrypted snapshot's blocks are decrypted with its key as the caller.
            snap = ec2.snapshots.get(rid)
            if snap is not None:
                world[rid]["encrypted"] = bool(getattr(snap, "encrypted", False))
                world[rid]["kms_key_id"] = getattr(snap, "kms_key_id", None)
    iam = iam_backends[account]["global"]
    for name in names.get("profile", ()):
        try:
            profile = iam.get_instance_profile(name)
        except Exception:  # noqa: BLE001 - moto's NotFound; the call fails the same way
            continue
        world[f"instance-profile:{name}"] = {"path": profile.path, "roles": [r.arn for r in profile.roles]}
    for name in names.get("role", ()):
        try:
            role = iam.get_role(name)
        except Exception:  # noqa: BLE001
            continue
        world[f"role:{name}"] = {"path": role.path}
    asg = autoscaling_backends[account][region]
    for name in names.get("asg", ()):
        group = asg.autoscaling_groups.get(name)
        if group is not None:
            tags = {t["Key"]: t["Value"] for t in getattr(group, "tags", []) or []}
            world[f"asg:{name}"] = {"arn": group.arn, "tags": tags}
    return world


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


class Recorder:
    def __init__(self, app, path: str):
        self.app = app
        self.path = path
        self.lock = threading.Lock()
        self.seq = 0

    def __call__(self, environ, start_response):
        cred = _credential(environ)
        principal = _principal(cred[0]) if cred else None
        if principal is None:
            return self.app(environ, start_response)
        _, region, service = cred
        try:
            record = self._describe(environ, service, region, principal)
        except Exception as e:  # noqa: BLE001 - a record the evaluator fails on, never a lost call
            record = {"service": service, "operation": "?", "recorder_error": repr(e),
                      "principal": principal, "region": region, "account": principal["account"]}
        status: list[str] = []

        def capture(st, headers, exc_info=None):
            status.append(st)
            return start_response(st, headers, exc_info) if exc_info else start_response(st, headers)

        result = self.app(environ, capture)
        if record.get("service") == "ec2" and record.get("operation", "").startswith("Create"):
            body = b"".join(result)
            record["created"] = CREATED_PATTERN.findall(body.decode("utf-8", "replace"))
            result = [body]
        record["status"] = int(status[0].split()[0]) if status else None
        with self.lock:
            self.seq += 1
            record["seq"] = self.seq
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")
        return result

    def _describe(self, environ, service: str, region: str, principal: dict) -> dict:
        query = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        record = {"service": service, "region": region, "account": principal["account"], "principal": principal}
        if service == "s3":
            # The body is evidence, possibly gigabytes: never read here.
            path = urllib.parse.unquote(environ.get("PATH_INFO", ""))
            bucket, _, key = path.lstrip("/").partition("/")
            headers = {h: environ[f"HTTP_{h.upper().replace('-', '_')}"] for h in S3_HEADERS
                       if f"HTTP_{h.upper().replace('-', '_')}" in environ}
            method = environ.get("REQUEST_METHOD", "GET")
            record["operation"] = s3_operation(method, key, query, headers)
            record["s3"] = {"method": method, "bucket": bucket, "key": key, "query": query, "headers": headers}
            record["params"] = {}
            return record
        if service == "ebs":
            # Snapshot blocks (512 KiB each) are never read here; ids come from the path.
            method = environ.get("REQUEST_METHOD", "GET")
            path = urllib.parse.unquote(environ.get("PATH_INFO", ""))
            record["operation"], path_params = ebs_operation(method, path)
            params = {**query, **path_params}
            record["params"] = params
            record["ebs"] = {"method": method, "path": path}
            ids = {v for k, v in params.items() if k in ("SnapshotId", "firstSnapshotId") and v}
            record["world"] = _world(ids, {}, principal["account"], region)
            return record
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target:
            params = json.loads(body or b"{}")
            record["operation"] = target.rsplit(".", 1)[1]
        else:
            params = {**query, **dict(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))}
            record["operation"] = params.pop("Action", "?")
            params.pop("Version", None)
        record["params"] = params
        ids = {m.group(0) for s in _strings(params) for m in ID_PATTERN.finditer(s)}
        names: dict[str, set[str]] = {"profile": set(), "role": set(), "asg": set()}
        for k, v in params.items() if isinstance(params, dict) else ():
            if k in ("IamInstanceProfile.Name", "InstanceProfileName"):
                names["profile"].add(str(v))
            elif k == "IamInstanceProfile.Arn":
                names["profile"].add(str(v).rsplit("/", 1)[1])
            elif k == "RoleName":
                names["role"].add(str(v))
            elif k == "AutoScalingGroupName":
                names["asg"].add(str(v))
        record["world"] = _world(ids, names, principal["account"], region)
        return record
