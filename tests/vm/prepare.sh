#!/usr/bin/env bash
# Prepare the cached artefacts for the airf VM test harness (tests/vm/run.sh):
#   * installs host packages (qemu-system-x86, busybox-static, cpio, kmod, socat)
#   * downloads a Debian 12 linux-image-6.1.0-*-amd64 package (newest one in
#     apt that also has linux-headers), extracts vmlinuz + modules
#   * asserts CONFIG_PROC_KCORE=y (the agent reads /proc/kcore in the guest)
#   * builds a base initramfs (busybox-static + virtio modules)
#   * builds lime.ko for that kernel via vendor-lime/build.sh
#
# Everything lives under $AIRF_CACHE/vm (default /opt/airf-cache/vm); a second
# run only verifies the cache and takes about a second.
#
# Environment:
#   AIRF_CACHE                 cache root (default /opt/airf-cache)
#   AIRF_VM_KERNEL_RELEASE     use this release (e.g. 6.1.0-57-amd64) instead of
#                              the cached / newest one
#   AIRF_VM_REFRESH=1          re-pick the newest kernel even if one is cached
#
# On success prints (stdout) shell-style lines:
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
candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}'; }
pick_newest() {
  local rel
  # Debian 12 ABI names: linux-image-6.1.0-<abi>-amd64[-unsigned]
  for rel in $(apt-cache pkgnames linux-image-6.1.0- 2>/dev/null \
                 | sed -nE 's/^linux-image-(6\.1\.0-[0-9]+-amd64)(-unsigned)?$/\1/p' \
                 | sort -u | sort -t- -k2,2nr); do
    local h; h=$(candidate "linux-headers-$rel")
    [[ -n $h && $h != "(none)" ]] || continue
    local i; i=$(candidate "linux-image-$rel-unsigned")
    [[ -n $i && $i != "(none)" ]] || i=$(candidate "linux-image-$rel")
    [[ -n $i && $i != "(none)" ]] || continue
    echo "$rel"; return 0
  done
  return 1
}

release=${AIRF_VM_KERNEL_RELEASE:-}
if [[ -z $release && ${AIRF_VM_REFRESH:-0} != 1 && -s $vm/kernel-release ]]; then
  release=$(<"$vm/kernel-release")
fi
if [[ -z $release ]]; then
  release=$(pick_newest) || { apt_update_once; release=$(pick_newest); } || die "no linux-image-6.1.0-*-amd64 with matching linux-headers found in apt (run 'apt-get update'; Debian 12 repos needed)"
  log "picked newest kernel in apt: $release"
fi
[[ $release =~ ^6\.1\.0-[0-9]+-amd64$ ]] || die "unsupported kernel release '$release' (expected 6.1.0-N-amd64)"

rdir=$vm/$release
stamp=$rdir/.prepared
stamp_want="v$PREPARE_VERSION ${BASE_MODULES[*]}"

if [[ -f $stamp && $(<"$stamp") == "$stamp_want" && -s $rdir/vmlinuz && -s $rdir/base.cpio ]]; then
  log "cached kernel $release in $rdir"
else
  rm -rf "$rdir"; mkdir -p "$rdir"
  # ---- download the kernel package ----------------------------------------
  pkg=linux-image-$release-unsigned
  ver=$(candidate "$pkg")
  if [[ -z $ver || $ver == "(none)" ]]; then pkg=linux-image-$release; ver=$(candidate "$pkg"); fi
  [[ -n $ver && $ver != "(none)" ]] || die "neither linux-image-$release-unsigned nor linux-image-$release is available in apt"
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
grep -qx 'CONFIG_PROC_KCORE=y' "$rdir/config" || die "$release lacks CONFIG_PROC_KCORE=y: /proc/kcore would not exist"
grep -qx 'CONFIG_DEVTMPFS=y' "$rdir/config" || die "$release lacks CONFIG_DEVTMPFS=y"

# ---- lime.ko -------------------------------------------------------------------
"$repo/vendor-lime/build.sh" "$release" "$rdir" >/dev/null || die "vendor-lime/build.sh $release failed"
cp -f "$rdir/lime-$release.ko" "$rdir/lime.ko.tmp" && mv -f "$rdir/lime.ko.tmp" "$rdir/lime.ko"

echo "$release" >"$vm/kernel-release.tmp" && mv -f "$vm/kernel-release.tmp" "$vm/kernel-release"
ln -sfn "$release" "$vm/current"
log "ready: kernel $release ($(<"$rdir/package")), lime $rdir/lime.ko"
echo "AIRF_VM_KERNEL_RELEASE=$release"
echo "AIRF_VM_DIR=$rdir"
echo "AIRF_VM_LIME_KO=$rdir/lime.ko"
