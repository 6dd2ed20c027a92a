#!/usr/bin/env bash
# No import cycles between modules: for each crate, cargo-modules draws the module graph of
# `use` edges, and any strongly connected group of two or more modules fails.
#
# Not part of tests/run.sh: cargo-modules builds the rust-analyzer crates, about 30 minutes on
# 2 cores the first time (cached in $AIRF_CACHE/cargo-modules afterwards), which CI's budget
# cannot take. 0.27.0 is the last release for rustc 1.95 (0.28 needs 1.98). Its own `--acyclic`
# counts a type and its methods as a cycle, so the module graph is checked here instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source-path=SCRIPTDIR
. tests/scripts/lib.sh

version=0.27.0
bin=$AIRF_CACHE/cargo-modules/bin/cargo-modules
if ! [ -x "$bin" ] || ! "$bin" --version 2>/dev/null | grep -q "$version"; then
  log "installing cargo-modules $version (about 30 minutes on 2 cores, once)"
  cargo install --locked --quiet cargo-modules --version "$version" --root "$AIRF_CACHE/cargo-modules"
fi

cycles='
import re, sys
edges = {}
for line in sys.stdin:
    m = re.match(r"\s*\"([^\"]+)\" -> \"([^\"]+)\" \[label=\"uses\"", line)
    if m:
        edges.setdefault(m.group(1), set()).add(m.group(2))
index, low, stack, on, groups = {}, {}, [], set(), []
def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        group = []
        while True:
            w = stack.pop(); on.discard(w); group.append(w)
            if w == v:
                break
        if len(group) > 1:
            groups.append(sorted(group))
sys.setrecursionlimit(10000)
for v in list(edges):
    if v not in index:
        visit(v)
if not edges:
    sys.exit(f"{sys.argv[1]}: cargo-modules drew no module graph")
for g in groups:
    print(f"{sys.argv[1]}: import cycle: {chr(32).join(g)}")
print(f"{sys.argv[1]}: {sum(len(e) for e in edges.values())} use edges between modules, {len(groups)} cycle(s)")
sys.exit(1 if groups else 0)
'

failed=0
for crate in airf-evidence airf-agent airf-controller airf-e2e; do
  "$bin" dependencies -p "$crate" --lib --no-externs --no-sysroot --no-fns --no-types \
    --no-traits --no-owns 2>/dev/null | python3 -c "$cycles" "$crate" || failed=1
done
exit "$failed"
