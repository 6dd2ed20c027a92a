# shellcheck shell=bash
# Sourced by the static builds: the musl target, musl-gcc for C dependencies (aws-lc), and a
# fully static link. Sets $target, and $target_dir: where cargo builds (CARGO_TARGET_DIR,
# absolute or relative to the repository root, else ./target), as an absolute path.
target=x86_64-unknown-linux-musl
target_dir=${CARGO_TARGET_DIR:-target}
case $target_dir in /*) ;; *) target_dir=$PWD/$target_dir ;; esac
if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target" >&2
fi
if ! command -v musl-gcc >/dev/null; then
  apt-get install -y -q musl-tools >&2 || { apt-get update -q >&2 && apt-get install -y -q musl-tools >&2; }
fi
export CC_x86_64_unknown_linux_musl=musl-gcc
# Link with rustc's default (self-contained musl crt): musl-gcc as the linker would add a
# dynamic loader (PT_INTERP /lib/ld-musl-x86_64.so.1) that busybox systems do not have.
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
