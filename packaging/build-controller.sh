#!/usr/bin/env bash
# Builds the controller Lambda for the provided.al2023 runtime as a plain static binary (no
# cargo-lambda, no zig): x86_64 musl, named `bootstrap`, zipped.
#
#   packaging/build-controller.sh      → dist/airf-controller.zip (+ .sha256)
#
# Upload it where 3-security.yaml's CodeBucket/CodeKey point:
#   aws s3 cp dist/airf-controller.zip s3://<code-bucket>/controller/<version>/airf-controller.zip
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${AIRF_PROFILE:-dist}
. packaging/musl-toolchain.sh
cargo build --quiet --locked -p airf-controller --bin bootstrap --target "$target" --profile "$profile" >&2

built=$target_dir/$target/$profile/bootstrap
mkdir -p dist
strip -o dist/bootstrap.tmp "$built"
chmod 755 dist/bootstrap.tmp
python3 - dist/bootstrap.tmp dist/airf-controller.zip <<'PY'
import sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(dst + ".tmp", "w", compression=zipfile.ZIP_DEFLATED) as z:
    info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = 0o100755 << 16   # executable: the runtime execs it
    info.compress_type = zipfile.ZIP_DEFLATED
    with open(src, "rb") as f:
        z.writestr(info, f.read())
PY
mv -f dist/airf-controller.zip.tmp dist/airf-controller.zip
rm -f dist/bootstrap.tmp
(cd dist && sha256sum airf-controller.zip >airf-controller.zip.sha256)
if readelf -l "$built" | grep -q 'program interpreter'; then
  echo "build-controller.sh: $built needs a dynamic loader; it must be static" >&2; exit 1
fi
echo "$PWD/dist/airf-controller.zip"
