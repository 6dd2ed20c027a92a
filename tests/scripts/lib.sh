# shellcheck shell=bash
# Shared helpers for airf's test and demo scripts. Source it; do not run it.

AIRF_CACHE=${AIRF_CACHE:-/opt/airf-cache}

# Each line carries the time since the calling script started, so a slow phase shows in CI logs.
log() { printf 'airf-test: [%d:%02d] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" >&2; }
die() { printf 'airf-test: error: %s\n' "$*" >&2; exit 1; }

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT SECONDS: wait until something listens on 127.0.0.1:PORT.
wait_port() {
  local port=$1 secs=${2:-30} i
  for ((i = 0; i < secs * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}
