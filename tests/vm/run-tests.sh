#!/usr/bin/env bash
# Real-kernel tests: memory acquisition (kcore, LiME, fallback, refusals) and disk media errors
# in a QEMU guest, against Garage on the host. Called by tests/run.sh; runnable on its own.
#
# Prepares what it needs (the VM cache for the Debian 12 6.1 and 6.12 kernels, the static agent,
# the host agent, Volatility 3), then checks that each kernel boots through tests/src/vm.rs and
# runs the ignored suites of tests/tests/e2e (memory_vm, controller_vm, and the VM cases of
# workflow and isolation).
# Missing prerequisites fail; nothing is skipped.
# Takes about 10 minutes on 2 cores (TCG).
set -euo pipefail
cd "$(dirname "$0")/../.."
log() { printf '\n==> %s\n' "$*" >&2; }

# Both Debian 12 kernel series. tests/src/vm.rs reads AIRF_VM_KERNELS ("RELEASE:LIME_KO ...");
# AIRF_LIME_KO, and the tests that name no kernel, use the 6.1 one.
kernels=()
for series in 6.1 6.12; do
  log "VM cache for the $series kernel (kernel, initramfs, lime.ko)"
  prepared=$(env -u AIRF_VM_KERNEL_RELEASE AIRF_VM_SERIES=$series tests/vm/prepare.sh)
  release=$(sed -n 's/^AIRF_VM_KERNEL_RELEASE=//p' <<<"$prepared")
  lime=$(sed -n 's/^AIRF_VM_LIME_KO=//p' <<<"$prepared")
  kernels+=("$release:$lime")
  [ "$series" != 6.1 ] || AIRF_LIME_KO=$lime
done
export AIRF_VM_KERNELS="${kernels[*]}" AIRF_LIME_KO

# tests/run.sh has built both already; run on its own, this builds the release once and uses it
# for the guest and for `verify` on the host alike (the static binary runs on both).
if [ -z "${AIRF_STATIC_AGENT:-}" ]; then
  log "the release binary for the guest (packaging/release.sh: what ships is what is tested)"
  AIRF_STATIC_AGENT=$(packaging/release.sh | sed -n 1p)
fi
export AIRF_STATIC_AGENT AIRF_AGENT_BIN=${AIRF_AGENT_BIN:-$AIRF_STATIC_AGENT}

# Volatility 3, pinned, in its own venv (install-deps.sh); the tests find it there.
tests/scripts/install-deps.sh volatility
export PATH="${AIRF_CACHE:-/opt/airf-cache}/volatility-bin:$PATH"
command -v zstd >/dev/null || apt-get install -y -q zstd
[ -x "${AIRF_GARAGE:-/opt/airf-cache/garage/bin/garage}" ] || tests/scripts/install-deps.sh

export AWS_EC2_METADATA_DISABLED=true
log "VM tests"
# One VM at a time: each guest uses both cores under TCG.
cargo test --quiet -p airf-e2e --lib -- --ignored --exact vm::tests::guest_on_boots_each_prepared_series
cargo test --quiet --workspace --test e2e -- --ignored --test-threads=1 "$@"
