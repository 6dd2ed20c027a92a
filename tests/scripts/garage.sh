#!/usr/bin/env bash
# Garage, the S3-compatible store that checks per-part SHA-256 and CompleteMultipartUpload
# checksums the way S3 does. One single-node cluster per directory, on free loopback ports.
#
#   garage.sh start DIR     start a node in DIR (config, data, pid); prints `export` lines, also in DIR/env
#   garage.sh stop DIR      stop it (SIGKILL with `stop DIR kill`, to simulate a crash)
#   garage.sh restart DIR   start the same node again on the same ports and data
#
# The binary comes from tests/scripts/install-deps.sh (cargo install garage, cached under
# /opt/airf-cache/garage) or $AIRF_GARAGE.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR  # $here is the script's directory
. "$here/lib.sh"

GARAGE=${AIRF_GARAGE:-$AIRF_CACHE/garage/bin/garage}
BUCKET=${AIRF_TEST_BUCKET:-evidence}
KEY_ID=GK00000000000000000000a1f0
SECRET=1111111111111111111111111111111111111111111111111111111111111111

cmd=${1:-}; dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then die "usage: garage.sh start|stop|restart DIR"; fi
[ -x "$GARAGE" ] || die "garage not found at $GARAGE; run tests/scripts/install-deps.sh"
g() { "$GARAGE" -c "$dir/garage.toml" "$@"; }

launch() {
  # Detached from our stdout, or a caller reading it would wait for the server to exit.
  setsid "$GARAGE" -c "$dir/garage.toml" server </dev/null >"$dir/server.log" 2>&1 &
  echo $! >"$dir/pid"
  wait_port "$(cat "$dir/s3_port")" 30 || { tail -20 "$dir/server.log" >&2; die "garage did not start (log: $dir/server.log)"; }
  local i
  for ((i = 0; i < 100; i++)); do g status >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "garage is not answering (log: $dir/server.log)"
}

case "$cmd" in
start)
  mkdir -p "$dir/meta" "$dir/data"
  dir=$(cd "$dir" && pwd)
  s3=$(free_port); rpc=$(free_port); admin=$(free_port)
  echo "$s3" >"$dir/s3_port"
  cat >"$dir/garage.toml" <<CONF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
CONF
  launch
  node=$(g status 2>/dev/null | awk 'length($1) == 16 && $1 ~ /^[0-9a-f]+$/ {print $1; exit}')
  [ -n "$node" ] || { g status >&2; die "cannot read the garage node id"; }
  g layout assign -z dc1 -c 1G "$node" >/dev/null
  g layout apply --version 1 >/dev/null
  g key import --yes -n airf "$KEY_ID" "$SECRET" >/dev/null
  g bucket create "$BUCKET" >/dev/null
  g bucket allow --read --write --owner "$BUCKET" --key airf >/dev/null
  cat >"$dir/env" <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$s3
export AWS_ACCESS_KEY_ID=$KEY_ID
export AWS_SECRET_ACCESS_KEY=$SECRET
export AWS_REGION=garage
export AWS_DEFAULT_REGION=garage
export AWS_EC2_METADATA_DISABLED=true
export AIRF_TEST_BUCKET=$BUCKET
ENV
  cat "$dir/env"
  ;;
restart)
  launch
  ;;
stop)
  if [ -f "$dir/pid" ]; then
    pid=$(cat "$dir/pid")
    if [ "${3:-}" = kill ]; then kill -9 "$pid" 2>/dev/null || true; else kill "$pid" 2>/dev/null || true; fi
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$dir/pid"
  fi
  ;;
*) die "unknown command $cmd" ;;
esac
