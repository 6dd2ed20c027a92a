#!/usr/bin/env bash
# Build LiME (lime.ko) for a Debian kernel release from Debian's
# lime-forensics-dkms package, against linux-headers-<release>.
#
# usage: vendor-lime/build.sh <kernel-release> [outdir]
#   e.g. vendor-lime/build.sh 6.1.0-57-amd64 /opt/airf-cache/lime/out
#        vendor-lime/build.sh 6.12.118+deb12-amd64
#
# Writes <outdir>/lime-<release>.ko and <outdir>/lime-<release>.ko.sha256.
# No LiME source is stored in this repository: the source comes from the
# pinned Debian package below, fetched with `apt-get download`; the small
# fixes in vendor-lime/patches/ are applied to it at build time.
#
# The kernel headers are not installed on the host: their .debs (headers,
# -common, kbuild) are unpacked into a private tree under $AIRF_CACHE/lime/.
# (The 6.12 headers package depends on the kernel image itself; installing it
# would put a second kernel and an initramfs on this machine.)
#
# Environment:
#   AIRF_CACHE   cache root (default /opt/airf-cache); downloads, header trees
#                and build trees live under $AIRF_CACHE/lime/
#   LIME_FORCE=1 rebuild even if a cached module exists
set -euo pipefail

# ---- pinned package --------------------------------------------------------
LIME_PKG=lime-forensics-dkms
LIME_VERSION=1.9.1-5
LIME_DEB_SHA256=3a073a14a82548ca593f861216d180747cff73cf2aebbd47057edfa609dbed29
# ---------------------------------------------------------------------------

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "vendor-lime/build.sh: error: $*" >&2; exit 1; }
log() { echo "vendor-lime/build.sh: $*" >&2; }

