#!/usr/bin/env bash
# Self-test of the VM harness, on each Debian 12 kernel series (default: 6.1 and
# 6.12; `selftest.sh 6.12` tests one). Per series it boots the guest five times
# and checks
#   (1) uname -r == prepared kernel release
#   (2) /proc/kcore exists and starts with an ELF header
#   (3) /proc/iomem lists "System RAM"
#   (4) --forward: guest wget via 10.0.2.100 reaches a host HTTP server on
#       127.0.0.1 (twice: one host connection per guest connection), and the
#       host's loopback is NOT reachable any other way (restrict=on)
#   (5) --disk with blkdebug-eio: the injected sector fails with EIO, others read fine
#   (6) lime.ko loads, streams the LiME magic over tcp:4444, and rmmod works;
#       a full dump has the expected size
#   (7) /sys/kernel/btf/vmlinux exists and starts with the BTF magic (9f eb);
#       /proc/kallsyms shows root real addresses
#   (8) KASLR: without --kaslr, _text is ffffffff81000000 and the VMCOREINFO note
#       in /proc/kcore says KERNELOFFSET=0; with --kaslr, KERNELOFFSET is non-zero
#       and equals _text - ffffffff81000000
# plus harness plumbing (exit code, stderr, --env, --file).
# Prints PASS/FAIL per check and "selftest: N passed, M failed"; exits 1 on failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
run=$here/run.sh

