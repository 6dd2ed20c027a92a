#!/usr/bin/env bash
# Installs everything airf's tests, demo and benchmarks need on a fresh Debian machine of this
# kind. Idempotent: what is present is kept (Garage takes ~15 minutes to build on 2 cores, so
# it is built once into /opt/airf-cache/garage and reused).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR  # $here is the script's directory
. "$here/lib.sh"

GARAGE_VERSION=2.5.0
# moto 5.2 serializes CompleteMultipartUpload with the wrong XML root; 5.1.22 is right.
MOTO_VERSION=5.1.22

# Volatility 3 and what packaging/volatility/ (the seekable zstd layer) needs, in their own venv.
VOLATILITY_VERSION=2.28.2
ZSTANDARD_VERSION=0.25.0
JSONSCHEMA_VERSION=4.26.0

# `install-deps.sh demo` installs only what packaging/demo.sh needs (a loop device, zstd,
# Garage), so a newcomer's first result does not wait for the test tools.
# `install-deps.sh volatility` installs only Volatility 3 (tests/vm/run-tests.sh,
# tests/scripts/volatility-layer-check.sh).
mode=${1:-all}
case $mode in
  all) apt_pairs="fls:sleuthkit mkfs.ext4:e2fsprogs zstd:zstd losetup:mount /usr/bin/time:time
                  openssl:openssl qemu-system-x86_64:qemu-system-x86 busybox:busybox-static
                  cpio:cpio socat:socat file:file readelf:binutils shellcheck:shellcheck
                  umoci:umoci skopeo:skopeo" ;;
  demo) apt_pairs="mkfs.ext4:e2fsprogs zstd:zstd losetup:mount" ;;
  volatility) apt_pairs="zstd:zstd" ;;
  *) die "usage: install-deps.sh [all|demo|volatility]" ;;
esac

