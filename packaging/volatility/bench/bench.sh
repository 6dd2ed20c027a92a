#!/usr/bin/env bash
# Read throughput of the Volatility seekable zstd layer against the decompressed file:
#   packaging/volatility/bench/bench.sh [SIZE_MIB [FRAME_SIZE]]   (default 512 2MiB)
# Makes a memory-like LiME image (one range; a third zero pages, a third text, a third random),
# compresses it
# with airf-agent as it stores memory (level 1, 2 MiB frames unless FRAME_SIZE, the agent's
# --frame-size, says otherwise), runs bench.py (the layer's reads) and times `vol banners.Banners`
# (a scan of all memory through LiME) on both files. Uses
# $AIRF_AGENT_BIN, or builds the agent (debug: slower to compress, the same bytes).
set -euo pipefail
cd "$(dirname "$0")/../../.."
. tests/scripts/lib.sh

size_mib=${1:-512}
frame_size=${2:-2MiB}
tests/scripts/install-deps.sh volatility
python=$AIRF_CACHE/volatility-venv/bin/python
if [ -z "${AIRF_AGENT_BIN:-}" ]; then
  log "building the agent (cargo build -p airf-agent)"
  cargo build --quiet -p airf-agent
  AIRF_AGENT_BIN=${CARGO_TARGET_DIR:-target}/debug/airf-agent
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "a $size_mib MiB memory-like LiME image"
"$python" - "$work/mem.lime" "$size_mib" <<'EOF'
import random, struct, sys
path, mib = sys.argv[1], int(sys.argv[2])
rng = random.Random(3)
text = b"".join(b"task %06d state S pid %d comm kworker/%d " % (i, i * 7, i % 64) for i in range(200))
with open(path, "wb") as f:
    f.write(struct.pack("<IIQQQ", 0x4C694D45, 1, 1 << 20, (1 << 20) + (mib << 20) - 1, 0))
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
"$AIRF_AGENT_BIN" disk "$work/mem.lime" --to - --frame-size "$frame_size" --no-progress \
  >"$work/mem.lime.zst" 2>"$work/agent.out" || die "airf-agent failed: $(cat "$work/agent.out")"
"$python" packaging/volatility/bench/bench.py "$work/mem.lime" "$work/mem.lime.zst"

mkdir -p "$work/cache"
for image in mem.lime mem.lime.zst; do
  start=$EPOCHREALTIME
  "$AIRF_CACHE/volatility-venv/bin/vol" --offline --cache-path "$work/cache" -q -r csv \
    -p packaging/volatility -f "$work/$image" banners.Banners >/dev/null 2>"$work/vol.err" \
    || die "vol failed on $image: $(tail -n 5 "$work/vol.err")"
  log "vol banners.Banners on $image: $(awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $start }") s"
done
