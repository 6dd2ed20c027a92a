#!/usr/bin/env bash
# Builds the airf-agent container image (for `airf-agent snapshot` on ECS Fargate, template 3's
# task definition `airf-snapshot`) as an OCI image layout, without a container daemon: umoci
# writes the layout, the one layer is a tar made here.
#
#   packaging/oci-image.sh [--binary FILE] [--out DIR] [--tag TAG]
#
#   --binary  the static agent (default dist/airf-agent, from packaging/release.sh)
#   --out     the OCI image layout to write (default dist/oci; replaced as a whole)
#   --tag     the image's tag (default dist/VERSION, else the workspace version)
#
# The image: linux/amd64, OCI media types, one gzip layer holding only /airf-agent (root-owned,
# mode 755), user 65532:65532 (numeric: there is no /etc/passwd), entrypoint ["/airf-agent"],
# no environment. Nothing else is needed: the agent is static and carries Mozilla's CA roots
# for when the system has no CA store (agent/src/tls.rs), as here.
#
# Reproducible: the same binary gives the same manifest digest on any machine and at any time.
# The layer's tar is normalized (sorted, mtime, owner 0:0 numeric, no atime/ctime, POSIX
# format) and gzipped by umoci (Go's gzip, no name or time in its header); the image's
# `created` and its history entry are $SOURCE_DATE_EPOCH (reproducible-builds.org), default 0.
#
# Prints (stdout) the image reference, oci:<layout>:<tag>, then its manifest digest; the digest
# is also written to <layout>.digest. tests/scripts/oci-image-check.sh validates the image.
# Refuses a binary that is no static x86-64 ELF (a PT_INTERP or DT_NEEDED would need files the
# image does not have).
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  echo "oci-image.sh: $*" >&2
  exit 1
}
usage() {
  echo "usage: $0 [--binary FILE] [--out DIR] [--tag TAG]" >&2
  exit 2
}

binary=dist/airf-agent
out=dist/oci
tag=
while (($#)); do
  case $1 in
    --binary) binary=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --tag) tag=${2:?}; shift 2 ;;
    *) usage ;;
  esac
done
for tool in umoci readelf tar sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (tests/scripts/install-deps.sh installs it)"
done

if [ -z "$tag" ]; then
  if [ -f dist/VERSION ]; then
    tag=$(cat dist/VERSION)
  else
    tag=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
  fi
fi
# An OCI tag: [A-Za-z0-9_][A-Za-z0-9._-]{0,127} (OCI distribution spec); versions with "+"
# metadata have no tag spelling.
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$ ]] || die "'$tag' is not a valid OCI tag"

[ -f "$binary" ] || die "$binary is missing; run packaging/release.sh first (or give --binary)"
headers=$(readelf -h -l -d "$binary" 2>&1) || die "$binary is not an ELF file: $headers"
if ! grep -q 'Class:[[:space:]]*ELF64' <<<"$headers" || ! grep -q 'Machine:[[:space:]]*Advanced Micro Devices X86-64' <<<"$headers"; then
  die "$binary is not an x86-64 ELF; the image is linux/amd64"
fi
if grep -q 'program interpreter' <<<"$headers"; then
  die "$binary has a PT_INTERP (needs a dynamic loader the image does not have); it must be static (packaging/release.sh)"
fi
if grep -q '(NEEDED)' <<<"$headers"; then
  die "$binary needs shared libraries the image does not have; it must be static (packaging/release.sh)"
fi

epoch=${SOURCE_DATE_EPOCH:-0}
[[ $epoch =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be seconds since 1970: '$epoch'"
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/root"
cp "$binary" "$work/root/airf-agent"
chmod 755 "$work/root/airf-agent"
# Everything a tar header can carry from this machine is fixed: order, times, owner, user and
# group names, and the pax headers' names (which would hold the pid otherwise).
tar --create --file "$work/layer.tar" --directory "$work/root" \
  --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --mode=0755 \
  --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  airf-agent

layout=$work/oci
ref=$layout:$tag
umoci init --layout "$layout"
umoci new --image "$ref"
umoci raw add-layer --image "$ref" --history.created "$created" \
  --history.created_by "packaging/oci-image.sh: /airf-agent" "$work/layer.tar"
umoci config --image "$ref" --no-history --created "$created" --os linux --architecture amd64 \
  --clear=config.env --config.user 65532:65532 --config.entrypoint /airf-agent \
  --config.label "org.opencontainers.image.title=airf-agent" \
  --config.label "org.opencontainers.image.version=$tag"
umoci gc --layout "$layout"

digest=$(sed -n 's/.*"digest":"\(sha256:[0-9a-f]\{64\}\)".*/\1/p' "$layout/index.json")
[ -n "$digest" ] || die "umoci wrote no manifest digest in $layout/index.json"

mkdir -p "$(dirname "$out")"
rm -rf "$out.tmp"
mv "$layout" "$out.tmp"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$digest" >"$out.digest"
echo "oci:$(cd "$out" && pwd):$tag"
echo "$digest"
