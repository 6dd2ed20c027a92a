#!/usr/bin/env bash
# Does the static agent need a faster allocator than musl's? Builds the static agent twice
# (musl's malloc, and mimalloc through the agent's `mimalloc` feature) with the profile that is
# shipped, and runs each on the same mixed source with `--to - > /dev/null`.
#
#   packaging/bench/allocator.sh [SIZE_GIB] [RUNS]   (defaults 4 and 3)
#
# Runs alternate between the two binaries (musl, mimalloc, musl, ...) so that load from anything
# else on the machine falls on both alike; the source is read once first so every run reads it
# from the page cache (this measures the agent, not the disk). Prints each run and the medians:
# MB/s (10^6 bytes/s of raw source), CPU seconds (user + sys) and peak RSS (/usr/bin/time).
# The decision and its numbers are in packaging/release.sh's header.
set -euo pipefail
cd "$(dirname "$0")/../.."

size_gib=${1:-4}
runs=${2:-3}
profile=${AIRF_BENCH_PROFILE:-dist}
threads=4
work=${AIRF_BENCH_DIR:-/tmp/airf-bench}
mkdir -p "$work"

src=$work/mixed-${size_gib}g.img
if [ ! -f "$src" ] || [ "$(stat -c %s "$src")" != $((size_gib << 30)) ]; then
  echo "writing $src (${size_gib} GiB: zeros, text, random)" >&2
  python3 packaging/bench/make-source.py "$src" $((size_gib << 30))
fi
bytes=$(stat -c %s "$src")

# build VARIANT [FEATURES]: a static dist binary copied to $work/airf-agent-VARIANT.
build() {
  local variant=$1 bin
  shift
  echo "building the static agent ($profile, $variant)" >&2
  bin=$(packaging/build-static.sh --profile "$profile" "$@")
  cp -f "$bin" "$work/airf-agent-$variant"
}
build musl
build mimalloc --features mimalloc

cat "$src" >/dev/null # into the page cache

# run VARIANT N: one measured run; appends "mbs cpu rss_kib" to $work/alloc.VARIANT.
run() {
  local variant=$1 n=$2 t0 t1 tf=$work/alloc-time.$1.$2
  t0=$(date +%s.%N)
  /usr/bin/time -f '%U %S %M' -o "$tf" \
    "$work/airf-agent-$variant" disk "$src" --to - --threads "$threads" --no-progress \
    >/dev/null 2>"$work/alloc-err.$variant" || { cat "$work/alloc-err.$variant" >&2; exit 1; }
  t1=$(date +%s.%N)
  python3 - "$bytes" "$t0" "$t1" "$(tail -n 1 "$tf")" "$variant" "$n" <<'PY' | tee -a "$work/alloc.$variant"
import sys
size, t0, t1 = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
user, sys_, rss = sys.argv[4].split()
print(f"{size / 1e6 / (t1 - t0):.0f} {float(user) + float(sys_):.2f} {rss}")
PY
}

rm -f "$work/alloc.musl" "$work/alloc.mimalloc"
echo "source: $src ($bytes bytes); --threads $threads; profile $profile; $(nproc) cores" >&2
echo "run: MB/s CPU-s peak-RSS-KiB" >&2
for n in $(seq "$runs"); do
  for variant in musl mimalloc; do
    printf '%-8s %s: ' "$variant" "$n" >&2
    run "$variant" "$n" >&2
  done
done

python3 - "$work/alloc.musl" "$work/alloc.mimalloc" <<'PY'
import statistics
import sys

def medians(path):
    rows = [list(map(float, line.split())) for line in open(path) if line.strip()]
    return [statistics.median(col) for col in zip(*rows)]

m, x = medians(sys.argv[1]), medians(sys.argv[2])
print(f"{'allocator':<10} {'MB/s':>6} {'CPU-s':>6} {'peak RSS MiB':>13}   (medians)")
for name, (mbs, cpu, rss) in (("musl", m), ("mimalloc", x)):
    print(f"{name:<10} {mbs:6.0f} {cpu:6.2f} {rss / 1024:13.1f}")
print(f"mimalloc / musl: speed {x[0] / m[0]:.3f}, CPU {x[1] / m[1]:.3f}, RSS {x[2] / m[2]:.3f}")
PY
