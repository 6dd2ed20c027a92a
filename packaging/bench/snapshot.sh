#!/usr/bin/env bash
# EBS snapshot acquisition against the peer's path, in one run on this machine:
#   airf-agent snapshot SNAP --to s3://…                     (stream: read, hash, compress, upload)
#   coldsnap download SNAP img && zstd -T0 -1 img | aws s3 cp - s3://…   (download to disk, then compress and upload)
#
#   packaging/bench/snapshot.sh [WRITTEN_MIB] [VOLUME_GIB]     (defaults 1024 and 2)
#   AIRF_AGENT_BIN=… packaging/bench/snapshot.sh                (a given agent build)
#
# Both read the same snapshot from the same moto endpoint (tests/scripts/moto.sh: the EBS direct
# APIs as tests/scripts/moto_ebs.py serves them, with AWS's 512 KiB blocks and SHA-256
# checksums) and write to the same local S3 that discards what it receives
# (blackhole_s3.py), so what differs is the tools. The snapshot has WRITTEN_MIB written on a
# VOLUME_GIB volume: half random bytes, half text, the rest never written. coldsnap is built
# once into $AIRF_CACHE/coldsnap (cargo install, a few minutes). Prints wall time, MB/s of
# volume, peak RSS and the ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/scripts/lib.sh

written_mib=${1:-1024}
volume_gib=${2:-2}
here=packaging/bench
cache=${AIRF_CACHE:-/opt/airf-cache}
COLDSNAP_VERSION=0.12.0
coldsnap=$cache/coldsnap/bin/coldsnap
# coldsnap has no --version: the installed version is stamped beside it.
if ! [ -x "$coldsnap" ] || [ "$(cat "$cache/coldsnap/VERSION" 2>/dev/null)" != "$COLDSNAP_VERSION" ]; then
  log "cargo install coldsnap $COLDSNAP_VERSION (once, into $cache/coldsnap)"
  cargo install --quiet --locked --root "$cache/coldsnap" --version "$COLDSNAP_VERSION" coldsnap
  echo "$COLDSNAP_VERSION" >"$cache/coldsnap/VERSION"
fi
command -v /usr/bin/time >/dev/null || die "/usr/bin/time missing: tests/scripts/install-deps.sh"
if [ -n "${AIRF_AGENT_BIN:-}" ]; then
  agent=$AIRF_AGENT_BIN
else
  cargo build --release --quiet -p airf-agent
  agent=$PWD/${CARGO_TARGET_DIR:-target}/release/airf-agent
fi

