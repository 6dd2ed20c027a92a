#!/usr/bin/env bash
# moto_server: the quick second S3 implementation (it checks no checksums, so tests check the
# bytes themselves) and the AWS API emulator of the controller's tests. One server per directory,
# on a free loopback port. It runs through moto_aws.py, which adds the SSM calls moto lacks.
#
#   moto.sh start DIR    prints `export` lines, also in DIR/env
#   moto.sh stop DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR  # $here is the script's directory
. "$here/lib.sh"

BUCKET=${AIRF_TEST_BUCKET:-evidence}
cmd=${1:-}; dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then die "usage: moto.sh start|stop DIR"; fi
MOTO=${AIRF_MOTO:-$(command -v moto_server || true)}

case "$cmd" in
start)
  [ -n "$MOTO" ] || die "moto_server not found; run tests/scripts/install-deps.sh"
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  port=$(free_port)
  mkdir -p "$dir/ssm-output"
  # Every call made with an assumed role is recorded there (tests/iam/record.py).
  AIRF_SSM_OUTPUT_DIR="$dir/ssm-output" AIRF_IAM_CALL_LOG="$dir/iam-calls.jsonl" setsid python3 "$here/moto_aws.py" "$port" </dev/null >"$dir/server.log" 2>&1 &
  echo $! >"$dir/pid"
  wait_port "$port" 60 || { tail -20 "$dir/server.log" >&2; die "moto_server did not start"; }
  cat >"$dir/env" <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export AIRF_TEST_BUCKET=$BUCKET
export AIRF_SSM_OUTPUT_DIR=$dir/ssm-output
export AIRF_IAM_CALL_LOG=$dir/iam-calls.jsonl
ENV
  python3 - "$port" "$BUCKET" <<'PY'
import sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/{sys.argv[2]}", method="PUT")
urllib.request.urlopen(req).read()
PY
  cat "$dir/env"
  ;;
stop)
  if [ -f "$dir/pid" ]; then kill "$(cat "$dir/pid")" 2>/dev/null || true; rm -f "$dir/pid"; fi
  ;;
*) die "unknown command $cmd" ;;
esac
