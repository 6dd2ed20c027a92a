#!/usr/bin/env bash
# Runs every check and test of airf on this machine, installing what they need first.
# This is the README's test command and exactly what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/scripts/lib.sh

tests/scripts/install-deps.sh
export AWS_EC2_METADATA_DISABLED=true   # never reach for instance metadata off EC2

log "Step Functions workflow: asl-validator"
"${AIRF_CACHE:-/opt/airf-cache}/node/node_modules/.bin/asl-validator" --json-path controller/workflow/airf-investigation.asl.json
log "CloudFormation templates: drift, cfn-lint, checkov, IAM against the code"
packaging/cloudformation/check.sh
log "shellcheck: the SSM documents' script and documents, the repository's scripts"
tests/scripts/shellcheck.sh
log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# One optimized build serves every test: the shipped static binary (packaging/release.sh) runs
# on this host as well as in the VM guests, so no separate host release build is made.
log "building the shipped agent (packaging/release.sh: static, dist profile)"
AIRF_STATIC_AGENT=$(packaging/release.sh | sed -n 1p)
export AIRF_STATIC_AGENT AIRF_AGENT_BIN=$AIRF_STATIC_AGENT
log "the agent's container image: reproducible OCI layout, runs as 65532 (packaging/oci-image.sh)"
tests/scripts/oci-image-check.sh "$AIRF_STATIC_AGENT"
log "unit, property and end-to-end tests"
# Every emulator keeps its test's recorded AWS calls here (tests/src/iam_calls.rs).
iam_calls=${CARGO_TARGET_DIR:-target}/iam-calls
rm -rf "$iam_calls"
cargo test --workspace --quiet -- --test-threads=2
# The fault sweep's tally (evidence_faults::seeded_fault_sweep_…), for the release note.
log "fault sweep: $(tail -n 1 "${CARGO_TARGET_DIR:-target}/fault-runs.txt")"
log "Volatility layer for seekable zstd images (packaging/volatility)"
tests/scripts/volatility-layer-check.sh
if [ -x tests/vm/run-tests.sh ]; then
  log "real-kernel tests in a VM"
  tests/vm/run-tests.sh
fi
# After the VM suite: its workflow runs are the ones that reach verify with real evidence.
log "IAM: every AWS call the end-to-end tests made, against the templates' policies (table: $iam_calls/calls.md)"
python3 tests/iam/evaluate.py --unused --table "$iam_calls/calls.md" "$iam_calls"/*.jsonl
log "all checks passed"
