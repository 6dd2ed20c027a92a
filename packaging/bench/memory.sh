#!/usr/bin/env bash
# Memory acquisition benchmark, in one guest boot of the test VM (same kernel, same RAM, same
# run): the agent (/proc/kcore → zstd + SHA-256 → stdout → byte count) vs avml (/proc/kcore →
# snappy → a file on tmpfs, as avml always writes a local file) vs LiME over tcp → byte count
# (uncompressed, no hashing: the speed of the kernel side alone).
#
#   packaging/bench/memory.sh [GUEST_MEM]   (default 1G)
#
# Prints, per tool: seconds, seconds per GiB of System RAM, output bytes, and peak RSS
# (busybox `time -v`, of the measured process; for LiME, of the reader; busybox 1.35 reports
# ru_maxrss in pages as if kilobytes, 4x too much, so it is divided back, and the agent's own
# figure from its manifest is printed beside it). Under TCG the guest CPU
# is emulated, so compare the tools with each other, not with bare metal.
set -euo pipefail
cd "$(dirname "$0")/../.."
mem=${1:-1G}

agent=$(packaging/release.sh | sed -n 1p)
eval "$(tests/vm/prepare.sh | grep -E '^AIRF_VM_[A-Z_]+=')"
lime=${AIRF_VM_LIME_KO:-/opt/airf-cache/vm/current/lime.ko}

avml_root=${AIRF_CACHE:-/opt/airf-cache}/avml
avml=$avml_root/bin/avml
if [ ! -x "$avml" ]; then
  echo "building avml (static musl, once, cached in $avml_root)" >&2
  rustup target add x86_64-unknown-linux-musl >&2
  CC_x86_64_unknown_linux_musl=musl-gcc RUSTFLAGS="-C target-feature=+crt-static" \
    cargo install --quiet --locked avml --no-default-features --target x86_64-unknown-linux-musl \
    --root "$avml_root" >&2
fi

# In the guest: each tool once, one after the other, measured with busybox time -v.
# shellcheck disable=SC2016  # the guest shell expands it
guest_script='
ram=0
for r in $(grep "^[0-9a-f].* : System RAM$" /proc/iomem | cut -d" " -f1); do
  s=$((0x${r%-*})); e=$((0x${r#*-})); ram=$((ram + e - s + 1))
done
echo "RAM $ram"
measure() { # name, output file (- for stdout), command producing the image
  name=$1; out=$2; shift 2
  if [ "$out" = - ]; then
    time -v -o /tmp/time.$name sh -c "$*" | wc -c >/tmp/size.$name
  else
    time -v -o /tmp/time.$name sh -c "$*" >&2
    wc -c <"$out" >/tmp/size.$name; rm -f "$out"
  fi
  rss=$(sed -n "s/.*Maximum resident set size (kbytes): //p" /tmp/time.$name)
  wall=$(sed -n "s/.*Elapsed (wall clock) time.*: //p" /tmp/time.$name)
  echo "RESULT $name wall=$(echo $wall | tr -d " ") bytes=$(cat /tmp/size.$name) rss_kb=$rss"
}
measure agent - "airf-agent memory --source kcore --to - --no-progress 2>/tmp/agent.json"
# avml writes a local file by design (it refuses a pipe): an ext4 disk, as on a real host.
mount -t ext4 /dev/vda /mnt
measure avml /mnt/avml.lime "avml acquire --compress --source /proc/kcore /mnt/avml.lime"
# The hash limit: busybox sha256sum of a 256 MiB tmpfs file (the agent hashes every byte; avml
# and LiME do not hash at all). Under TCG the guest CPU has no SHA-NI, so this bounds the agent.
dd if=/dev/zero of=/tmp/h bs=1M count=256 2>/dev/null
time -v -o /tmp/time.sha sha256sum /tmp/h >/dev/null
rm -f /tmp/h
echo "SHA256_256MIB $(sed -n "s/.*Elapsed (wall clock) time.*: //p" /tmp/time.sha | tr -d " ")"
# timeout=0 as the agent loads it: with LiME'"'"'s default (1000 ms) a slow reader makes it skip
# ranges, and a baseline that zero-fills would look faster than it is.
(trap "" PIPE; exec insmod /root/lime.ko "path=tcp:4444 localhostonly=1 format=lime timeout=0") &
until grep -q "0100007F:115C 00000000:0000 0A" /proc/net/tcp; do sleep 0.1; done
measure lime - "nc 127.0.0.1 4444"
wait; rmmod lime
echo "AGENT_RSS $(sed -n "s/.*\"peak_rss_bytes\": *\([0-9]*\).*/\1/p" /tmp/agent.json | head -1)"
'
disk=$(mktemp /tmp/airf-bench-avml.XXXXXX)
trap 'rm -f "$disk"' EXIT
truncate -s 8G "$disk" && mkfs.ext4 -q -F "$disk"
out=$(tests/vm/run.sh --mem "$mem" --smp 2 --timeout 1800 --disk "$disk" --module ext4 \
  --file "$agent:/usr/bin/airf-agent" --file "$avml:/usr/bin/avml" --file "$lime:/root/lime.ko" \
  --env AWS_EC2_METADATA_DISABLED=true -- "$guest_script")
echo "$out" >&2
ram=$(echo "$out" | sed -n 's/^RAM //p')
to_secs() { awk '{ gsub(/[hm:]/, " "); gsub(/s/, ""); s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }'; }
rows=$(echo "$out" | sed -n 's/^RESULT //p' | while read -r name wall bytes rss; do
  wall=${wall#wall=}; bytes=${bytes#bytes=}; rss=${rss#rss_kb=}
  # busybox prints "0m 17.79s" (or "1h 2m 3s"); GNU time prints m:ss.ss or h:mm:ss
  secs=$(echo "$wall" | to_secs)
  echo "$name $secs $bytes $rss"
done)
[ "$(echo "$rows" | wc -l)" -eq 3 ] || { echo "memory.sh: expected 3 results, got: $rows" >&2; exit 1; }
sha_spg=$(echo "$out" | sed -n 's/^SHA256_256MIB //p' | to_secs | awk '{ print $1 * 4 }')
echo
echo "System RAM in the guest: $ram bytes"
printf '%-6s %10s %10s %14s %12s\n' tool seconds s/GiB output_bytes peak_rss_MB
echo "$rows" | awk -v ram="$ram" '{ printf "%-6s %10.1f %10.1f %14d %12.1f\n", $1, $2, $2 / (ram / 2^30), $3, $4 / 4 / 1024 }'
echo "agent's own peak RSS (manifest): $(echo "$out" | sed -n 's/^AGENT_RSS //p' | awk '{ printf "%.1f MB", $1 / 2^20 }')"
echo "hash limit in the guest (busybox sha256sum, no SHA-NI under TCG): $sha_spg s/GiB"
echo "$rows" | awk -v sha="$sha_spg" -v ram="$ram" '
  { t[$1] = $2; b[$1] = $3 }
  END {
    if (b["avml"] == 0 || b["lime"] < 1000) { print "memory.sh: avml or LiME produced nothing" > "/dev/stderr"; exit 1 }
    printf "agent/avml time %.2f (target <= 1), agent/avml size %.2f (target <= 1), agent/lime-raw time %.2f, agent s/GiB vs the hash limit %.2f\n",
      t["agent"] / t["avml"], b["agent"] / b["avml"], t["agent"] / t["lime"], (t["agent"] / (ram / 2^30)) / sha
  }'
