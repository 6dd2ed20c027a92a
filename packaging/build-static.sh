#!/usr/bin/env bash
# Builds the static airf-agent (x86_64-unknown-linux-musl) that runs on any x86-64 Linux,
# busybox guests included.
#
# usage: packaging/build-static.sh [--profile release|dist] [--features LIST]
# output: $CARGO_TARGET_DIR (default target)/x86_64-unknown-linux-musl/<profile>/airf-agent-static,
#         a stripped copy of cargo's
#         binary (path also printed on stdout; the unstripped one carries line tables, ~150 MB)
#
# Installs what it needs when missing: the rustup musl target, and musl-tools (musl-gcc) through
# apt for the C parts (aws-lc-sys, zstd-sys).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
features=()
while (($#)); do
  case $1 in
    --profile) profile=${2:?}; shift 2 ;;
    --features) features=(--features "${2:?}"); shift 2 ;;
    *) echo "usage: $0 [--profile release|dist] [--features LIST]" >&2; exit 2 ;;
  esac
done
. packaging/musl-toolchain.sh
cargo build --quiet --locked -p airf-agent --bin airf-agent --target "$target" --profile "$profile" "${features[@]}" >&2

built=$target_dir/$target/$profile/airf-agent
out=$built-static
strip -o "$out.tmp" "$built" && mv -f "$out.tmp" "$out"
if readelf -l "$out" | grep -q 'program interpreter'; then
  echo "build-static.sh: $out needs a dynamic loader; it must be static" >&2; exit 1
fi
echo "$out"
