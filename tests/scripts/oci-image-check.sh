#!/usr/bin/env bash
# Checks the agent's container image (packaging/oci-image.sh) built from a static agent:
#
#   tests/scripts/oci-image-check.sh [BINARY]      (default dist/airf-agent, packaging/release.sh)
#
#   1. builds the image twice, the second time from a copy of the binary with another mtime and
#      under another umask: the manifest digests must be equal (reproducible);
#   2. reads it with skopeo (`skopeo inspect oci:...`) and checks the manifest and the config:
#      OCI media types, linux/amd64, user 65532:65532, entrypoint ["/airf-agent"], no env, one
#      layer holding only /airf-agent (regular file, 0:0, mode 755);
#   3. unpacks it with umoci (which verifies every blob's digest) and runs the entrypoint from
#      the unpacked root filesystem as the image's user with an empty environment, chrooted
#      into that filesystem when run as root (so nothing of this machine's is used):
#      `--version` must print "airf-agent <workspace version>";
#   4. shows once that each check fails on its defect: a binary with a PT_INTERP is refused by
#      oci-image.sh, a build with another SOURCE_DATE_EPOCH is caught as another digest, an
#      image whose user is root fails the config check, a layer blob that is not what its digest
#      says (recompressed) fails the unpack.
#
# Installs what it needs (umoci, skopeo, readelf) with tests/scripts/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/scripts/lib.sh

