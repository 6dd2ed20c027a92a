#!/usr/bin/env bash
# Build LiME (lime.ko) for a Debian kernel release from Debian's
# lime-forensics-dkms package, against linux-headers-<release>.
#
# usage: vendor-lime/build.sh <kernel-release> [outdir]
#   e.g. vendor-lime/build.sh 6.1.0-57-amd64 /opt/airf-cache/lime/out
#
# Writes <outdir>/lime-<release>.ko and <outdir>/lime-<release>.ko.sha256.
# No LiME source is stored in this repository: the source comes from the
# pinned Debian package below, fetched with `apt-get download`.
#
# Environment:
#   AIRF_CACHE   cache root (default /opt/airf-cache); downloads and build
#                trees live under $AIRF_CACHE/lime/
#   LIME_FORCE=1 rebuild even if a cached module exists
set -euo pipefail

# ---- pinned package --------------------------------------------------------
LIME_PKG=lime-forensics-dkms
LIME_VERSION=1.9.1-5
LIME_DEB_SHA256=3a073a14a82548ca593f861216d180747cff73cf2aebbd47057edfa609dbed29
# ---------------------------------------------------------------------------

die() { echo "vendor-lime/build.sh: error: $*" >&2; exit 1; }
log() { echo "vendor-lime/build.sh: $*" >&2; }

