#!/usr/bin/env bash
# Builds the static airf-agent (x86_64-unknown-linux-musl) that runs on any x86-64 Linux,
# busybox guests included.
#
# usage: packaging/build-static.sh [--profile release|dist]
# output: target/x86_64-unknown-linux-musl/<profile>/airf-agent (path also printed on stdout)
#
# Installs what it needs when missing: the rustup musl target, and musl-tools (musl-gcc) through
# apt for the C parts (aws-lc-sys, zstd-sys).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
while (($#)); do
  case $1 in
    --profile) profile=${2:?}; shift 2 ;;
    *) echo "usage: $0 [--profile release|dist]" >&2; exit 2 ;;
  esac
done
target=x86_64-unknown-linux-musl

if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target" >&2
fi
if ! command -v musl-gcc >/dev/null; then
  apt-get install -y -q musl-tools >&2 || { apt-get update -q >&2 && apt-get install -y -q musl-tools >&2; }
fi

export CC_x86_64_unknown_linux_musl=musl-gcc
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=musl-gcc
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
cargo build --quiet --locked -p airf-agent --bin airf-agent --target "$target" --profile "$profile" >&2

out=target/$target/$profile/airf-agent
file "$out" 2>/dev/null | grep -q 'static' || ldd "$out" 2>&1 | grep -qE 'not a dynamic|statically' \
  || { echo "build-static.sh: $out is not static" >&2; exit 1; }
echo "$PWD/$out"