[[ $# -ge 1 && $# -le 2 ]] || die "usage: $0 <kernel-release> [outdir]"
release=$1
[[ $release =~ ^[0-9]+\.[0-9]+\.[0-9]+-[0-9]+(-[a-z0-9]+)*$|^[0-9]+\.[0-9]+\.[0-9]+\+deb[0-9]+(-[a-z0-9]+)+$ ]] \
  || die "'$release' does not look like a Debian kernel release (e.g. 6.1.0-57-amd64)"
[[ $(id -u) -eq 0 ]] || die "must run as root (downloads packages with apt-get)"

# Patches to the Debian source, applied in name order; their hash names the build tree, so a
# changed patch rebuilds every release.
patches=("$here"/patches/*.patch)
[[ -e ${patches[0]} ]] || patches=()
if ((${#patches[@]})); then
  patch_id=$(cat "${patches[@]}" | sha256sum | cut -c1-12)
else
  patch_id=none
fi

cache=${AIRF_CACHE:-/opt/airf-cache}/lime
outdir=${2:-$cache/out}
debdir=$cache/debs
builddir=$cache/build/$LIME_VERSION+$patch_id/$release
hroot=$cache/headers/$release   # unpacked linux-headers-<release> (+ -common, kbuild)
kdir=$hroot/usr/src/linux-headers-$release
mkdir -p "$outdir" "$debdir" "$cache/build" "$cache/headers" || die "cannot create $outdir / $cache"
outdir=$(cd "$outdir" && pwd)
exec 8>"$cache/.lock"   # serialise concurrent builds
flock -w 1800 8 || die "timed out waiting for $cache/.lock"
out_ko=$outdir/lime-$release.ko

apt_updated=0
apt_update_once() {
  ((apt_updated)) && return 0
  apt_updated=1
  log "apt-get update"
  apt-get update >"$cache/apt-update.log" 2>&1 || { tail -n 20 "$cache/apt-update.log" >&2; die "apt-get update failed"; }
}
apt_install() {
  log "apt-get install $*"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >"$cache/apt.log" 2>&1; then
    apt_update_once   # stale or missing package lists on a fresh machine
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >"$cache/apt.log" 2>&1 \
      || { tail -n 20 "$cache/apt.log" >&2; die "apt-get install $* failed (see $cache/apt.log; is the package in the Debian 12 repos?)"; }
  fi
}
candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}'; }
pkg_ok() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
# apt_download NAME VERSION: prints the path of NAME_VERSION_*.deb in $debdir (downloaded once)
apt_download() {
  local name=$1 ver=$2 deb tmpd
  deb=$(compgen -G "$debdir/${name}_${ver//:/%3a}_*.deb" | head -n1 || true)
  if [[ -z $deb ]]; then
    log "apt-get download $name=$ver"
    tmpd=$(mktemp -d "$debdir/dl.XXXXXX")
    chmod 0777 "$tmpd"   # lets apt's _apt user write (avoids the 'unsandboxed' warning)
    (cd "$tmpd" && apt-get download "$name=$ver") >"$cache/apt.log" 2>&1 \
      || { apt_update_once; (cd "$tmpd" && apt-get download "$name=$ver") >"$cache/apt.log" 2>&1; } \
      || { rm -rf "$tmpd"; tail -n 20 "$cache/apt.log" >&2
           die "could not download $name=$ver (not in apt? run 'apt-get update'; check 'apt-cache policy $name')"; }
    mv "$tmpd"/*.deb "$debdir/"; rm -rf "$tmpd"
    deb=$(compgen -G "$debdir/${name}_${ver//:/%3a}_*.deb" | head -n1) || die "downloaded $name=$ver but found no .deb"
  fi
  echo "$deb"
}

# modinfo/strip/readelf/make/patch are needed below.
need=()
command -v modinfo >/dev/null || need+=(kmod)
command -v make >/dev/null || need+=(make)
command -v strip >/dev/null && command -v readelf >/dev/null || need+=(binutils)
command -v patch >/dev/null || need+=(patch)
command -v dpkg-deb >/dev/null || die "dpkg-deb not found: this script needs a Debian system"
((${#need[@]} == 0)) || apt_install "${need[@]}"

check_ko() { # $1 = path; verifies the module is a LiME module for $release
  local f=$1 vm name
  [[ -s $f ]] || return 1
  name=$(modinfo -F name "$f" 2>/dev/null) || return 1
  vm=$(modinfo -F vermagic "$f" 2>/dev/null) || return 1
  [[ $name == lime && ${vm%% *} == "$release" ]]
}

# ibt_ok PATH: on a kernel with CONFIG_X86_KERNEL_IBT objtool lists every function that is not
# an indirect call target in .ibt_endbr_seal, and the loader overwrites its ENDBR64. The
# module's init and exit functions are called indirectly, so they must not be in that list, or
# insmod faults on a CPU with IBT (see patches/0001-*). Prints the offender.
ibt_ok() {
  local f=$1 sym ndx val sec off seals
  readelf -SW "$f" | grep -q ' \.ibt_endbr_seal ' || return 0   # kernel built without IBT
  # "<section> + <hex offset>" of each sealed ENDBR64
  seals=$(readelf -rW "$f" | sed -n '/^Relocation section .\.rela\.ibt_endbr_seal/,/^$/p' \
            | awk 'NF >= 7 && $(NF-1) == "+" {print $(NF-2), "+", $NF}')
  [[ -n $seals ]] || { echo "no relocations in .rela.ibt_endbr_seal"; return 1; }
  for sym in init_module cleanup_module; do
    read -r ndx val < <(readelf -sW "$f" | awk -v s="$sym" '$8 == s && $4 == "FUNC" {print $7, $2; exit}') || true
    [[ -n ${ndx:-} ]] || { [[ $sym == cleanup_module ]] && continue; echo "no function $sym"; return 1; }
    sec=$(readelf -SW "$f" | sed -n "s/^ *\[ *$ndx\] \([^ ]*\) .*/\1/p")
    [[ -n $sec ]] || { echo "no section $ndx for $sym"; return 1; }
    off=$(printf '%x' "$((16#$val))")
    if grep -qxF "$sec + $off" <<<"$seals"; then
      echo "$sym ($sec+0x$off) is in .ibt_endbr_seal"; return 1
    fi
  done
}

# ---- fast path: cached build ----------------------------------------------
if [[ ${LIME_FORCE:-0} != 1 ]] && check_ko "$builddir/lime.ko" && ibt_ok "$builddir/lime.ko" >/dev/null; then
  log "using cached build $builddir/lime.ko"
else
  # ---- 1. fetch and verify the pinned source package ----------------------
  deb=$debdir/${LIME_PKG}_${LIME_VERSION}_all.deb
  if [[ -f $deb ]] && ! echo "$LIME_DEB_SHA256  $deb" | sha256sum -c --quiet - >/dev/null 2>&1; then
    rm -f "$deb"
  fi
  deb=$(apt_download "$LIME_PKG" "$LIME_VERSION")
  got_ver=$(dpkg-deb -f "$deb" Version)
  [[ $got_ver == "$LIME_VERSION" ]] || die "$deb has version $got_ver, expected pinned $LIME_VERSION"
  echo "$LIME_DEB_SHA256  $deb" | sha256sum -c --quiet - \
    || die "sha256 of $deb does not match pinned $LIME_DEB_SHA256 (package changed upstream? update the pin deliberately)"

  # ---- 2. kernel headers, unpacked into $hroot ------------------------------
  if [[ ! -f $hroot/.ready ]]; then
    hpkg=linux-headers-$release
    hver=$(candidate "$hpkg")
    [[ -n $hver && $hver != "(none)" ]] || { apt_update_once; hver=$(candidate "$hpkg"); }
    [[ -n $hver && $hver != "(none)" ]] \
      || die "package $hpkg is not known to apt (run 'apt-get update'; is $release a Debian 12 kernel?)"
    debs=("$(apt_download "$hpkg" "$hver")")
    # The headers need their -common tree and the kbuild scripts/tools (Depends). The other
    # dependencies (the kernel image, the compiler package) are not needed to build a module.
    IFS=',' read -r -a deps <<<"$(dpkg-deb -f "${debs[0]}" Depends)"
    for d in "${deps[@]}"; do
      d=${d%%|*}   # first alternative
      read -r dname dop dver <<<"$(sed -E 's/[()]//g' <<<"$d")"
      [[ $dname =~ ^linux-(headers|kbuild)- ]] || continue
      want=$(candidate "$dname")
      [[ -n $want && $want != "(none)" ]] || die "$hpkg needs $dname, which apt does not know"
      [[ -z ${dop:-} ]] || dpkg --compare-versions "$want" "$dop" "$dver" \
        || die "$hpkg needs $dname $dop $dver; apt has $want"
      debs+=("$(apt_download "$dname" "$want")")
      if [[ $dname == linux-kbuild-* ]]; then
        # kbuild's programs (fixdep, modpost, resolve_btfids, ...) run here: install what they link.
        IFS=',' read -r -a kdeps <<<"$(dpkg-deb -f "${debs[-1]}" Depends)"
        for k in "${kdeps[@]}"; do
          k=${k%%|*}; read -r k _ <<<"$k"
          pkg_ok "$k" || apt_install "$k"
        done
      fi
      dop="" dver=""
    done
    rm -rf "$hroot"
    xdir=$(mktemp -d "$cache/headers/x.XXXXXX")
    for d in "${debs[@]}"; do dpkg-deb -x "$d" "$xdir" || { rm -rf "$xdir"; die "cannot unpack $d"; }; done
    # The flavour's Makefile includes the -common tree by absolute path (/usr/src/...).
    mk=$xdir/usr/src/linux-headers-$release/Makefile
    [[ -f $mk ]] || { rm -rf "$xdir"; die "$hpkg has no usr/src/linux-headers-$release/Makefile"; }
    sed -i "s|^include /usr/src/|include $hroot/usr/src/|" "$mk"
    mv "$xdir" "$hroot"
    inc=$(sed -n 's/^include //p' "$kdir/Makefile" | head -n1)
    [[ -f $inc ]] || die "$kdir/Makefile includes $inc, which is not there"
    echo "${debs[*]##*/}" >"$hroot/.ready"
  fi
  [[ -f $kdir/Makefile && -f $kdir/.config ]] || die "$kdir is incomplete; remove $hroot and retry"
  # The headers name the compiler that built the kernel (gcc-12, x86_64-linux-gnu-gcc-12).
  cc=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\([^ ]*\) .*/\1/p' "$kdir/.config" | head -n1)
  cc=${cc:-gcc}
  command -v "$cc" >/dev/null || apt_install "${cc#x86_64-linux-gnu-}"
  command -v "$cc" >/dev/null || die "compiler $cc not found"

  # ---- 3. extract source into a fresh build tree, patch, build -------------
  rm -rf "$builddir"; mkdir -p "$builddir"
  xdir=$(mktemp -d "$cache/build/x.XXXXXX")
  dpkg-deb -x "$deb" "$xdir"
  src=$xdir/usr/src/lime-forensics-${LIME_VERSION}
  [[ -f $src/main.c && -f $src/Makefile ]] || { rm -rf "$xdir"; die "unexpected layout in $deb (no $src/main.c)"; }
  cp -a "$src"/. "$builddir"/
  rm -rf "$xdir"
  for p in "${patches[@]}"; do
    patch -d "$builddir" -p1 --forward --batch <"$p" >"$builddir/patch.log" 2>&1 \
      || { cat "$builddir/patch.log" >&2; die "patch $(basename "$p") does not apply to $LIME_PKG $LIME_VERSION"; }
  done
  log "building LiME $LIME_VERSION (+${#patches[@]} patches) for $release in $builddir (CC=$cc)"
  # Same invocation as the package's dkms.conf, with a fixed compiler.
  if ! make -C "$kdir" M="$builddir" CC="$cc" modules >"$builddir/build.log" 2>&1; then
    tail -n 40 "$builddir/build.log" >&2
    die "LiME build failed for $release (full log: $builddir/build.log)"
  fi
  [[ -f $builddir/lime.ko ]] || die "build finished but $builddir/lime.ko is missing"
  strip --strip-debug "$builddir/lime.ko"
  check_ko "$builddir/lime.ko" \
    || die "built module has vermagic '$(modinfo -F vermagic "$builddir/lime.ko")', expected $release"
  why=$(ibt_ok "$builddir/lime.ko") \
    || die "$builddir/lime.ko would not load on a CPU with IBT: $why (are the patches in $here/patches applied?)"
fi

# ---- 4. publish -------------------------------------------------------------
tmp=$(mktemp "$outdir/.lime-$release.ko.XXXXXX")
cp "$builddir/lime.ko" "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$out_ko"
(cd "$outdir" && sha256sum "lime-$release.ko" >"lime-$release.ko.sha256.tmp" && mv -f "lime-$release.ko.sha256.tmp" "lime-$release.ko.sha256")
log "wrote $out_ko ($(stat -c %s "$out_ko") bytes, LiME $LIME_VERSION, vermagic: $(modinfo -F vermagic "$out_ko"))"
echo "$out_ko"