[[ $# -ge 1 && $# -le 2 ]] || die "usage: $0 <kernel-release> [outdir]"
release=$1
[[ $release =~ ^[0-9]+\.[0-9]+\.[0-9]+-[0-9]+(-[a-z0-9]+)*$|^[0-9]+\.[0-9]+\.[0-9]+\+deb[0-9]+(-[a-z0-9]+)+$ ]] \
  || die "'$release' does not look like a Debian kernel release (e.g. 6.1.0-57-amd64)"
[[ $(id -u) -eq 0 ]] || die "must run as root (installs linux-headers-$release with apt-get)"

cache=${AIRF_CACHE:-/opt/airf-cache}/lime
outdir=${2:-$cache/out}
debdir=$cache/debs
builddir=$cache/build/$LIME_VERSION/$release
mkdir -p "$outdir" "$debdir" "$cache/build" || die "cannot create $outdir / $cache"
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

# modinfo/strip/make/sha256sum are needed below.
need=()
command -v modinfo >/dev/null || need+=(kmod)
command -v make >/dev/null || need+=(make)
command -v strip >/dev/null || need+=(binutils)
command -v dpkg-deb >/dev/null || die "dpkg-deb not found: this script needs a Debian system"
((${#need[@]} == 0)) || apt_install "${need[@]}"

check_ko() { # $1 = path; verifies the module is a LiME module for $release
  local f=$1 vm name
  [[ -s $f ]] || return 1
  name=$(modinfo -F name "$f" 2>/dev/null) || return 1
  vm=$(modinfo -F vermagic "$f" 2>/dev/null) || return 1
  [[ $name == lime && ${vm%% *} == "$release" ]]
}

# ---- fast path: cached build ----------------------------------------------
if [[ ${LIME_FORCE:-0} != 1 ]] && check_ko "$builddir/lime.ko"; then
  log "using cached build $builddir/lime.ko"
else
  # ---- 1. fetch and verify the pinned source package ----------------------
  deb=$debdir/${LIME_PKG}_${LIME_VERSION}_all.deb
  if [[ ! -f $deb ]] || ! echo "$LIME_DEB_SHA256  $deb" | sha256sum -c --quiet - >/dev/null 2>&1; then
    rm -f "$deb"
    log "apt-get download $LIME_PKG=$LIME_VERSION"
    tmpd=$(mktemp -d "$debdir/dl.XXXXXX")
    chmod 0777 "$tmpd"   # lets apt's _apt user write (avoids the 'unsandboxed' warning)
    (cd "$tmpd" && apt-get download "$LIME_PKG=$LIME_VERSION") >"$cache/apt.log" 2>&1 \
      || { apt_update_once; (cd "$tmpd" && apt-get download "$LIME_PKG=$LIME_VERSION") >"$cache/apt.log" 2>&1; } \
      || { rm -rf "$tmpd"; tail -n 20 "$cache/apt.log" >&2
           die "could not download $LIME_PKG=$LIME_VERSION (pinned version not in apt? run 'apt-get update'; check 'apt-cache policy $LIME_PKG')"; }
    mv "$tmpd"/*.deb "$deb"; rm -rf "$tmpd"
  fi
  got_ver=$(dpkg-deb -f "$deb" Version)
  [[ $got_ver == "$LIME_VERSION" ]] || die "$deb has version $got_ver, expected pinned $LIME_VERSION"
  echo "$LIME_DEB_SHA256  $deb" | sha256sum -c --quiet - \
    || die "sha256 of $deb does not match pinned $LIME_DEB_SHA256 (package changed upstream? update the pin deliberately)"

  # ---- 2. kernel headers (+ kbuild + the matching compiler via Depends) ----
  kdir=/usr/src/linux-headers-$release
  if [[ ! -f $kdir/Makefile || ! -f $kdir/.config ]]; then
    apt-cache show "linux-headers-$release" >/dev/null 2>&1 \
      || { apt_update_once; apt-cache show "linux-headers-$release" >/dev/null 2>&1; } \
      || die "package linux-headers-$release is not known to apt (run 'apt-get update'; is $release a Debian 12 kernel?)"
    apt_install "linux-headers-$release" make
  fi
  [[ -f $kdir/Makefile ]] || die "$kdir/Makefile missing after installing linux-headers-$release"
  # The headers name the compiler that built the kernel (e.g. gcc-12); make sure it exists.
  cc=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\([^ ]*\) .*/\1/p' "$kdir/.config" | head -n1)
  if [[ -n $cc ]] && ! command -v "$cc" >/dev/null; then apt_install "$cc"; fi
  cc=${cc:-gcc}
  command -v "$cc" >/dev/null || die "compiler $cc not found"

  # ---- 3. extract source into a fresh build tree and build -----------------
  rm -rf "$builddir"; mkdir -p "$builddir"
  xdir=$(mktemp -d "$cache/build/x.XXXXXX")
  dpkg-deb -x "$deb" "$xdir"
  src=$xdir/usr/src/lime-forensics-${LIME_VERSION}
  [[ -f $src/main.c && -f $src/Makefile ]] || { rm -rf "$xdir"; die "unexpected layout in $deb (no $src/main.c)"; }
  cp -a "$src"/. "$builddir"/
  rm -rf "$xdir"
  log "building LiME $LIME_VERSION for $release in $builddir (CC=$cc)"
  # Same invocation as the package's dkms.conf, with a fixed compiler.
  if ! make -C "$kdir" M="$builddir" CC="$cc" modules >"$builddir/build.log" 2>&1; then
    tail -n 40 "$builddir/build.log" >&2
    die "LiME build failed for $release (full log: $builddir/build.log)"
  fi
  [[ -f $builddir/lime.ko ]] || die "build finished but $builddir/lime.ko is missing"
  strip --strip-debug "$builddir/lime.ko"
  check_ko "$builddir/lime.ko" \
    || die "built module has vermagic '$(modinfo -F vermagic "$builddir/lime.ko")', expected $release"
fi

# ---- 4. publish -------------------------------------------------------------
tmp=$(mktemp "$outdir/.lime-$release.ko.XXXXXX")
cp "$builddir/lime.ko" "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$out_ko"
(cd "$outdir" && sha256sum "lime-$release.ko" >"lime-$release.ko.sha256.tmp" && mv -f "lime-$release.ko.sha256.tmp" "lime-$release.ko.sha256")
log "wrote $out_ko ($(stat -c %s "$out_ko") bytes, LiME $LIME_VERSION, vermagic: $(modinfo -F vermagic "$out_ko"))"
echo "$out_ko"
