#!/usr/bin/env bash
# Checks packaging/volatility/, the Volatility 3 layer that opens the agent's seekable zstd
# images (memory.lime.zst) without decompressing them:
#   1. the layer's unit tests (packaging/volatility/tests), on files the agent compressed;
#   2. `vol` itself: a synthetic LiME image (two ranges, a planted kernel banner), compressed by
#      the agent, opened with `-p packaging/volatility`: LiME must stack on the seekable layer,
#      banners.Banners must find the banner at its physical address and layerwriter must write
#      the physical memory byte for byte; without `-p` none of that happens (the layer is what
#      does the work); a truncated image is refused with a reason.
# Installs Volatility (tests/scripts/install-deps.sh volatility). Uses $AIRF_AGENT_BIN, or builds
# the agent (cargo build -p airf-agent). Takes about a minute once both are there.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/scripts/lib.sh

tests/scripts/install-deps.sh volatility
python=$AIRF_CACHE/volatility-venv/bin/python
vol=$AIRF_CACHE/volatility-venv/bin/vol
if [ -z "${AIRF_AGENT_BIN:-}" ]; then
  log "building the agent (cargo build -p airf-agent)"
  cargo build --quiet -p airf-agent
  AIRF_AGENT_BIN=${CARGO_TARGET_DIR:-target}/debug/airf-agent
fi
export AIRF_AGENT_BIN

log "the layer's unit tests (agent-compressed files against zstd -d)"
"$python" -m unittest discover -s packaging/volatility/tests

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/cache" "$work/out" "$work/out-plain"

log "vol on a synthetic LiME image the agent compressed"
# Two ranges, the second at 1 MiB with a kernel banner 0x1234 into it; phys.expected is the
# physical memory as layerwriter writes it (the gap below each range zero-filled).
banner="Linux version 6.1.0-test (x@y) (gcc 12) #1 SMP"
"$python" - "$work" "$banner" <<'EOF'
import random, struct, sys
work, banner = sys.argv[1], sys.argv[2].encode() + b"\0"
rng = random.Random(5)
low = rng.randbytes(3 * 4096)
high = bytearray(b"".join(rng.randbytes(2048) + bytes(2048) for _ in range(6)))
high[0x1234 : 0x1234 + len(banner)] = banner
ranges = [(0x1000, low), (0x100000, bytes(high))]
lime, phys = b"", bytearray()
for start, data in ranges:
    lime += struct.pack("<IIQQQ", 0x4C694D45, 1, start, start + len(data) - 1, 0) + data
    phys += bytes(start - len(phys)) + data
open(f"{work}/x.lime", "wb").write(lime)
open(f"{work}/phys.expected", "wb").write(phys)
EOF
"$AIRF_AGENT_BIN" disk "$work/x.lime" --to - --frame-size 4KiB --no-progress \
  >"$work/x.lime.zst" 2>"$work/agent.out" || die "airf-agent failed: $(cat "$work/agent.out")"
zstd -dc "$work/x.lime.zst" | cmp -s - "$work/x.lime" || die "the agent's image does not decompress to the LiME file"

# vol_in DIR ARGS...: Volatility, offline, with its cache in the work directory, output in DIR.
vol_in() {
  local out=$1
  shift
  "$vol" --offline --cache-path "$work/cache" -q -r csv -o "$out" "$@" 2>>"$work/vol.stderr" \
    || die "vol $* failed: $(tail -n 20 "$work/vol.stderr")"
}
with_layer=(-p packaging/volatility -f "$work/x.lime.zst")
without=(-f "$work/x.lime.zst")

stack=$(vol_in "$work/out" "${with_layer[@]}" layerwriter --list)
echo "$stack" | grep -q ',primary,LimeLayer$' || die "with -p, LiME is not the top layer: $stack"
echo "$stack" | grep -q ',ZstdSeekableLayer$' || die "with -p, the seekable layer is not in the stack: $stack"
log "with -p the stack is FileLayer, ZstdSeekableLayer, LimeLayer"

banners=$(vol_in "$work/out" "${with_layer[@]}" banners.Banners)
echo "$banners" | grep -qx "0,0x101234,$banner" \
  || die "with -p, banners.Banners did not find the banner at physical 0x101234: $banners"
log "with -p banners.Banners finds the banner at its physical address 0x101234"

vol_in "$work/out" "${with_layer[@]}" layerwriter >/dev/null
cmp "$work/out/primary.raw" "$work/phys.expected" \
  || die "with -p, layerwriter's physical memory differs from the LiME ranges"
log "with -p layerwriter writes the physical memory byte for byte"

# Without the layer Volatility sees only the compressed file: no LiME, no banner at 0x101234
# (zstd may store the banner as it is, so it can show up at some compressed offset).
plain_stack=$(vol_in "$work/out-plain" "${without[@]}" layerwriter --list)
echo "$plain_stack" | grep -q 'LimeLayer\|ZstdSeekableLayer' && die "without -p, a LiME or seekable layer stacked: $plain_stack"
plain_banners=$(vol_in "$work/out-plain" "${without[@]}" banners.Banners)
echo "$plain_banners" | grep -q '^0,0x101234,' && die "without -p, the banner was found at its physical address"
log "without -p the stack is the file alone and the banner is not at 0x101234"

head -c -1 "$work/x.lime.zst" >"$work/cut.lime.zst"
: >"$work/vol.stderr"
vol_in "$work/out-plain" -p packaging/volatility -f "$work/cut.lime.zst" layerwriter --list >/dev/null
grep -q "has no seek table at its end (truncated" "$work/vol.stderr" \
  || die "a truncated image was not refused by name: $(cat "$work/vol.stderr")"
log "a truncated image is refused: $(grep -o 'has no seek table[^:]*' "$work/vol.stderr" | head -n 1)"
log "volatility layer: all checks passed"
