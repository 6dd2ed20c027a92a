#!/usr/bin/env bash
# Boot a throw-away Debian 12 kernel + busybox initramfs under QEMU, run one
# shell command in the guest, and hand back its stdout, stderr and exit code.
#
# usage: tests/vm/run.sh [options] -- <guest shell command...>
#
# options:
#   --kernel REL|SERIES     boot this kernel: a release (6.1.0-57-amd64,
#                           6.12.118+deb12-amd64) or a series (6.1, 6.12: the
#                           release prepare.sh last prepared for it); default
#                           $AIRF_VM_KERNEL_RELEASE, else 6.1
#   --mem SIZE              guest RAM (default 512M)
#   --smp N                 guest CPUs (default 1)
#   --timeout SECONDS       kill the guest after this long (default 300)
#   --file HOST:GUEST       copy HOST (file or dir) to absolute GUEST path in the
#                           initramfs (mode kept); repeatable
#   --env K=V               export K=V for the guest command; repeatable
#   --forward GPORT:HPORT   guest tcp 10.0.2.100:GPORT -> host 127.0.0.1:HPORT;
#                           repeatable (one fresh host connection per guest
#                           connection)
#   --disk PATH[,OPT...]    attach a raw virtio disk (vda, vdb, ... in order);
#                           OPT: ro | blkdebug-eio=SECTOR[:COUNT] (repeatable):
#                           guest reads touching those 512-byte sectors get EIO
#   --module NAME           also load kernel module NAME (+deps) before the command
#   --append ARGS           extra kernel command line arguments
#   --kaslr                 do not pass nokaslr (default: nokaslr, for reproducibility)
#   --console-log FILE      save the guest serial console to FILE
#   --keep                  keep the work dir (printed on stderr)
#   -v | --verbose          stream the console to stderr, no 'quiet'
#
# exit status: the guest command's exit code; 124 if the guest timed out,
# 125 for harness errors (boot failure, no exit code reported, bad options).
# Environment: AIRF_CACHE (default /opt/airf-cache), AIRF_VM_ACCEL=tcg|kvm
# (default tcg), AIRF_VM_KERNEL_RELEASE (same as --kernel), AIRF_VM_DEBUG=1
# (same as --verbose).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
vm=${AIRF_CACHE:-/opt/airf-cache}/vm

die() { echo "tests/vm/run.sh: error: $*" >&2; exit 125; }
info() { if [[ $verbose == 1 ]]; then echo "tests/vm/run.sh: $*" >&2; fi; }

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 125; }

kernel=${AIRF_VM_KERNEL_RELEASE:-6.1} mem=512M smp=1 timeout_s=300 verbose=${AIRF_VM_DEBUG:-0} keep=0 kaslr=0 append="" console_out=""
files=() envs=() forwards=() disks=() modules=()
while (($#)); do
  case $1 in
    --kernel) kernel=${2:?}; shift 2 ;;
    --mem) mem=${2:?}; shift 2 ;;
    --smp) smp=${2:?}; shift 2 ;;
    --timeout) timeout_s=${2:?}; shift 2 ;;
    --file) files+=("${2:?}"); shift 2 ;;
    --env) envs+=("${2:?}"); shift 2 ;;
    --forward) forwards+=("${2:?}"); shift 2 ;;
    --disk) disks+=("${2:?}"); shift 2 ;;
    --module) modules+=("${2:?}"); shift 2 ;;
    --append) append+=" ${2:?}"; shift 2 ;;
    --kaslr) kaslr=1; shift ;;
    --console-log) console_out=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    -v|--verbose) verbose=1; shift ;;
    -h|--help) usage ;;
    --) shift; break ;;
    *) die "unknown option '$1' (see --help; the guest command goes after --)" ;;
  esac
