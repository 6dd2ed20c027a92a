# @only memory
# airf: acquire physical memory with airf-agent (/proc/kcore, or LiME when given)
# @only disk
# airf: acquire block devices with airf-agent
# @only triage
# airf: collect the host's volatile state (processes, sockets, modules, logins, persistence files) with airf-agent
# @only all
# airf: collect the volatile state (triage), then memory, then every disk, with airf-agent
# @end
# shellcheck shell=sh
# Source: ssm-documents/src/airf-run.sh in airf (packaging/cloudformation/generate.py builds it in).
# Runs as root under SSM Run Command (sh, the script file written by aws:runShellScript).
# Nothing is written to the instance's disks: the agent was downloaded into /dev/shm (tmpfs)
# and is copied into a fresh tmpfs, checked and run from there; both are removed on exit.
# stdout carries exactly one line, the JSON result; messages go to stderr.
set -u
set -f
umask 077
# The instance profile's credentials, never the SSM Agent's file (README: DHMC).
unset AWS_PROFILE
AWS_SHARED_CREDENTIALS_FILE=/dev/null
AWS_CONFIG_FILE=/dev/null
export AWS_SHARED_CREDENTIALS_FILE AWS_CONFIG_FILE
DL=/dev/shm/airf-dl
AGENT_SHA='{{ AgentSha256 }}'
BUCKET='{{ EvidenceBucket }}'
PREFIX='{{ EvidencePrefix }}'
CASE_ID='{{ CaseId }}'
KMS='{{ KmsKeyId }}'
REGION='{{ Region }}'
ENDPOINT='{{ EndpointUrl }}'
EXEC_TIMEOUT='{{ ExecutionTimeout }}'
# @only memory
COMMAND=memory
# @only disk
COMMAND=disk
# @only triage
COMMAND=triage
# @only all
COMMAND=all
# @end
RUN=
AGENT_PID=
# The signal's exit code once run_agent forwarded one to the agent.
# shellcheck disable=SC2034  # only the full collection reads it (to skip the disks)
STOP=
# shellcheck disable=SC2317,SC2329  # called by the EXIT trap
cleanup() {
  if [ -n "$AGENT_PID" ]; then kill -TERM "$AGENT_PID" 2>/dev/null; wait "$AGENT_PID" 2>/dev/null; fi
  rm -rf "$DL"
  if [ -n "$RUN" ]; then
    umount "$RUN" 2>/dev/null || umount -l "$RUN" 2>/dev/null
    rm -rf "$RUN"
  fi
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP
# fail CODE MESSAGE: the message on stderr, a JSON result line on stdout, exit CODE.
fail() {
  echo "airf: $2" >&2
  printf '{"command":"%s","status":"failed","exit_code":%s,"error":"%s"}\n' "$COMMAND" "$1" "$2"
  exit "$1"
}
# compact FILE: the agent's pretty JSON on one line (its strings never hold a raw newline).
compact() {
  sed 's/^[[:space:]]*//' "$1" | tr -d '\n'
}
# run_agent OUT ARGS...: runs the agent with ARGS and the options every run takes, in the
# background with a deadline, with its stdout in OUT; forwards TERM/INT/HUP to it (it then
# aborts its multipart upload) and returns its exit code.
run_agent() {
  out=$1
  shift
  set -- "$@" --to "$TO" "--case=$CASE_ID" "--region=$REGION" --no-progress --json
  [ -z "$KMS" ] || set -- "$@" "--sse-kms-key-id=$KMS"
  [ -z "$ENDPOINT" ] || set -- "$@" "--endpoint-url=$ENDPOINT"
  left=$((END - $(date +%s)))
  [ "$left" -ge 60 ] || left=60
  timeout --foreground --signal=TERM --kill-after=120 "$left" "$RUN/airf-agent" "$@" >"$out" </dev/null &
  AGENT_PID=$!
  trap 'STOP=143; kill -TERM "$AGENT_PID" 2>/dev/null' TERM
  trap 'STOP=130; kill -TERM "$AGENT_PID" 2>/dev/null' INT
  trap 'STOP=129; kill -TERM "$AGENT_PID" 2>/dev/null' HUP
  while :; do
    wait "$AGENT_PID"
    rc=$?
    kill -0 "$AGENT_PID" 2>/dev/null || break
  done
  AGENT_PID=
  trap 'exit 143' TERM
  trap 'exit 130' INT
  trap 'exit 129' HUP
  return "$rc"
}
# @only all
# run_result COMMAND RC: the JSON result of one run ($RUN/COMMAND.json) on one line, or a failed
# result when the agent printed none.
run_result() {
  if [ -s "$RUN/$1.json" ]; then
    compact "$RUN/$1.json"
  else
    printf '{"command":"%s","status":"failed","exit_code":%s,"error":"the agent printed no result"}' "$1" "$2"
  fi
}
# @end
[ "$(id -u)" = 0 ] || fail 1 "must run as root"
END=$(($(date +%s) + EXEC_TIMEOUT - 300))
[ -f "$DL/airf-agent" ] || fail 1 "agent not downloaded to $DL/airf-agent: check ArtifactBucket, Region, AgentVersion and the instance role"
RUN=$(mktemp -d /dev/shm/airf-run.XXXXXX) || fail 1 "cannot create a directory in /dev/shm"
mount -t tmpfs -o size=512m,mode=0700,nosuid,nodev airf "$RUN" || fail 1 "cannot mount a tmpfs on $RUN"
cp "$DL/airf-agent" "$RUN/airf-agent" || fail 1 "cannot copy the agent into $RUN"
got=$(sha256sum "$RUN/airf-agent" | cut -d ' ' -f 1)
[ "$got" = "$AGENT_SHA" ] || fail 1 "agent SHA-256 mismatch: expected $AGENT_SHA, got $got; not running it"
chmod 0700 "$RUN/airf-agent"
TO="s3://$BUCKET/"
[ -z "$PREFIX" ] || TO="$TO$PREFIX/"
# @only memory all
LIME_REL='{{ LimeKernelRelease }}'
LIME_SHA='{{ LimeSha256 }}'
LIME=
if [ -n "$LIME_REL" ] || [ -n "$LIME_SHA" ]; then
  if [ -z "$LIME_REL" ] || [ -z "$LIME_SHA" ]; then
    fail 2 "LimeKernelRelease and LimeSha256 must be given together"
  fi
  [ -f "$DL/lime/lime.ko" ] || fail 1 "LiME module not downloaded: s3://<ArtifactBucket>/lime/$LIME_REL/lime.ko"
  cp "$DL/lime/lime.ko" "$RUN/lime.ko" || fail 1 "cannot copy the LiME module into $RUN"
  LIME="$RUN/lime.ko"
fi
# @end
rm -rf "$DL"
# @only disk all
DEVICES='{{ Devices }}'
if [ "$DEVICES" = all ]; then
  command -v lsblk >/dev/null 2>&1 || fail 1 "lsblk not found: pass Devices explicitly"
  DISKS=$(lsblk -dn -o NAME,TYPE | awk '$2 == "disk" && $1 !~ /^(zram|ram)/ { print "/dev/" $1 }')
else
  DISKS=$(echo "$DEVICES" | tr ',' ' ')
fi
[ -n "$DISKS" ] || fail 1 "no disks found"
# shellcheck disable=SC2086  # DISKS is split on purpose (no globbing: set -f)
echo "airf: disks:" $DISKS >&2
# @only memory all
set -- memory --source auto
[ -z "$LIME" ] || set -- "$@" --lime-module "$LIME" "--lime-sha256=$LIME_SHA"
# @only disk
# shellcheck disable=SC2086  # DISKS is split on purpose (no globbing: set -f)
set -- disk $DISKS
# @only triage
set -- triage
# @only memory disk triage
run_agent "$RUN/result.json" "$@"
rc=$?
[ -s "$RUN/result.json" ] || fail "$rc" "the agent exited with $rc and printed no result"
compact "$RUN/result.json"
echo
# @only all
# Triage first: processes, sockets and deleted binaries are what a capture of memory (which
# takes minutes) smears and a reboot loses. Its failure does not stop memory and disks.
run_agent "$RUN/triage.json" triage
triage_rc=$?
triage_json=$(run_result triage "$triage_rc")
echo "airf: triage: exit $triage_rc" >&2
[ -z "$STOP" ] || {
  printf '{"command":"all","status":"failed","exit_code":%s,"runs":[%s]}\n' "$STOP" "$triage_json"
  exit "$STOP"
}
run_agent "$RUN/memory.json" "$@"
mem_rc=$?
mem_json=$(run_result memory "$mem_rc")
echo "airf: memory: exit $mem_rc" >&2
[ -z "$STOP" ] || {
  printf '{"command":"all","status":"failed","exit_code":%s,"runs":[%s,%s]}\n' "$STOP" "$triage_json" "$mem_json"
  exit "$STOP"
}
# shellcheck disable=SC2086  # DISKS is split on purpose (no globbing: set -f)
set -- disk $DISKS
run_agent "$RUN/disk.json" "$@"
disk_rc=$?
disk_json=$(run_result disk "$disk_rc")
echo "airf: disks: exit $disk_rc" >&2
# Overall: 0 when all three are complete, 3 when all are whole but some sectors were
# unreadable, else the first other failure (triage, then memory).
rc=0
for r in "$triage_rc" "$mem_rc" "$disk_rc"; do
  case "$r" in
    0) ;;
    3) [ "$rc" != 0 ] || rc=3 ;;
    *) case "$rc" in 0|3) rc=$r ;; esac ;;
  esac
done
case "$rc" in
  0) status=complete ;;
  3) status=completed_with_read_errors ;;
  *) status=failed ;;
esac
printf '{"command":"all","status":"%s","exit_code":%s,"runs":[%s,%s,%s]}\n' "$status" "$rc" "$triage_json" "$mem_json" "$disk_json"
# @end
exit "$rc"
