#!/usr/bin/env bash
# Checks airf's CloudFormation templates. Needs what tests/scripts/install-deps.sh installs
# (cfn-lint, the AWS CLI's botocore, checkov in $AIRF_CACHE/checkov-venv). Runs every step, then
# exits 1 if any failed:
#   1. drift:    the committed templates and SSM documents equal generate.py's output from
#                their sources (src/, ssm-documents/src/)
#   2. cfn-lint: no error in any template
#   3. checkov:  no failed check in any template (suppressions live in the templates, each with
#                its reason; checkov without a platform key reports no severities, so every
#                unsuppressed failure counts)
#   4. IAM:      no wildcard grants, commented "*" resources, write-only evidence, reasoned
#                suppressions (iam_check.py). Whether the roles allow the calls the code makes
#                is evaluated on the recorded calls of the end-to-end tests (tests/iam/).
#   5. deploy:   checks/deploy_rules.py: the AWS rules that apply when the stacks are created or
#                used (Config delivery permissions, key and bucket policies for every evidence
#                reader, Object Lock settings, the acquisition role, SSM limits), for one concrete
#                deployment
#   6. tests:    the checks' own tests (iam_check.py's negative cases, each deploy rule failing
#                on its defect), the SSM documents' tests, and tests/iam's (renderer,
#                authorization table)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
AIRF_CACHE=${AIRF_CACHE:-/opt/airf-cache}
CHECKOV=${CHECKOV:-$AIRF_CACHE/checkov-venv/bin/checkov}
here=packaging/cloudformation
templates=("$here"/[0-9]-*.yaml)
failed=()

step() { printf '\n== cloudformation: %s\n' "$*" >&2; }
result() { # result NAME STATUS
  if [ "$2" -eq 0 ]; then echo "cloudformation: ok: $1" >&2; else echo "cloudformation: FAILED: $1" >&2; failed+=("$1"); fi
}

for tool in cfn-lint python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "cloudformation: $tool missing: run tests/scripts/install-deps.sh" >&2; exit 1; }
done
[ -x "$CHECKOV" ] || { echo "cloudformation: $CHECKOV missing: run tests/scripts/install-deps.sh" >&2; exit 1; }

step "drift (generate.py --check)"
python3 "$here/generate.py" --check
result drift $?

step "cfn-lint $(cfn-lint --version 2>&1) on ${#templates[@]} templates"
cfn-lint --format parseable --non-zero-exit-code error -- "${templates[@]}"
status=$?
warnings=$(cfn-lint --format parseable -- "${templates[@]}" 2>/dev/null | grep -c ':W[0-9]' || true)
echo "cfn-lint: $warnings warning(s)" >&2
result cfn-lint $status

step "checkov $("$CHECKOV" --version 2>&1) on ${#templates[@]} templates"
args=()
for t in "${templates[@]}"; do args+=(-f "$t"); done
report=$(mktemp)
trap 'rm -f "$report"' EXIT
"$CHECKOV" "${args[@]}" --framework cloudformation --skip-download -o json >"$report" 2>/dev/null
status=$?
if ! python3 - "$report" <<'EOF'
import json, sys
data = json.load(open(sys.argv[1]))
runs = data if isinstance(data, list) else [data]
p = f = s = 0
for run in runs:
    summary = run.get("summary", {})
    p += summary.get("passed", 0); f += summary.get("failed", 0); s += summary.get("skipped", 0)
    for c in run.get("results", {}).get("failed_checks", []):
        print(f"checkov: FAILED {c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']}:{c['file_line_range'][0]})", file=sys.stderr)
print(f"checkov: {p} passed, {f} failed, {s} suppressed (each with its reason in the template)", file=sys.stderr)
EOF
then
  echo "checkov: no readable report (exit $status)" >&2
  [ "$status" -ne 0 ] || status=1
fi
result checkov $status

step "IAM policies: nothing broader than needed (iam_check.py)"
python3 "$here/iam_check.py"
result iam $?

step "deploy-time rules (checks/deploy_rules.py)"
python3 "$here/checks/deploy_rules.py"
result deploy-rules $?

step "the checks' tests (tests/cloudformation, tests/iam)"
status=0
python3 -m unittest discover -s tests/cloudformation || status=1
python3 -m unittest discover -s tests/iam -t tests/iam || status=1
result tests $status

for t in "${templates[@]}"; do
  size=$(wc -c < "$t")
  if [ "$size" -gt 51200 ]; then
    echo "cloudformation: note: $(basename "$t") is $size bytes, over the 51,200 of an inline template body: deploy it from S3 (README)" >&2
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "cloudformation: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "cloudformation: all checks passed" >&2
