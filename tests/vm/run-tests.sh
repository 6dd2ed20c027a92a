#!/usr/bin/env bash
# Real-kernel tests: memory acquisition (kcore, LiME, fallback, refusals) and disk media errors
# in a QEMU guest, against Garage on the host. Called by tests/run.sh; runnable on its own.
#
# Prepares what it needs (the VM cache, the static agent, the host agent, Volatility 3), then
# runs the ignored suites of tests/tests/e2e (memory_vm, controller_vm, and the VM cases of
# workflow and isolation).
# Missing prerequisites fail; nothing is skipped.
# Takes about 10 minutes on 2 cores (TCG).
set -euo pipefail
cd "$(dirname "$0")/../.."
log() { printf '\n==> %s\n' "$*" >&2; }

log "VM cache (kernel, initramfs, lime.ko)"
eval "$(tests/vm/prepare.sh | grep -E '^AIRF_VM_[A-Z_]+=')"
export AIRF_LIME_KO=${AIRF_VM_LIME_KO:-/opt/airf-cache/vm/current/lime.ko}

# tests/run.sh has built both already; run on its own, this builds the release once and uses it
# for the guest and for `verify` on the host alike (the static binary runs on both).
if [ -z "${AIRF_STATIC_AGENT:-}" ]; then
  log "the release binary for the guest (packaging/release.sh: what ships is what is tested)"
  AIRF_STATIC_AGENT=$(packaging/release.sh | sed -n 1p)
fi
export AIRF_STATIC_AGENT AIRF_AGENT_BIN=${AIRF_AGENT_BIN:-$AIRF_STATIC_AGENT}

if ! command -v vol >/dev/null; then
  log "Volatility 3"
  pip install --quiet volatility3
fi
command -v zstd >/dev/null || apt-get install -y -q zstd
[ -x "${AIRF_GARAGE:-/opt/airf-cache/garage/bin/garage}" ] || tests/scripts/install-deps.sh

export AWS_EC2_METADATA_DISABLED=true
log "VM tests"
# One VM at a time: each guest uses both cores under TCG.
cargo test --quiet --workspace --test e2e -- --ignored --test-threads=1 "$@"
