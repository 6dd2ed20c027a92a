#!/usr/bin/env bash
# Cost of the memory content check (zero pages + kernel banner search) beside SHA-256, on the
# same synthetic LiME image in the same run. The check runs on the reader thread and SHA-256 on
# its own, so a ratio "scan time / sha256 time" well under 1 means the check adds no wall time.
#
#   packaging/bench/content.sh [MiB] [zero%]     (default 1024 60)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run --quiet --release -p airf-agent --example content_scan_bench -- "${1:-1024}" "${2:-60}"
