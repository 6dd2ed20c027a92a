#!/usr/bin/env bash
# Read throughput of the Volatility seekable zstd layer against the decompressed file:
#   packaging/volatility/bench/bench.sh [SIZE_MIB]   (default 512)
# Makes a memory-like image (a third zero pages, a third text, a third random), compresses it
# with airf-agent as it stores memory (level 1, 2 MiB frames), then runs bench.py. Uses
# $AIRF_AGENT_BIN, or builds the agent in release (a debug build compresses with unoptimized zstd).
set -euo pipefail
cd "$(dirname "$0")/../../.."
. tests/scripts/lib.sh

size_mib=${1:-512}
tests/scripts/install-deps.sh volatility
python=$AIRF_CACHE/volatility-venv/bin/python
if [ -z "${AIRF_AGENT_BIN:-}" ]; then
  log "building the agent (cargo build --release -p airf-agent)"
  cargo build --quiet --release -p airf-agent
  AIRF_AGENT_BIN=${CARGO_TARGET_DIR:-target}/release/airf-agent
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "a $size_mib MiB memory-like image"
"$python" - "$work/mem.raw" "$size_mib" <<'EOF'
import random, sys
path, mib = sys.argv[1], int(sys.argv[2])
rng = random.Random(3)
text = b"".join(b"task %06d state S pid %d comm kworker/%d " % (i, i * 7, i % 64) for i in range(200))
with open(path, "wb") as f:
    for _ in range(mib * 256):
        kind = rng.randrange(3)
        if kind == 0:
            f.write(bytes(4096))
        elif kind == 1:
            start = rng.randrange(len(text) - 4096)
            f.write(text[start : start + 4096])
        else:
            f.write(rng.randbytes(4096))
EOF
log "compressing with $AIRF_AGENT_BIN"
"$AIRF_AGENT_BIN" disk "$work/mem.raw" --to - --no-progress >"$work/mem.raw.zst" 2>/dev/null
"$python" packaging/volatility/bench/bench.py "$work/mem.raw" "$work/mem.raw.zst"