need_apt=()
for pair in $apt_pairs; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "$cmd" ] || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Volatility 3 in a venv of its own: analysts' version, pinned, with zstandard for the seekable
# zstd layer (Debian 12's Python 3.11 has no zstd module) and jsonschema, which Volatility uses
# to validate symbol tables. `vol` is linked alone into $AIRF_CACHE/volatility-bin, so that
# directory can go first on PATH without the venv's python3 and pip hiding the system's.
install_volatility() {
  local venv=$AIRF_CACHE/volatility-venv want have
  want="$VOLATILITY_VERSION $ZSTANDARD_VERSION $JSONSCHEMA_VERSION"
  have=$("$venv/bin/python" -c 'import importlib.metadata as m
print(*(m.version(p) for p in ("volatility3", "zstandard", "jsonschema")))' 2>/dev/null || true)
  if [ "$have" != "$want" ] || ! [ -x "$venv/bin/vol" ]; then
    # A fresh Debian has python3 without ensurepip, which `python3 -m venv` needs.
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
      log "apt-get install python3 python3-venv"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    fi
    log "pip install volatility3 $VOLATILITY_VERSION, zstandard, jsonschema (venv $venv)"
    mkdir -p "$AIRF_CACHE"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "volatility3==$VOLATILITY_VERSION" \
      "zstandard==$ZSTANDARD_VERSION" "jsonschema==$JSONSCHEMA_VERSION"
  fi
  mkdir -p "$AIRF_CACHE/volatility-bin"
  ln -sfn "$venv/bin/vol" "$AIRF_CACHE/volatility-bin/vol"
}

install_python_tools() {
  moto_have=$(python3 -c 'import moto; print(moto.__version__)' 2>/dev/null || true)
  if [ "$moto_have" != "$MOTO_VERSION" ] || ! command -v moto_server >/dev/null 2>&1 || ! command -v aws >/dev/null 2>&1 \
     || ! command -v cfn-lint >/dev/null 2>&1; then
    log "pip install moto[server] awscli cfn-lint"
    python3 -m pip install -q "moto[server]==$MOTO_VERSION" awscli cfn-lint
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
  fi

  # checkov (packaging/cloudformation/check.sh) in its own venv: it pins an older boto3 than moto and awscli use.
  CHECKOV_VERSION=3.3.30
  checkov=$AIRF_CACHE/checkov-venv/bin/checkov
  if ! [ -x "$checkov" ] || [ "$("$checkov" --version 2>/dev/null)" != "$CHECKOV_VERSION" ]; then
    log "pip install checkov $CHECKOV_VERSION (venv $AIRF_CACHE/checkov-venv)"
    mkdir -p "$AIRF_CACHE"
    python3 -m venv "$AIRF_CACHE/checkov-venv"
    "$AIRF_CACHE/checkov-venv/bin/pip" install -q "checkov==$CHECKOV_VERSION"
  fi
}

install_node_tools() {
  # npm: asl-validator validates the Step Functions workflow; aws-local-stepfunctions interprets
  # it in the controller's end-to-end tests (tests/workflow/run-local.cjs); iam-simulate
  # evaluates the recorded AWS calls against the templates' policies (tests/iam/simulate.cjs).
  NODE_PACKAGES=(asl-validator@4.0.0 aws-local-stepfunctions@3.0.0 @cloud-copilot/iam-simulate@0.1.173)
  node_ok=1
  for pkg in "${NODE_PACKAGES[@]}"; do
    name=${pkg%@*}; version=${pkg##*@}   # %@* keeps a scope's leading @
    grep -q "\"version\": \"$version\"" "$AIRF_CACHE/node/node_modules/$name/package.json" 2>/dev/null || node_ok=0
  done
  # The pinned packages alone are not enough: an interrupted install once left a dependency of
  # iam-simulate without its package.json. `npm ls --all` fails on any missing or broken one.
  if [ "$node_ok" = 1 ] && ! npm ls --prefix "$AIRF_CACHE/node" --all >/dev/null 2>&1; then
    log "the cached node packages are incomplete; reinstalling"
    rm -rf "$AIRF_CACHE/node"
    node_ok=0
  fi
  if [ "$node_ok" = 0 ]; then
    command -v npm >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
    log "npm install ${NODE_PACKAGES[*]}"
    mkdir -p "$AIRF_CACHE/node"
    npm install --silent --no-audit --no-fund --prefix "$AIRF_CACHE/node" "${NODE_PACKAGES[@]}" >/dev/null
  fi
}

if [ "$mode" = volatility ]; then
  install_volatility
  log "Volatility ready ($AIRF_CACHE/volatility-venv/bin/vol)"
  exit 0
fi
if [ "$mode" = all ]; then
  install_volatility
  install_python_tools
  install_node_tools
fi

# Only what tests/scripts/garage.sh uses: the sqlite metadata engine (bundled, no system
# library). The default features add LMDB, K2V and Prometheus metrics, which nothing here uses
# and which cost build minutes on every fresh machine.
GARAGE_FEATURES=sqlite,bundled-libs
GARAGE_BUILD="$GARAGE_FEATURES opt1"
garage=$AIRF_CACHE/garage/bin/garage
if ! [ -x "$garage" ] || ! "$garage" --version 2>/dev/null | grep -q "$GARAGE_VERSION" \
   || [ "$(cat "$AIRF_CACHE/garage/features" 2>/dev/null)" != "$GARAGE_BUILD" ]; then
  log "building garage $GARAGE_VERSION ($GARAGE_FEATURES; about 12 minutes on 2 cores; cached afterwards)"
  mkdir -p "$AIRF_CACHE/garage"
  # The tests need a correct S3 server, not a fast one: opt-level 1 without LTO builds in
  # about half the time of Garage's own release profile.
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=false \
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=false \
  CARGO_PROFILE_RELEASE_STRIP=true \
    cargo install --locked --force garage --version "$GARAGE_VERSION" --root "$AIRF_CACHE/garage" \
    --no-default-features --features "$GARAGE_FEATURES"
  echo "$GARAGE_BUILD" >"$AIRF_CACHE/garage/features"
fi
log "dependencies ready (garage: $garage)"