series_list=("$@")
((${#series_list[@]})) || series_list=(6.1 6.12)

passed=0 failed=0
ok() { echo "PASS: [$series] $*"; passed=$((passed + 1)); }
ko() { echo "FAIL: [$series] $*"; failed=$((failed + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else ko "$name"; fi; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/airf-vm-selftest.XXXXXX")
http_pid=""
cleanup() {
  if [[ -n $http_pid ]]; then kill "$http_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
t0=$SECONDS

# boot NAME [run.sh args...] -- cmd ; boots $release, output in $tmp/$series-NAME.{out,err,rc}
boot() {
  local name=$series-$1; shift
  local t=$SECONDS rc=0
  "$run" --kernel "$release" --console-log "$tmp/$name.console" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" || rc=$?
  echo "$rc" >"$tmp/$name.rc"
  echo "boot '$name': exit $rc in $((SECONDS - t))s"
  if [[ ${AIRF_SELFTEST_VERBOSE:-0} == 1 ]]; then
    sed "s/^/  [$name stdout] /" "$tmp/$name.out"; sed "s/^/  [$name stderr] /" "$tmp/$name.err"
  fi
}
out() { echo "$tmp/$series-$1.out"; }                          # out BOOT: its stdout file
has() { grep -qE -- "$2" "$(out "$1")"; }                      # has BOOT REGEX
val() { sed -n "s/^$2=//p" "$(out "$1")" | head -n1; }         # val BOOT KEY

# ---- shared by all series: a host HTTP server and an O_DIRECT reader ------------
command -v python3 >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 >/dev/null
mkdir -p "$tmp/www"
token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$token" >"$tmp/www/payload.txt"
(cd "$tmp/www" && exec python3 -u -m http.server 0 --bind 127.0.0.1) >"$tmp/http.log" 2>&1 &
http_pid=$!
port=""
for _ in $(seq 100); do
  port=$(sed -n 's/.*127\.0\.0\.1 port \([0-9]*\).*/\1/p' "$tmp/http.log" | head -n1)
  [[ -n $port ]] && break; sleep 0.1
done
[[ -n $port ]] && echo "host http server on 127.0.0.1:$port"

# Two readers in the guest: busybox dd (buffered: the guest reads 4 KiB pages, so
# sectors 2048..2055 share the failing page) and a tiny static O_DIRECT reader
# (512-byte aligned preads: exactly sector 2048 fails).
cc=$(command -v gcc || command -v gcc-12 || true)
if [[ -z $cc ]]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev >/dev/null
  cc=gcc
fi
cat >"$tmp/sectread.c" <<'EOF_C'
/* sectread DEV SECTOR: O_DIRECT read of one 512-byte sector; prints ok/errno name */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int fd = open(argv[1], O_RDONLY | O_DIRECT);
    if (fd < 0) { perror("open"); return 2; }
    void *buf;
    if (posix_memalign(&buf, 4096, 512)) return 2;
    ssize_t n = pread(fd, buf, 512, (off_t)strtoll(argv[2], 0, 10) * 512);
    if (n == 512) { puts("ok"); return 0; }
    printf("%s\n", n < 0 ? strerror(errno) : "short read");
    return 1;
}
EOF_C
if ! "$cc" -static -O2 -o "$tmp/sectread" "$tmp/sectread.c" 2>"$tmp/cc.log"; then
  # gcc-12 comes with the kernel headers, but static glibc (libc6-dev) may not
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev >/dev/null
  gcc -static -O2 -o "$tmp/sectread" "$tmp/sectread.c"
fi
head -c $((4 * 1024 * 1024)) /dev/urandom >"$tmp/disk.img"
good_sum=$(dd if="$tmp/disk.img" bs=512 skip=2047 count=1 2>/dev/null | sha256sum | cut -d' ' -f1)
echo 'file-from-host' >"$tmp/hello.txt"

selftest_series() {
  local t1=$SECONDS
  if ! AIRF_VM_SERIES=$series "$here/prepare.sh" >"$tmp/$series-prepare.env"; then
    ko "prepare.sh (AIRF_VM_SERIES=$series)"; return 0
  fi
  release=$(sed -n 's/^AIRF_VM_KERNEL_RELEASE=//p' "$tmp/$series-prepare.env")
  lime_ko=$(sed -n 's/^AIRF_VM_LIME_KO=//p' "$tmp/$series-prepare.env")
  echo "== series $series: kernel release $release (prepare.sh took $((SECONDS - t1))s)"

  # ---- boot 1: basics, BTF, kallsyms, KASLR off ------------------------------------
  # The VMCOREINFO note sits in the first pages of /proc/kcore, before any memory segment.
  # shellcheck disable=SC2016  # the guest shell expands the single-quoted command
  boot basic --env "AIRF_SELFTEST=it's a \"quoted\" value" --file "$tmp/hello.txt:/opt/airf/hello.txt" -- '
echo "uname=$(uname -r)"
[ -e /proc/kcore ] && echo kcore=exists
echo "kcore_head=$(head -c 64 /proc/kcore | od -A x -t x1 | head -n1)"
echo "iomem_ram=$(grep -c "System RAM" /proc/iomem)"
echo "btf_head=$(head -c 4 /sys/kernel/btf/vmlinux | od -A n -t x1)"
echo "btf_size=$(wc -c </sys/kernel/btf/vmlinux)"
echo "kallsyms_nonzero=$(grep -vc "^0000000000000000 " /proc/kallsyms)"
echo "text=$(sed -n "s/^\([0-9a-f]*\) T _text$/\1/p" /proc/kallsyms)"
echo "koff=$(head -c 65536 /proc/kcore | grep -a -o "KERNELOFFSET=[0-9a-f]*" | cut -d= -f2)"
echo "env=$AIRF_SELFTEST"
echo "file=$(cat /opt/airf/hello.txt)"
echo to-stderr >&2
exit 7'
  check "(1) uname -r in guest is $release" [ "$(val basic uname)" = "$release" ]
  check "(2) /proc/kcore exists" has basic '^kcore=exists$'
  check "(2) /proc/kcore starts with ELF magic (7f 45 4c 46)" has basic '^kcore_head=0+ 7f 45 4c 46 02 01 01'
  check "(3) /proc/iomem has System RAM" [ "$(val basic iomem_ram)" -ge 1 ] 2>/dev/null
  check "(7) /sys/kernel/btf/vmlinux starts with BTF magic 9f eb ($(val basic btf_size) bytes)" \
    has basic '^btf_head= 9f eb 01'
  check "(7) /proc/kallsyms has non-zero addresses as root ($(val basic kallsyms_nonzero))" \
    [ "$(val basic kallsyms_nonzero)" -gt 1000 ] 2>/dev/null
  check "(8) nokaslr: _text is ffffffff81000000" [ "$(val basic text)" = ffffffff81000000 ]
  check "(8) nokaslr: KERNELOFFSET=0 in the kcore VMCOREINFO" [ "$(val basic koff)" = 0 ]
  check "harness: guest exit code 7 propagated" [ "$(<"$tmp/$series-basic.rc")" = 7 ]
  check "harness: guest stderr goes to stderr" grep -qx 'to-stderr' "$tmp/$series-basic.err"
  check "harness: --env value with quotes" [ "$(val basic env)" = "it's a \"quoted\" value" ]
  check "harness: --file copied into guest" [ "$(val basic file)" = "file-from-host" ]

  # ---- boot 2: KASLR on ----------------------------------------------------------
  # shellcheck disable=SC2016  # the guest shell expands the single-quoted command
  boot kaslr --kaslr -- '
echo "text=$(sed -n "s/^\([0-9a-f]*\) T _text$/\1/p" /proc/kallsyms)"
echo "koff=$(head -c 65536 /proc/kcore | grep -a -o "KERNELOFFSET=[0-9a-f]*" | cut -d= -f2)"'
  local text koff
  text=$(val kaslr text) koff=$(val kaslr koff)
  check "(8) --kaslr: KERNELOFFSET=$koff is non-zero" bash -c "[[ '$koff' =~ ^[0-9a-f]+\$ && '$koff' != 0 ]]"
  check "(8) --kaslr: _text $text == ffffffff81000000 + KERNELOFFSET" \
    bash -c "[[ '$text' =~ ^[0-9a-f]{16}\$ && '$koff' =~ ^[0-9a-f]+\$ ]] && (( 16#$text - 16#ffffffff81000000 == 16#$koff ))"

  # ---- boot 3: networking ----------------------------------------------------
  if [[ -z $port ]]; then
    ko "(4) host http server did not start: $(cat "$tmp/http.log")"
  else
    boot net --forward "9000:$port" -- "
echo \"get1=\$(wget -q -O - http://10.0.2.100:9000/payload.txt)\"
echo \"get2=\$(wget -q -O - http://10.0.2.100:9000/payload.txt)\"
if timeout 10 wget -q -O /dev/null http://10.0.2.2:$port/payload.txt; then echo gw=reachable; else echo gw=blocked; fi
"
    check "(4) guest wget via --forward 9000:$port gets the host file" [ "$(val net get1)" = "$token" ]
    check "(4) second connection through the same forward works" [ "$(val net get2)" = "$token" ]
    check "(4) host loopback not reachable via gateway 10.0.2.2 (restrict=on)" [ "$(val net gw)" = blocked ]
  fi

  # ---- boot 4: blkdebug disk --------------------------------------------------
  # shellcheck disable=SC2016  # the guest shell expands the single-quoted command
  boot disk --disk "$tmp/disk.img,blkdebug-eio=2048" --file "$tmp/sectread:/bin/sectread" -- '
for s in 2047 2048 2049; do echo "direct$s=$(sectread /dev/vda $s)"; done
if dd if=/dev/vda of=/dev/null bs=512 skip=2048 count=1 2>/tmp/e; then echo bad=read-ok; else echo "bad=$(head -n1 /tmp/e)"; fi
echo "prev=$(dd if=/dev/vda bs=512 skip=2047 count=1 2>/dev/null | sha256sum | cut -d" " -f1)"
if dd if=/dev/vda of=/dev/null bs=512 count=2048 2>/dev/null; then echo before=ok; else echo before=fail; fi
if dd if=/dev/vda of=/dev/null bs=512 skip=2056 2>/dev/null; then echo after=ok; else echo after=fail; fi
if dd if=/dev/vda of=/dev/null bs=4096 2>/dev/null; then echo whole=ok; else echo whole=fail; fi
'
  local d; d=$(out disk)
  check "(5) reading injected sector 2048 fails with I/O error (dd)" has disk '^bad=.*Input/output error'
  check "(5) O_DIRECT: sector 2048 -> EIO, sectors 2047 and 2049 read fine" \
    bash -c "grep -qx direct2047=ok '$d' && grep -qx 'direct2048=Input/output error' '$d' && grep -qx direct2049=ok '$d'"
  check "(5) sector 2047 reads correct data" [ "$(val disk prev)" = "$good_sum" ]
  check "(5) sectors 0-2047 and 2056-8191 read fine (dd, buffered)" bash -c "grep -qx before=ok '$d' && grep -qx after=ok '$d'"
  check "(5) whole-disk read fails" has disk '^whole=fail$'

  # ---- boot 5: LiME -------------------------------------------------------------
  # Guest: insmod blocks until the dump is sent, so it runs in the background.
  # LiME's sends raise SIGPIPE in the insmod process when the reader hangs up
  # early (the module still loads), so the first insmod ignores SIGPIPE.
  # 127.0.0.1:4444 in /proc/net/tcp is 0100007F:115C, state 0A = LISTEN.
  # shellcheck disable=SC2016  # the guest shell expands the single-quoted command
  boot lime --mem 128M --file "$lime_ko:/root/lime.ko" -- '
wait_listen() { i=0; while ! grep -q "0100007F:115C 00000000:0000 0A" /proc/net/tcp; do
  i=$((i+1)); [ $i -gt 300 ] && { echo "lime never listened"; return 1; }; sleep 0.1; done; }
(trap "" PIPE; exec insmod /root/lime.ko "path=tcp:4444 localhostonly=1 format=lime") & ip=$!
wait_listen
echo "magic=$(nc 127.0.0.1 4444 | head -c 32 | od -A x -t x1 | head -n1)"
wait $ip; echo "insmod1=$?"
echo "loaded=$(grep -c "^lime " /proc/modules)"
rmmod lime; echo "rmmod1=$?"
expected=0
for r in $(grep "^[0-9a-f].* : System RAM$" /proc/iomem | cut -d" " -f1); do
  s=${r%-*}; e=${r#*-}; expected=$((expected + 0x$e - 0x$s + 1 + 32)); done
echo "expected=$expected"
insmod /root/lime.ko "path=tcp:4444 localhostonly=1 format=lime" & ip=$!
wait_listen
t=$(date +%s); echo "dumpsize=$(nc 127.0.0.1 4444 | wc -c)"; echo "dumpsecs=$(( $(date +%s) - t ))"
wait $ip; echo "insmod2=$?"
rmmod lime; echo "rmmod2=$?"
'
  local l exp got; l=$(out lime)
  check "(6) insmod lime.ko path=tcp:4444 succeeded" [ "$(val lime insmod1)" = 0 ]
  check "(6) LiME stream starts with magic 45 4d 69 4c" has lime '^magic=0+ 45 4d 69 4c 01 00 00 00'
  check "(6) rmmod lime" bash -c "[ \"\$(sed -n 's/^loaded=//p' '$l')\" = 1 ] && grep -qx rmmod1=0 '$l'"
  exp=$(val lime expected); got=$(val lime dumpsize)
  check "(6) full LiME dump size $got == System RAM + headers $exp ($(val lime dumpsecs)s)" \
    bash -c "[ -n '$got' ] && [ '$got' = '$exp' ] && grep -qx insmod2=0 '$l' && grep -qx rmmod2=0 '$l'"
  echo "== series $series took $((SECONDS - t1))s"
}

for series in "${series_list[@]}"; do
  release="" lime_ko=""
  selftest_series
done
kill "$http_pid" 2>/dev/null || true; http_pid=""

echo "total time $((SECONDS - t0))s"
if ((failed)); then
  for f in "$tmp"/*.out; do
    [[ -e $f ]] || continue
    echo "---- $(basename "$f") ----"; cat "$f"; echo "---- stderr ----"; cat "${f%.out}.err"
  done
fi
echo "selftest: $passed passed, $failed failed"
((failed == 0))