binary=${1:-dist/airf-agent}
[ $# -le 1 ] || die "usage: $0 [BINARY]"
for tool in umoci skopeo readelf python3; do
  command -v "$tool" >/dev/null 2>&1 || { tests/scripts/install-deps.sh; break; }
done
[ -f "$binary" ] || die "$binary is missing: run packaging/release.sh first"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
tag=$version

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# build LAYOUT BINARY [ENV...]: packaging/oci-image.sh into LAYOUT; prints the digest.
build() {
  local layout=$1 bin=$2
  shift 2
  env "$@" packaging/oci-image.sh --binary "$bin" --out "$layout" --tag "$tag" | sed -n 2p
}

# same_digest A B: the reproducibility verdict.
same_digest() {
  if [ "$1" != "$2" ]; then
    echo "oci-image-check: not reproducible: two builds of the same binary gave $1 and $2" >&2
    return 1
  fi
}

# check_image LAYOUT: the manifest, config and layer as skopeo reads them.
check_image() {
  local layout=$1
  skopeo inspect --raw "oci:$layout:$tag" >"$work/manifest.json" || return 1
  skopeo inspect --config "oci:$layout:$tag" >"$work/config.json" || return 1
  skopeo inspect "oci:$layout:$tag" >"$work/inspect.json" || return 1
  python3 - "$layout" "$work/manifest.json" "$work/config.json" "$work/inspect.json" <<'EOF'
import json, subprocess, sys
layout, manifest, config, inspect = sys.argv[1], *(json.load(open(p)) for p in sys.argv[2:])
problems = []
def want(what, got, expected):
    if got != expected:
        problems.append(f"{what} is {got!r}, not {expected!r}")
# umoci leaves the manifest's own mediaType out (optional in the image spec); the index names it.
index = json.load(open(f"{layout}/index.json"))
want("the index's manifest mediaTypes", [m.get("mediaType") for m in index.get("manifests") or []],
     ["application/vnd.oci.image.manifest.v1+json"])
want("the manifest's mediaType", manifest.get("mediaType", "application/vnd.oci.image.manifest.v1+json"),
     "application/vnd.oci.image.manifest.v1+json")
want("the config's mediaType", manifest["config"]["mediaType"], "application/vnd.oci.image.config.v1+json")
layers = manifest.get("layers") or []
want("the number of layers", len(layers), 1)
want("the layer's mediaType", layers[0]["mediaType"] if layers else None, "application/vnd.oci.image.layer.v1.tar+gzip")
want("os", config.get("os"), "linux")
want("architecture", config.get("architecture"), "amd64")
want("skopeo's Os/Architecture", (inspect.get("Os"), inspect.get("Architecture")), ("linux", "amd64"))
c = config.get("config") or {}
want("User", c.get("User"), "65532:65532")
want("Entrypoint", c.get("Entrypoint"), ["/airf-agent"])
want("Cmd", c.get("Cmd"), None)
want("Env", c.get("Env"), None)
if layers:
    blob = f"{layout}/blobs/{layers[0]['digest'].replace(':', '/')}"
    listing = subprocess.run(["tar", "--numeric-owner", "-tvzf", blob], capture_output=True, text=True, check=True).stdout.split("\n")
    entries = [l.split() for l in listing if l.strip()]
    want("the layer's entries", [e[-1] for e in entries], ["airf-agent"])
    if entries:
        want("/airf-agent's mode and owner", entries[0][:2], ["-rwxr-xr-x", "0/0"])
for p in problems:
    print(f"oci-image-check: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
}

# run_entrypoint LAYOUT: unpack with umoci and run the entrypoint with --version.
run_entrypoint() {
  local layout=$1 bundle=$work/bundle out
  rm -rf "$bundle"
  umoci unpack --rootless --image "$layout:$tag" "$bundle" >/dev/null || return 1
  [ -x "$bundle/rootfs/airf-agent" ] || { echo "oci-image-check: no executable /airf-agent in the image" >&2; return 1; }
  if [ "$(id -u)" = 0 ]; then
    # The image's root filesystem and nothing else, as the image's user.
    out=$(env -i "$(command -v chroot)" --userspec=65532:65532 "$bundle/rootfs" /airf-agent --version) || return 1
  else
    out=$(env -i "$bundle/rootfs/airf-agent" --version) || return 1
  fi
  if [ "$out" != "airf-agent $version" ]; then
    echo "oci-image-check: the entrypoint's --version says '$out', not 'airf-agent $version'" >&2
    return 1
  fi
}

# refused WHAT COMMAND...: the command must fail (a check that cannot fail checks nothing).
refused() {
  local what=$1
  shift
  if "$@" >"$work/refused.log" 2>&1; then
    cat "$work/refused.log" >&2
    die "oci-image-check: $what was not refused"
  fi
  log "refused as it must be: $what: $(grep -m1 -E 'oci-image|umoci|error|Error' "$work/refused.log" || tail -n 1 "$work/refused.log")"
}

log "building the image from $binary twice (tag $tag)"
first=$(build "$work/oci-1" "$binary")
cp "$binary" "$work/airf-agent"
touch -d '2001-02-03 04:05:06' "$work/airf-agent"
second=$( (umask 077 && build "$work/oci-2" "$work/airf-agent") )
same_digest "$first" "$second"
log "reproducible: $first (another mtime and umask gave the same digest)"

log "skopeo: manifest, config and layer"
check_image "$work/oci-1"
log "umoci: unpack (blob digests verified) and run the entrypoint"
run_entrypoint "$work/oci-1"
log "entrypoint: $(env -i "$work/bundle/rootfs/airf-agent" --version) (as 65532:65532$([ "$(id -u)" = 0 ] && echo ', chrooted'))"

log "each check on its defect"
dynamic=$(command -v ls)
refused "a binary with a PT_INTERP ($dynamic)" build "$work/oci-dyn" "$dynamic"
other=$(build "$work/oci-3" "$binary" SOURCE_DATE_EPOCH=1)
refused "another SOURCE_DATE_EPOCH as the same image" same_digest "$first" "$other"
cp -a "$work/oci-1" "$work/oci-root"
umoci config --image "$work/oci-root:$tag" --no-history --config.user 0:0 >/dev/null
refused "an image whose user is root" check_image "$work/oci-root"
cp -a "$work/oci-1" "$work/oci-bad"
layer=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["digest"].replace(":", "/"))' "$work/manifest.json")
blob=$work/oci-bad/blobs/$layer
# Another valid gzip of the same tar: only the digest check can tell.
gzip -dc "$blob" | gzip -1 -n >"$work/regzipped"
chmod u+w "$blob"
cat "$work/regzipped" >"$blob"
refused "a layer blob that does not match its digest" run_entrypoint "$work/oci-bad"

log "oci-image-check: ok: airf-agent:$tag $first"
