#!/usr/bin/env bash
# Prepare the cached artefacts for the airf VM test harness (tests/vm/run.sh)
# for one Debian 12 kernel series:
#   * installs host packages (qemu-system-x86, busybox-static, cpio, kmod, socat)
#   * downloads the newest kernel of the series in apt that also has
#     linux-headers (same version), extracts vmlinuz + modules:
#       6.1   linux-image-6.1.0-<abi>-amd64[-unsigned]       (Debian 12's own)
#       6.12  linux-image-6.12.<n>+deb12-amd64[-unsigned]    (bookworm-security)
#   * asserts CONFIG_PROC_KCORE=y (the agent reads /proc/kcore in the guest),
#     CONFIG_DEBUG_INFO_BTF=y (/sys/kernel/btf/vmlinux: Volatility's symbol
#     tables are built from it) and CONFIG_KALLSYMS=y
#   * builds a base initramfs (busybox-static + virtio modules)
#   * builds lime.ko for that kernel via vendor-lime/build.sh
#
# Everything lives under $AIRF_CACHE/vm (default /opt/airf-cache/vm); a second
# run only verifies the cache and takes about a second.
#
# Environment:
#   AIRF_CACHE                 cache root (default /opt/airf-cache)
#   AIRF_VM_SERIES             6.1 (default) or 6.12
#   AIRF_VM_KERNEL_RELEASE     use this release (e.g. 6.1.0-57-amd64 or
#                              6.12.118+deb12-amd64) instead of the cached /
#                              newest one; its series is implied
#   AIRF_VM_REFRESH=1          re-pick the newest kernel even if one is cached
#
# Pointers (the last release prepared for each series):
#   vm/kernel-release-<series>, vm/current-<series> -> <release>
#   vm/kernel-release, vm/current                   the same for 6.1 (older callers)
#
# On success prints (stdout) shell-style lines:
#   AIRF_VM_SERIES=6.1
#   AIRF_VM_KERNEL_RELEASE=6.1.0-57-amd64
#   AIRF_VM_DIR=/opt/airf-cache/vm/6.1.0-57-amd64
#   AIRF_VM_LIME_KO=/opt/airf-cache/vm/6.1.0-57-amd64/lime.ko
set -euo pipefail

# Bump when the layout of the per-release cache changes.
PREPARE_VERSION=1
# Modules (plus their dependencies) that every guest loads, in this order.
BASE_MODULES=(virtio_pci virtio_net virtio_blk virtio_console)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache_root=${AIRF_CACHE:-/opt/airf-cache}
vm=$cache_root/vm

die() { echo "tests/vm/prepare.sh: error: $*" >&2; exit 1; }
log() { echo "tests/vm/prepare.sh: $*" >&2; }

[[ $(id -u) -eq 0 ]] || die "must run as root (uses apt-get)"
mkdir -p "$vm/debs" || die "cannot create $vm"
# serialise concurrent callers (parallel tests calling run.sh on a cold cache)
exec 9>"$vm/.lock"
flock -w 1800 9 || die "timed out waiting for $vm/.lock"

