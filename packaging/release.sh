#!/usr/bin/env bash
# Builds the release of airf-agent: one fully static x86_64 binary (x86_64-unknown-linux-musl,
# profile `dist`: thin LTO, one codegen unit, symbols stripped by packaging/build-static.sh) that
# runs on any x86-64 Linux, busybox included.
#
#   packaging/release.sh        (then: packaging/publish.sh <artifact-bucket>)
#
# writes  dist/airf-agent         the binary
#         dist/airf-agent.sha256  its SHA-256, sha256sum format (`sha256sum -c` in dist/ checks it)
#         dist/VERSION            the workspace version, which `airf-agent --version` also prints
# and prints their paths. Fails if the binary asks for a dynamic loader (PT_INTERP) or a shared
# library (DT_NEEDED), or if its --version is not the workspace version.
#
# Allocator: musl's own malloc; the agent's `mimalloc` feature stays off. Measured with
# `packaging/bench/allocator.sh 4 5` (4 GiB mixed source from the page cache, `--to - --threads 4`,
# dist profile, 2 cores, runs alternating, medians of 5; 2026-11-29):
#     musl      1022 MB/s  7.54 CPU-s  32.1 MiB peak RSS
#     mimalloc  1014 MB/s  7.49 CPU-s  42.9 MiB peak RSS
# Same speed and CPU (within 1%, under the 5% bar) and a third more memory with mimalloc: the
# pipeline reuses its buffers, so allocation is not on the hot path. (A first run of 3 on a
# busier machine: 658 vs 625 MB/s, 7.88 vs 7.94 CPU-s, 32.1 vs 42.8 MiB.)
#
# Panic strategy: unwind (the default) is kept. The pipeline joins its reader and hasher threads
# and turns a panic in one into an error (agent/src/pipeline.rs), after which the multipart
# upload is aborted and a JSON result printed; `panic = "abort"` would end the process with the
# upload left open and no result. Symbols are stripped by build-static.sh, so `strip = true` in
# the profile would change nothing in dist/airf-agent.
set -euo pipefail
cd "$(dirname "$0")/.."

features=() # e.g. (--features mimalloc); see "Allocator" above

bin=$(packaging/build-static.sh --profile dist "${features[@]}")

# build-static.sh already refuses a PT_INTERP; a release checks both ways of needing ld.so.
headers=$(readelf -l -d "$bin")
if grep -q 'program interpreter' <<<"$headers"; then
  echo "release.sh: $bin has a PT_INTERP (needs a dynamic loader); it must be static" >&2
  exit 1
fi
if grep -q '(NEEDED)' <<<"$headers"; then
  echo "release.sh: $bin needs shared libraries; it must be static:" >&2
  grep '(NEEDED)' <<<"$headers" >&2
  exit 1
fi

version=$(cargo metadata --no-deps --format-version 1 --offline |
  python3 -c 'import json, sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "airf-agent"))')
if [ "$("$bin" --version)" != "airf-agent $version" ]; then
  echo "release.sh: $bin --version says '$("$bin" --version)', the workspace says $version" >&2
  exit 1
fi

mkdir -p dist
cp -f "$bin" dist/airf-agent.tmp
chmod 755 dist/airf-agent.tmp
mv -f dist/airf-agent.tmp dist/airf-agent
(cd dist && sha256sum airf-agent >airf-agent.sha256.tmp && mv -f airf-agent.sha256.tmp airf-agent.sha256)
echo "$version" >dist/VERSION

for f in airf-agent airf-agent.sha256 VERSION; do
  echo "$PWD/dist/$f"
done
