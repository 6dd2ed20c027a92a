#!/usr/bin/env bash
# Peak memory of the agent on an incompressible 100 GiB-class source uploaded to S3.
#
#   packaging/bench/rss.sh [SIZE_GIB]       (default 100)
#   AIRF_AGENT_BIN=… AIRF_BASELINE_BIN=… packaging/bench/rss.sh 100   (two builds, same run)
#
# The source is a FUSE file of random bytes generated on read (random_fuse.py: no disk, not
# sparse, nothing compresses), and the endpoint a local S3 that discards what it receives
# (blackhole_s3.py), so a 100 GiB image needs neither 100 GiB of disk nor a server's time.
# The part size is the agent's own choice for that size (about 12 MiB for 100 GiB), which is
# what sets the part buffers. Prints peak RSS (/usr/bin/time -v), MB/s, part size and parts.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/scripts/lib.sh

size_gib=${1:-100}
here=packaging/bench
if ! command -v fusermount >/dev/null 2>&1 || ! [ -e /usr/lib/x86_64-linux-gnu/libfuse.so.2 ]; then
  log "apt-get install fuse libfuse2 (for the FUSE source)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse libfuse2 time >/dev/null
fi
python3 -c 'import fuse' 2>/dev/null || python3 -m pip install -q fusepy==3.0.1
if [ -n "${AIRF_AGENT_BIN:-}" ]; then
  agent=$AIRF_AGENT_BIN
else
  cargo build --release --quiet -p airf-agent
  agent=$PWD/target/release/airf-agent
fi

work=$(mktemp -d /tmp/airf-rss.XXXXXX)
mnt=$work/mnt; mkdir -p "$mnt"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 "$here/blackhole_s3.py" "$port" & server=$!
python3 "$here/random_fuse.py" "$mnt" "$size_gib" & fuse=$!
cleanup() { fusermount -u "$mnt" 2>/dev/null || true; kill "$server" "$fuse" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 50); do [ -f "$mnt/random.img" ] && break; sleep 0.1; done
[ -f "$mnt/random.img" ] || die "the FUSE source did not appear at $mnt/random.img"

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
run() { # NAME BINARY
  local name=$1 bin=$2
  log "$name: $size_gib GiB incompressible → discarding S3 on 127.0.0.1:$port"
  /usr/bin/time -v "$bin" disk "$mnt/random.img" --to "s3://bench-bucket/rss/" --case BENCH \
    --endpoint-url "http://127.0.0.1:$port" --no-progress --json >"$work/$name.json" 2>"$work/$name.time" || {
      tail -5 "$work/$name.time"; die "$name failed"; }
  python3 - "$work/$name.json" "$work/$name.time" "$name" <<'PY'
import json, re, sys
r = json.load(open(sys.argv[1])); t = open(sys.argv[2]).read()
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
s = r["sources"][0]; img = s["image"]
print(f"{sys.argv[3]:<10} status {s['status']:<9} raw {s['raw_size']/2**30:.1f} GiB  compressed/raw {s['compressed_size']/max(1,s['raw_size']):.3f}  "
      f"{s['throughput_mb_s']:.0f} MB/s  part {img.get('part_size',0)>>20} MiB x {img.get('parts')}  peak RSS {rss:.1f} MiB  (bound 100 MiB: {'ok' if rss <= 100 else 'OVER'})")
PY
}
run agent "$agent"
[ -z "${AIRF_BASELINE_BIN:-}" ] || run baseline "$AIRF_BASELINE_BIN"