done
(($#)) || die "no guest command given (usage: run.sh [options] -- <command>)"
guest_cmd="$*"
[[ $timeout_s =~ ^[0-9]+$ && $timeout_s -gt 0 ]] || die "--timeout must be a positive integer"
[[ $smp =~ ^[0-9]+$ ]] || die "--smp must be an integer"
[[ $mem =~ ^[0-9]+[MG]?$ ]] || die "--mem must look like 512M or 1G"

# ---- cached kernel / initramfs -----------------------------------------------
# A series names the release prepare.sh last prepared for it (vm/kernel-release-<series>;
# for 6.1 also vm/kernel-release, written before there were series).
release="" prep_env=()
case $kernel in
  6.1|6.12)
    prep_env=("AIRF_VM_SERIES=$kernel")
    pointer=$vm/kernel-release-$kernel
    [[ -s $pointer || $kernel != 6.1 ]] || pointer=$vm/kernel-release
    [[ ! -s $pointer ]] || release=$(<"$pointer") ;;
  *[!A-Za-z0-9.+_-]*|"") die "bad --kernel '$kernel' (want a release like 6.1.0-57-amd64 or a series: 6.1, 6.12)" ;;
  *) release=$kernel; prep_env=("AIRF_VM_KERNEL_RELEASE=$kernel") ;;
esac
if [[ -z $release || ! -f $vm/$release/.prepared || ! -s $vm/$release/lime.ko ]] \
   || ! command -v qemu-system-x86_64 >/dev/null || ! command -v socat >/dev/null \
   || ! command -v cpio >/dev/null; then
  info "running prepare.sh for kernel $kernel"
  prep_out=$(env "${prep_env[@]}" "$here/prepare.sh") || die "prepare.sh ${prep_env[*]} failed"
  release=$(sed -n 's/^AIRF_VM_KERNEL_RELEASE=//p' <<<"$prep_out")
  [[ -n $release ]] || die "prepare.sh printed no AIRF_VM_KERNEL_RELEASE"
fi
rdir=$vm/$release
[[ -s $rdir/vmlinuz && -s $rdir/base.cpio ]] || die "cache for $release incomplete; run tests/vm/prepare.sh"