# ---- host packages ---------------------------------------------------------
apt_updated=0
apt_update_once() {
  ((apt_updated)) && return 0
  apt_updated=1
  log "apt-get update"
  apt-get update >"$vm/apt-update.log" 2>&1 || { tail -n 20 "$vm/apt-update.log" >&2; die "apt-get update failed"; }
}
apt_install() {
  log "apt-get install $*"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >"$vm/apt.log" 2>&1; then
    apt_update_once   # stale or missing package lists on a fresh machine
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >"$vm/apt.log" 2>&1 \
      || { tail -n 20 "$vm/apt.log" >&2; die "apt-get install $* failed (see $vm/apt.log)"; }
  fi
}
pkg_ok() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
need=()
for p in qemu-system-x86 busybox-static cpio kmod socat; do pkg_ok "$p" || need+=("$p"); done
((${#need[@]} == 0)) || apt_install "${need[@]}"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing after install"
command -v socat >/dev/null || die "socat missing after install"
[[ -x /bin/busybox ]] || die "/bin/busybox missing (busybox-static)"

# ---- pick the kernel release -------------------------------------------------
# series -> the release names of its amd64 flavour
declare -A release_re=(
  [6.1]='^6\.1\.0-[0-9]+-amd64$'
  [6.12]='^6\.12\.[0-9]+\+deb12-amd64$'
)
series_of() { local s; for s in "${!release_re[@]}"; do [[ $1 =~ ${release_re[$s]} ]] && { echo "$s"; return 0; }; done; return 1; }
candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}'; }
# image_pkg RELEASE: the image package to download (-unsigned first: SeaBIOS needs no signature)
image_pkg() {
  local p
  for p in "linux-image-$1-unsigned" "linux-image-$1"; do
    local v; v=$(candidate "$p")
    [[ -n $v && $v != "(none)" ]] && { echo "$p $v"; return 0; }
  done
  return 1
}
# pick_newest SERIES: the newest release whose image and headers apt has in the same version
pick_newest() {
  local re=${release_re[$1]} rel h img
  # the prefix "linux-image-6.1." does not match 6.12 names; the pattern drops other flavours
  for rel in $(apt-cache pkgnames "linux-image-$1." 2>/dev/null \
                 | sed -nE 's/^linux-image-(.*-amd64)(-unsigned)?$/\1/p' \
                 | grep -E "$re" | sort -u | sort -rV); do
    h=$(candidate "linux-headers-$rel")
    [[ -n $h && $h != "(none)" ]] || continue
    img=$(image_pkg "$rel") || continue
    [[ ${img#* } == "$h" ]] || continue
    echo "$rel"; return 0
  done
  return 1
}

series=${AIRF_VM_SERIES:-}
release=${AIRF_VM_KERNEL_RELEASE:-}
if [[ -n $release ]]; then
  rs=$(series_of "$release") \
    || die "unsupported kernel release '$release' (expected 6.1.0-N-amd64 or 6.12.N+deb12-amd64)"
  [[ -z $series || $series == "$rs" ]] || die "AIRF_VM_KERNEL_RELEASE=$release is not in AIRF_VM_SERIES=$series"
  series=$rs
fi
series=${series:-6.1}
[[ -n ${release_re[$series]:-} ]] || die "unknown AIRF_VM_SERIES '$series' (want 6.1 or 6.12)"
pointer=$vm/kernel-release-$series
[[ -s $pointer || $series != 6.1 ]] || pointer=$vm/kernel-release   # caches from before the series
if [[ -z $release && ${AIRF_VM_REFRESH:-0} != 1 && -s $pointer ]]; then
  release=$(<"$pointer")
fi
if [[ -z $release ]]; then
  release=$(pick_newest "$series") || { apt_update_once; release=$(pick_newest "$series"); } \
    || die "no Debian 12 $series kernel (linux-image + linux-headers of one version) found in apt (run 'apt-get update'; the 6.12 series is in bookworm-security)"
  log "picked newest $series kernel in apt: $release"
fi
[[ $release =~ ${release_re[$series]} ]] || die "cached release '$release' in $pointer is not a $series kernel"

rdir=$vm/$release
stamp=$rdir/.prepared
stamp_want="v$PREPARE_VERSION ${BASE_MODULES[*]}"

if [[ -f $stamp && $(<"$stamp") == "$stamp_want" && -s $rdir/vmlinuz && -s $rdir/base.cpio ]]; then
  log "cached kernel $release in $rdir"
else
  rm -rf "$rdir"; mkdir -p "$rdir"
  # ---- download the kernel package ----------------------------------------
  img=$(image_pkg "$release") \
    || die "neither linux-image-$release-unsigned nor linux-image-$release is available in apt"
  read -r pkg ver <<<"$img"
  deb=$(ls "$vm/debs/${pkg}_${ver//:/%3a}_amd64.deb" 2>/dev/null || true)
  if [[ -z $deb ]]; then
    log "apt-get download $pkg=$ver"
    tmpd=$(mktemp -d "$vm/debs/dl.XXXXXX"); chmod 0777 "$tmpd"
    (cd "$tmpd" && apt-get download "$pkg=$ver") >"$vm/apt.log" 2>&1 \
      || { rm -rf "$tmpd"; tail -n 20 "$vm/apt.log" >&2; die "apt-get download $pkg=$ver failed"; }
    mv "$tmpd"/*.deb "$vm/debs/"; rm -rf "$tmpd"
    deb=$(ls "$vm/debs/${pkg}_${ver//:/%3a}_amd64.deb")
  fi
  log "extracting $(basename "$deb")"
  xdir=$(mktemp -d "$vm/x.XXXXXX")
  dpkg-deb -x "$deb" "$xdir" || { rm -rf "$xdir"; die "cannot extract $deb"; }
  [[ -f $xdir/boot/vmlinuz-$release && -f $xdir/boot/config-$release && -d $xdir/lib/modules/$release ]] \
    || { rm -rf "$xdir"; die "$deb does not contain boot/vmlinuz-$release, config and modules"; }
  cp "$xdir/boot/vmlinuz-$release" "$rdir/vmlinuz"
  cp "$xdir/boot/config-$release" "$rdir/config"
  mkdir -p "$rdir/modroot/lib/modules"
  mv "$xdir/lib/modules/$release" "$rdir/modroot/lib/modules/"
  rm -rf "$xdir"
  depmod -b "$rdir/modroot" "$release" || die "depmod failed for $release"
  echo "$pkg=$ver" >"$rdir/package"

  # ---- base initramfs: busybox + base modules --------------------------------
  log "building base initramfs"
  broot=$(mktemp -d "$vm/broot.XXXXXX")
  mkdir -p "$broot"/{bin,sbin,usr/bin,usr/sbin,etc/airf,proc,sys,dev,tmp,root,run,mnt,lib/modules/"$release"}
  cp /bin/busybox "$broot/bin/busybox"
  : >"$broot/etc/airf/modules.load"
  for m in "${BASE_MODULES[@]}"; do
    modprobe -d "$rdir/modroot" -S "$release" --show-depends "$m" >"$vm/deps.tmp" \
      || die "module $m (or a dependency) not found in $release"
    while read -r kind path _; do
      [[ $kind == insmod ]] || continue            # 'builtin ...' lines need nothing
      rel_path=${path#"$rdir/modroot"}
      grep -qxF "$rel_path" "$broot/etc/airf/modules.load" && continue
      mkdir -p "$broot$(dirname "$rel_path")"
      cp "$path" "$broot$rel_path"
      echo "$rel_path" >>"$broot/etc/airf/modules.load"
    done <"$vm/deps.tmp"
  done
  rm -f "$vm/deps.tmp"
  echo "$release" >"$broot/etc/airf/kernel-release"
  (cd "$broot" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible >"$rdir/base.cpio") \
    || die "cpio failed"
  cp "$broot/etc/airf/modules.load" "$rdir/modules.load"
  rm -rf "$broot"
  echo "$stamp_want" >"$stamp"
fi

# ---- checks on the kernel config ----------------------------------------------
for want in 'CONFIG_PROC_KCORE=y:/proc/kcore would not exist' \
            'CONFIG_DEBUG_INFO_BTF=y:no /sys/kernel/btf/vmlinux to build symbol tables from' \
            'CONFIG_KALLSYMS=y:no /proc/kallsyms' \
            'CONFIG_DEVTMPFS=y:the guest init mounts devtmpfs'; do
  grep -qx "${want%%:*}" "$rdir/config" || die "$release lacks ${want%%:*}: ${want#*:}"
done

# ---- lime.ko -------------------------------------------------------------------
"$repo/vendor-lime/build.sh" "$release" "$rdir" >/dev/null || die "vendor-lime/build.sh $release failed"
cp -f "$rdir/lime-$release.ko" "$rdir/lime.ko.tmp" && mv -f "$rdir/lime.ko.tmp" "$rdir/lime.ko"

# pointers: per series, and the unsuffixed ones for 6.1 (what older callers read)
suffixes=("-$series")
[[ $series != 6.1 ]] || suffixes+=("")
for sfx in "${suffixes[@]}"; do
  echo "$release" >"$vm/kernel-release$sfx.tmp" && mv -f "$vm/kernel-release$sfx.tmp" "$vm/kernel-release$sfx"
  ln -sfn "$release" "$vm/current$sfx.tmp" && mv -fT "$vm/current$sfx.tmp" "$vm/current$sfx"
done
log "ready: $series kernel $release ($(<"$rdir/package")), lime $rdir/lime.ko"
echo "AIRF_VM_SERIES=$series"
echo "AIRF_VM_KERNEL_RELEASE=$release"
echo "AIRF_VM_DIR=$rdir"
echo "AIRF_VM_LIME_KO=$rdir/lime.ko"
