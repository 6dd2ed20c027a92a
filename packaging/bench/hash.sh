#!/usr/bin/env bash
# SHA-256 throughput of the agent's hash (AWS-LC assembly, agent/src/hash.rs) against the `sha2`
# crate's portable code as the baseline, on the same bytes in the same run. The raw-stream hash
# is the acquisition's sequential ceiling, so this ratio is what choosing AWS-LC buys; it is
# largest on CPUs without SHA-NI.
#
#   packaging/bench/hash.sh [MiB] [rounds]     (default 1024 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -m1 -o 'sha_ni' /proc/cpuinfo >/dev/null && echo "CPU has SHA-NI" || echo "CPU has no SHA-NI"
cargo run --quiet --release -p airf-agent --example hash_bench -- "${1:-1024}" "${2:-3}"
