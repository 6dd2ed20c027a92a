#!/usr/bin/env python3
"""A minimal S3 endpoint that accepts multipart uploads and discards the bytes.

For packaging/bench/rss.sh only: it lets the agent upload a 100 GiB-class image without
storing it, so that what is measured is the agent's own memory while parts are in flight. It
answers CreateMultipartUpload, UploadPart (ETag = MD5 of the body, as S3), CompleteMultipartUpload
(the multipart ETag S3 derives), PutObject, ListObjectsV2 and ListMultipartUploads (empty),
and keeps only sizes and ETags.

    blackhole_s3.py PORT
"""
import hashlib
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

UPLOADS = {}  # upload id -> {part number: (md5 bytes, size)}
OBJECTS = {}  # key -> (etag, size)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        md5 = hashlib.md5()
        left = n
        while left:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            md5.update(chunk)
            left -= len(chunk)
        return md5, n

    def _reply(self, status=200, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        url = urlsplit(self.path)
        q = parse_qs(url.query, keep_blank_values=True)
        key = url.path.split("/", 2)[-1]
        self._body()
        if "uploads" in q:
            uid = uuid.uuid4().hex
            UPLOADS[uid] = {}
            xml = f"<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>{key}</Key><UploadId>{uid}</UploadId></InitiateMultipartUploadResult>"
            return self._reply(200, xml.encode())
        uid = q.get("uploadId", [""])[0]
        parts = UPLOADS.pop(uid, None)
        if parts is None:
            return self._reply(404, b"<Error><Code>NoSuchUpload</Code><Message>gone</Message></Error>")
        md5 = hashlib.md5(b"".join(parts[n][0] for n in sorted(parts)))
        etag = f'"{md5.hexdigest()}-{len(parts)}"'
        OBJECTS[key] = (etag, sum(p[1] for p in parts.values()))
        xml = f"<CompleteMultipartUploadResult><Bucket>b</Bucket><Key>{key}</Key><ETag>{etag}</ETag></CompleteMultipartUploadResult>"
        self._reply(200, xml.encode())

    def do_PUT(self):
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        md5, n = self._body()
        etag = f'"{md5.hexdigest()}"'
        if "uploadId" in q:
            UPLOADS.setdefault(q["uploadId"][0], {})[int(q["partNumber"][0])] = (md5.digest(), n)
        else:
            OBJECTS[url.path.split("/", 2)[-1]] = (etag, n)
        self._reply(200, headers={"ETag": etag})

    def do_DELETE(self):
        q = parse_qs(urlsplit(self.path).query)
        UPLOADS.pop(q.get("uploadId", [""])[0], None)
        self._reply(204)

    def do_GET(self):
        if "uploads" in self.path:
            return self._reply(200, b"<ListMultipartUploadsResult></ListMultipartUploadsResult>")
        self._reply(200, b"<ListBucketResult><KeyCount>0</KeyCount></ListBucketResult>")

    def do_HEAD(self):
        self._reply(200)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
