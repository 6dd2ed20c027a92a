#!/usr/bin/env bash
# Disk acquisition benchmark: the agent against its limits and against the pipelines it
# replaces, all on the same source, the same machine and the same run.
#
#   packaging/bench/disk.sh [SIZE_GIB]   (default 4; the 40 GiB sparse RSS check always runs)
#   AIRF_AGENT_BIN=/path/to/airf-agent packaging/bench/disk.sh 4   (a given build instead)
#
# Prints MB/s (10^6 bytes/s of raw source), CPU seconds (user + sys of the measured command, not
# of the S3 server), ratios, and peak RSS of the largest process (/usr/bin/time -v). On a small
# machine the server shares the cores with the client, so read the CPU column beside the rates.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/scripts/lib.sh

size_gib=${1:-4}
tests/scripts/install-deps.sh
# AIRF_AGENT_BIN benchmarks a given build (e.g. an older commit's, for a before/after pair).
if [ -n "${AIRF_AGENT_BIN:-}" ]; then
  agent=$AIRF_AGENT_BIN
else
  cargo build --release --quiet -p airf-agent
  agent=$PWD/target/release/airf-agent
fi
level=1

work=${AIRF_BENCH_DIR:-/tmp/airf-bench}
mkdir -p "$work"
src=$work/mixed-${size_gib}g.img
if [ ! -f "$src" ]; then
  log "writing $src (${size_gib} GiB: zeros, text, random)"
  python3 packaging/bench/make-source.py "$src" $((size_gib << 30))
fi
bytes=$(stat -c %s "$src")
sparse=$work/sparse-40g.img
[ -f "$sparse" ] || truncate -s 40G "$sparse"

tests/scripts/garage.sh stop "$work/garage" 2>/dev/null || true
rm -rf "$work/garage"
tests/scripts/garage.sh start "$work/garage" >/dev/null
# shellcheck source=/dev/null  # written at run time by garage.sh start
. "$work/garage/env"
trap 'tests/scripts/garage.sh stop "$work/garage" 2>/dev/null || true' EXIT
b=s3://$AIRF_TEST_BUCKET/bench

results=()
declare -A mbs_of=()  # MB/s by measurement name
# measure NAME COMMAND...: runs under /usr/bin/time -v, records seconds and peak RSS.
measure() {
  local name=$1; shift
  sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  local t0 t1 rss
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$work/time.$name" bash -c "$*" >/dev/null 2>"$work/err.$name" || { cat "$work/err.$name" >&2; die "$name failed"; }
  t1=$(date +%s.%N)
  rss=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$work/time.$name")
  local secs mbs
  secs=$(python3 -c "print(f'{$t1-$t0:.2f}')")
  mbs=$(python3 -c "print(f'{$bytes/1e6/($t1-$t0):.0f}')")
  local cpu
  cpu=$(awk -F: '/User time|System time/ {t += $2} END {printf "%.1f", t}' "$work/time.$name")
  printf '%-40s %8s s %6s MB/s %6s CPU-s %5s MiB peak RSS\n' "$name" "$secs" "$mbs" "$cpu" "$((rss / 1024))"
  results+=("$name=$mbs")
  mbs_of[$name]=$mbs
}

log "source: $src ($bytes bytes); server: Garage on 127.0.0.1; $(nproc) cores"
zstd -T0 -$level -q -c "$src" >"$work/pre.zst"
measure a_cat_read_limit "cat '$src'"
measure b_zstd_T0_level$level "zstd -T0 -$level -q -c '$src'"
measure h_openssl_sha256 "openssl dgst -sha256 '$src'"
measure e_server_ingest_awscli "aws s3 cp --quiet '$work/pre.zst' $b/e.zst"
measure f_agent_pipeline_to_devnull "'$agent' disk '$src' --to - --no-progress 2>/dev/null"
measure g_agent_to_garage "'$agent' disk '$src' --to $b/g/ --no-progress --json"
measure d_naive_zstd_awscli "zstd -T0 -$level -q -c '$src' | aws s3 cp --quiet - $b/d.zst"
measure c_original_gzip_tee_awscli "cat '$src' | tee >(gzip | aws s3 cp --quiet - $b/c.gz) >(md5sum | aws s3 cp --quiet - $b/c.md5) | sha256sum | aws s3 cp --quiet - $b/c.sha256"
bytes_saved=$bytes; bytes=$(stat -c %s "$sparse")
measure i_agent_40GiB_sparse_to_garage "'$agent' disk '$sparse' --to $b/i/ --no-progress --json"
bytes=$bytes_saved
agent_rss=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$work/time.g_agent_to_garage")
agent_rss40=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$work/time.i_agent_40GiB_sparse_to_garage")

python3 - "${mbs_of[a_cat_read_limit]}" "${mbs_of[b_zstd_T0_level$level]}" "${mbs_of[h_openssl_sha256]}" "${mbs_of[e_server_ingest_awscli]}" \
  "${mbs_of[f_agent_pipeline_to_devnull]}" "${mbs_of[g_agent_to_garage]}" "${mbs_of[d_naive_zstd_awscli]}" "${mbs_of[c_original_gzip_tee_awscli]}" \
  "$agent_rss" "$agent_rss40" <<'PY'
import sys
a, b, h, e, f, g, d, c, rss, rss40 = map(float, sys.argv[1:])
lim = min(a, b, h)
def line(name, val, target, ok):
    print(f"{name:<46} {val:6.2f}  (target {target}) {'OK' if ok else 'MISSED'}")
print()
line("f / min(a,b,h)   pipeline vs its limits", f / lim, ">= 0.8", f / lim >= 0.8)
line("g / e            agent vs server ingest", g / e, ">= 0.9", g / e >= 0.9)
line("g / d            agent vs zstd|aws s3 cp", g / d, ">= 2", g / d >= 2)
line("g / c            agent vs original gzip pipeline", g / c, ">= 20", g / c >= 20)
line("agent peak RSS MiB (4 GiB source)", rss / 1024, "<= 100", rss / 1024 <= 100)
line("agent peak RSS MiB (40 GiB sparse source)", rss40 / 1024, "<= 100", rss40 / 1024 <= 100)
PY
