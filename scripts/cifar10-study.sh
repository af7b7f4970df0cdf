#!/usr/bin/env bash
# Grows the CIFAR-10 study (experiments/cifar10-study.toml, docs/results.md) from wherever it
# stands: the results committed in docs/results/cifar10/study.results.jsonl join the run
# folder's (a cell already in either is not trained again), `kdprune run` trains what is left
# (extra arguments go to it: `--set 'seeds=[0]'` for a first pass over one seed, `--shard i/n`
# on several machines), and the union of the results and the report are copied back, ready to
# commit. Stop it at any time (Ctrl-C, kill -9): every finished cell is in results.jsonl.
#
# A cell's key includes the source hash its method's plugin declares (plugin-build/), not its
# library's bytes, so another checkout, compiler or machine continues the same cells; results
# keyed the older way (by the library's SHA-256) move over with scripts/rekey-results.py.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --cifar10 >/dev/null
run=runs/cifar10-study
kept=docs/results/cifar10/study.results.jsonl
mkdir -p "$run"
# The union of both files, each cell once (by its key), in the order first seen.
merge() {
  python3 - "$@" <<'EOF'
import json, sys
out, seen, lines = sys.argv[1], set(), []
for path in sys.argv[2:]:
    try:
        text = open(path).read()
    except FileNotFoundError:
        continue
    for line in text.splitlines():
        key = json.loads(line)["key"] if line.strip() else None
        if key is not None and key not in seen:
            seen.add(key)
            lines.append(line)
with open(out + ".tmp", "w") as f:
    f.write("".join(l + "\n" for l in lines))
import os
os.replace(out + ".tmp", out)
print(f"cifar10-study: {len(lines)} cells in {out}", file=sys.stderr)
EOF
}
merge "$run/results.jsonl" "$run/results.jsonl" "$kept"
status=0
target/release/kdprune run experiments/cifar10-study.toml "$@" || status=$?
merge "$kept" "$kept" "$run/results.jsonl"
# The report of every committed cell, made apart from the run folder: a run given
# `--set 'prune=[...]'` (a few cells first) reports its own cells only.
report=$(mktemp -d)
cp "$kept" "$report/results.jsonl"
target/release/kdprune report "$report" -q >/dev/null
cp "$report/report.md" docs/results/cifar10/study-report.md
rm -rf "$report"
exit "$status"
