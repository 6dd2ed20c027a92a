#!/usr/bin/env bash
# Runs shellcheck on airf's shell (tests/scripts/install-deps.sh installs it):
#   1. the SSM documents' one script, ssm-documents/src/airf-run.sh, and the shell step of each
#      committed document as SSM writes it to _script.sh (the lines generate.py chose for that
#      document), as POSIX sh: /bin/sh is dash on Debian and Ubuntu, bash on Amazon Linux;
#   2. every other shell script in the repository.
# Every finding fails, notes and style included.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/scripts/lib.sh

command -v shellcheck >/dev/null 2>&1 || die "shellcheck missing: run tests/scripts/install-deps.sh"
failed=0
check() { shellcheck "$@" || failed=1; }

log "shellcheck $(shellcheck --version | sed -n 's/^version: //p'): SSM documents"
check -s sh ssm-documents/src/airf-run.sh
steps=$(mktemp -d)
trap 'rm -rf "$steps"' EXIT
for doc in ssm-documents/airf-acquire-*.json; do
  python3 - "$doc" "$steps" <<'EOF'
import json, pathlib, sys
doc, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for step in json.loads(doc.read_text())["mainSteps"]:
    if step["action"] == "aws:runShellScript":
        lines = step["inputs"]["runCommand"]
        (out / f"{doc.stem}.{step['name']}.sh").write_text("\n".join(lines) + "\n")
EOF
done
for script in "$steps"/*.sh; do
  check -s sh "$script"
done

log "shellcheck: the repository's other scripts"
others=()
while IFS= read -r script; do
  [ "$script" = ssm-documents/src/airf-run.sh ] || others+=("$script")
done < <(find packaging tests ssm-documents vendor-lime .ci -name '*.sh' -type f | sort)
check -x "${others[@]}"

[ "$failed" = 0 ] || die "shellcheck found problems (above)"
log "shellcheck: clean (${#others[@]} scripts, the SSM documents' script and its documents)"