work=$(mktemp -d /tmp/airf-snapbench.XXXXXX)
sink_port=$(free_port)
python3 "$here/blackhole_s3.py" "$sink_port" & sink=$!
cleanup() { kill "$sink" 2>/dev/null || true; tests/scripts/moto.sh stop "$work/moto" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
tests/scripts/moto.sh start "$work/moto" >/dev/null
# shellcheck disable=SC1091  # written by moto.sh just now
. "$work/moto/env"
moto=$AWS_ENDPOINT_URL
unset AWS_ENDPOINT_URL
export AWS_ENDPOINT_URL_EBS=$moto AWS_ENDPOINT_URL_EC2=$moto AWS_ENDPOINT_URL_STS=$moto

log "planting a $volume_gib GiB volume with $written_mib MiB written in moto's EBS direct APIs"
snap=$(python3 - "$written_mib" "$volume_gib" <<'PY'
import base64, hashlib, os, sys, boto3
written, gib = int(sys.argv[1]), int(sys.argv[2])
ebs = boto3.client("ebs", endpoint_url=os.environ["AWS_ENDPOINT_URL_EBS"])
sid = ebs.start_snapshot(VolumeSize=gib, Tags=[{"Key": "airf:case", "Value": "BENCH"}])["SnapshotId"]
blocks = written * 2  # 512 KiB blocks
stride = max(1, (gib * 2048) // blocks)
text = (b"Dec  2 03:14:15 host sshd[4242]: Accepted publickey for ops from 198.51.100.7 port 52144\n" * 6000)[:524288]
for n in range(blocks):
    data = os.urandom(524288) if n % 2 == 0 else text
    ebs.put_snapshot_block(SnapshotId=sid, BlockIndex=n * stride, BlockData=data, DataLength=524288,
                           Checksum=base64.b64encode(hashlib.sha256(data).digest()).decode(), ChecksumAlgorithm="SHA256")
ebs.complete_snapshot(SnapshotId=sid, ChangedBlocksCount=blocks)
print(sid)
PY
)
volume_bytes=$((volume_gib << 30))

peak() { sed -n 's/.*Maximum resident set size (kbytes): \([0-9]*\).*/\1/p' "$1" | sort -n | tail -1; }
now() { date +%s.%N; }

log "airf-agent snapshot $snap → discarding S3"
t0=$(now)
/usr/bin/time -v "$agent" snapshot "$snap" --to "s3://bench/snap/" --case BENCH --endpoint-url "http://127.0.0.1:$sink_port" \
  --no-progress --json >"$work/agent.json" 2>"$work/agent.time" || { tail -20 "$work/agent.time"; die "airf-agent failed"; }
t1=$(now)

log "coldsnap download $snap, then zstd -T0 -1 | aws s3 cp - → discarding S3"
/usr/bin/time -v "$coldsnap" download "$snap" "$work/coldsnap.img" 2>"$work/coldsnap.time" >/dev/null || { tail -20 "$work/coldsnap.time"; die "coldsnap failed"; }
t2=$(now)
/usr/bin/time -v -o "$work/zstd.time" zstd -T0 -1 -q -c "$work/coldsnap.img" |
  /usr/bin/time -v -o "$work/aws.time" aws --endpoint-url "http://127.0.0.1:$sink_port" s3 cp - "s3://bench/coldsnap/$snap.img.zst" \
    --expected-size "$volume_bytes" >/dev/null
t3=$(now)
[ "$(sha256sum <"$work/coldsnap.img" | cut -d' ' -f1)" = "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sources"][0]["raw_sha256"])' "$work/agent.json")" ] ||
  die "coldsnap's image and airf-agent's raw SHA-256 differ"

python3 - "$volume_bytes" "$t0" "$t1" "$t2" "$t3" "$(peak "$work/agent.time")" "$(peak "$work/coldsnap.time")" \
  "$(peak "$work/zstd.time")" "$(peak "$work/aws.time")" "$work/agent.json" <<'PY'
import json, sys
size = int(sys.argv[1]); t0, t1, t2, t3 = map(float, sys.argv[2:6])
agent_rss, cold_rss, zstd_rss, aws_rss = (int(x) / 1024 for x in sys.argv[6:10])
r = json.load(open(sys.argv[10]))["sources"][0]
a, c = t1 - t0, t3 - t1
print(f"airf-agent snapshot        {a:7.1f} s  {size / a / 1e6:7.1f} MB/s  peak RSS {agent_rss:6.1f} MiB  (bound 100 MiB: {'ok' if agent_rss <= 100 else 'OVER'})  status {r['status']}")
print(f"coldsnap + zstd + aws s3 cp {c:7.1f} s  {size / c / 1e6:7.1f} MB/s  peak RSS coldsnap {cold_rss:.1f} MiB, then zstd {zstd_rss:.1f} + aws {aws_rss:.1f} MiB  (download {t2 - t1:.1f} s, compress+upload {t3 - t2:.1f} s; {size >> 20} MiB written to local disk)")
print(f"ratio: airf-agent is {c / a:.2f}x the speed of coldsnap+zstd+upload, with {max(cold_rss, zstd_rss + aws_rss) / agent_rss:.2f}x less peak memory than the larger baseline step")
PY