# ---- work dir -------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/airf-vm.XXXXXX")
qpid="" tailpid=""
# shellcheck disable=SC2317  # called by the EXIT trap (shellcheck#2542: the final `exit` hides that)
cleanup() {
  local rc=$?
  # qpid is `timeout`, which forwards TERM to qemu
  if [[ -n $qpid ]]; then kill -TERM "$qpid" 2>/dev/null || true; wait "$qpid" 2>/dev/null || true; fi
  if [[ -n $tailpid ]]; then kill "$tailpid" 2>/dev/null || true; fi
  if [[ $keep == 1 ]]; then echo "tests/vm/run.sh: work dir kept: $work" >&2; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

root=$work/root
mkdir -p "$root/etc/airf"

# guest command and environment
printf '%s\n' "$guest_cmd" >"$root/etc/airf/cmd"
: >"$root/etc/airf/env"
for kv in "${envs[@]}"; do
  k=${kv%%=*}; v=${kv#*=}
  [[ $kv == *=* && $k =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "bad --env '$kv' (want NAME=VALUE)"
  printf "export %s='%s'\n" "$k" "${v//\'/\'\\\'\'}" >>"$root/etc/airf/env"
done

# extra files
for spec in "${files[@]}"; do
  [[ $spec == *:* ]] || die "bad --file '$spec' (want HOST_PATH:GUEST_PATH)"
  hp=${spec%:*}; gp=${spec##*:}
  [[ -e $hp ]] || die "--file: host path '$hp' does not exist"
  [[ $gp == /* ]] || die "--file: guest path '$gp' must be absolute"
  mkdir -p "$root$(dirname "$gp")"
  cp -a "$hp" "$root$gp"
done

# extra modules (resolved with the depmod'ed tree of the kernel package)
: >"$root/etc/airf/modules.extra"
for m in "${modules[@]}"; do
  deps=$(modprobe -d "$rdir/modroot" -S "$release" --show-depends "$m" 2>&1) || die "--module $m: $deps"
  while read -r kind path _; do
    [[ $kind == insmod ]] || continue
    rp=${path#"$rdir/modroot"}
    grep -qxF "$rp" "$rdir/modules.load" "$root/etc/airf/modules.extra" && continue
    mkdir -p "$root$(dirname "$rp")"; cp "$path" "$root$rp"
    echo "$rp" >>"$root/etc/airf/modules.extra"
  done <<<"$deps"
done

# the init script (pid 1)
cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
[ -f /etc/airf/verbose ] || echo 1 >/proc/sys/kernel/printk   # keep printk off the console
say() { echo "AIRF-VM: $*"; }
fail() { say "init failure: $*"; echo "===AIRF-VM-END rc=125==="; poweroff -f; }
for m in $(cat /etc/airf/modules.load /etc/airf/modules.extra); do
  insmod "$m" || say "insmod $m failed"
done
hostname airf-guest
ip link set lo up
if ip link set eth0 up 2>/dev/null; then
  ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2 || say "network setup failed"
else
  say "no eth0"
fi
# virtio serial ports: 1=stdout 2=stderr 3=exit status (names set by the host)
i=0
while :; do
  [ -c /dev/vport0p1 ] && [ -c /dev/vport0p2 ] && [ -c /dev/vport0p3 ] && break
  i=$((i+1)); [ $i -gt 200 ] && fail "virtio serial ports did not appear"
  sleep 0.05
done
. /etc/airf/env
cd /
say "kernel $(uname -r) ready"
echo "===AIRF-VM-BEGIN==="
sh -c "$(cat /etc/airf/cmd)" </dev/null >/dev/vport0p1 2>/dev/vport0p2
rc=$?
echo "$rc" >/dev/vport0p3
echo "===AIRF-VM-END rc=$rc==="
sync
poweroff -f
INIT
chmod 0755 "$root/init"
[[ $verbose == 1 ]] && touch "$root/etc/airf/verbose"

(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 >"$work/run.cpio") || die "cpio failed"
cat "$rdir/base.cpio" "$work/run.cpio" >"$work/initrd"

# ---- qemu command line -------------------------------------------------------
case ${AIRF_VM_ACCEL:-tcg} in
  tcg) accel=(-accel tcg -cpu "max,la57=off") ;;
  kvm) accel=(-accel kvm -cpu host) ;;
  *) die "AIRF_VM_ACCEL must be tcg or kvm" ;;
esac

cmdline="console=ttyS0 panic=-1 oops=panic reboot=t 8250.nr_uarts=1 i8042.noaux i8042.nokbd random.trust_cpu=on"
[[ $verbose == 1 ]] || cmdline+=" quiet loglevel=1"
[[ $kaslr == 1 ]] || cmdline+=" nokaslr"
cmdline+="$append"

netdev="user,id=net0,restrict=on,ipv6=off"
for fw in "${forwards[@]}"; do
  [[ $fw =~ ^([0-9]+):([0-9]+)$ ]] || die "bad --forward '$fw' (want GUESTPORT:HOSTPORT)"
  # cmd: spawns one connector per guest connection; it only ever dials 127.0.0.1.
  netdev+=",guestfwd=tcp:10.0.2.100:${BASH_REMATCH[1]}-cmd:socat - TCP4:127.0.0.1:${BASH_REMATCH[2]}"
done

json_str() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
diskargs=()
n=0
for spec in "${disks[@]}"; do
  IFS=, read -r -a parts <<<"$spec"
  path=${parts[0]}
  [[ -f $path ]] || die "--disk: '$path' is not a file"
  path=$(realpath "$path")
  ro=false rules=""
  for opt in "${parts[@]:1}"; do
    case $opt in
      ro) ro=true ;;
      blkdebug-eio=*)
        v=${opt#blkdebug-eio=}
        [[ $v =~ ^([0-9]+)(:([0-9]+))?$ ]] || die "bad blkdebug-eio '$v' (want SECTOR[:COUNT])"
        s=${BASH_REMATCH[1]} c=${BASH_REMATCH[3]:-1}
        ((c >= 1 && c <= 4096)) || die "blkdebug-eio COUNT must be 1..4096"
        for ((k = s; k < s + c; k++)); do
          rules+=$'[inject-error]\nevent = "read_aio"\nerrno = "5"\nonce = "off"\nsector = "'"$k"$'"\n\n'
        done ;;
      *) die "unknown --disk option '$opt'" ;;
    esac
  done
  file_node="{\"driver\":\"file\",\"filename\":$(json_str "$path")}"
  if [[ -n $rules ]]; then
    printf '%s' "$rules" >"$work/blkdebug$n.conf"
    file_node="{\"driver\":\"blkdebug\",\"config\":$(json_str "$work/blkdebug$n.conf"),\"image\":$file_node}"
  fi
  diskargs+=(-blockdev "{\"driver\":\"raw\",\"node-name\":\"disk$n\",\"read-only\":$ro,\"file\":$file_node}"
             -device "virtio-blk-pci,drive=disk$n,serial=airf-disk$n,rerror=report,werror=report")
  n=$((n + 1))
done

: >"$work/console.log"; : >"$work/stdout"; : >"$work/stderr"; : >"$work/status"
# shellcheck disable=SC2054  # commas are qemu option syntax
qemu=(qemu-system-x86_64 -nodefaults -no-user-config -nographic -no-reboot -monitor none
      "${accel[@]}" -M pc -m "$mem" -smp "$smp"
      -kernel "$rdir/vmlinuz" -initrd "$work/initrd" -append "$cmdline"
      -chardev "file,id=con0,path=$work/console.log" -serial chardev:con0
      -device virtio-serial-pci,id=vser0
      -chardev "file,id=out,path=$work/stdout" -device virtserialport,bus=vser0.0,nr=1,chardev=out,name=airf.stdout
      -chardev "file,id=err,path=$work/stderr" -device virtserialport,bus=vser0.0,nr=2,chardev=err,name=airf.stderr
      -chardev "file,id=sts,path=$work/status" -device virtserialport,bus=vser0.0,nr=3,chardev=sts,name=airf.status
      -netdev "$netdev" -device virtio-net-pci,netdev=net0,romfile=
      "${diskargs[@]}")
info "kernel $release, accel ${AIRF_VM_ACCEL:-tcg}, cmdline: $cmdline"
info "qemu: ${qemu[*]}"

if [[ $verbose == 1 ]]; then
  tail -n +1 -F "$work/console.log" >&2 2>/dev/null & tailpid=$!
fi
start=$SECONDS
timeout --kill-after=10 "$timeout_s" "${qemu[@]}" </dev/null >"$work/qemu.out" 2>&1 &
qpid=$!
set +e; wait "$qpid"; qrc=$?; set -e
qpid=""
elapsed=$((SECONDS - start))
if [[ -n $tailpid ]]; then sleep 0.3; kill "$tailpid" 2>/dev/null || true; tailpid=""; fi
[[ -n $console_out ]] && cp "$work/console.log" "$console_out"

show_console() {
  echo "---- qemu output ----" >&2; tail -n 20 "$work/qemu.out" >&2
  echo "---- last 40 console lines ($work/console.log) ----" >&2
  tail -n 40 "$work/console.log" | tr -d '\r' >&2
  echo "----" >&2
}

cat "$work/stdout"
cat "$work/stderr" >&2

if [[ $qrc == 124 || $qrc == 137 ]]; then
  echo "tests/vm/run.sh: error: guest timed out after ${timeout_s}s (killed)" >&2
  show_console; exit 124
fi
rc=$(tr -dc '0-9' <"$work/status")
if [[ -z $rc ]]; then
  rc=$(tr -d '\r' <"$work/console.log" | sed -n 's/^===AIRF-VM-END rc=\([0-9]*\)===$/\1/p' | tail -n1)
fi
if [[ -z $rc ]]; then
  echo "tests/vm/run.sh: error: guest reported no exit code (qemu exit $qrc after ${elapsed}s; kernel panic or init failure?)" >&2
  show_console; exit 125
fi
if grep -q '^AIRF-VM: init failure' <(tr -d '\r' <"$work/console.log"); then
  echo "tests/vm/run.sh: error: guest init failed" >&2; show_console; exit 125
fi
info "guest command exited $rc after ${elapsed}s"
exit "$rc"
