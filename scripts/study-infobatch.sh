#!/usr/bin/env bash
# InfoBatch (pruning during training) on Fashion-MNIST against training on the full set and
# against random static pruning at the same number of examples seen, with and without
# distillation, 3 seeds: the example manifest's student (MLP 784-256-128-10, 10 epochs) and
# teacher. Writes runs/infobatch/{full,infobatch,static}/ and the summary
# docs/results/infobatch/summary.txt (with the CPU), which docs/results.md quotes.
set -euo pipefail
cd "$(dirname "$0")/.."
KDPRUNE="${KDPRUNE:-target/release/kdprune}"
OUT=runs/infobatch
M=examples/fashion-mnist.toml
common=(--set 'seeds=[0, 1, 2]' --set 'distillation.alphas=[0.0, 0.5]')
"$KDPRUNE" run "$M" "${common[@]}" --set "output=\"../$OUT/full\"" --set 'prune.0.keep=[1.0]'
"$KDPRUNE" run "$M" "${common[@]}" --set "output=\"../$OUT/infobatch\"" --set 'prune.0.keep=[1.0]' \
  --set 'student.infobatch={ ratio = 0.5, delta = 0.875 }'
# Random static pruning: the kept fraction whose epochs × K equals InfoBatch's mean examples seen.
keep=$(python3 -c '
import json, sys
seen = [json.loads(l)["examples_seen"] for l in open(sys.argv[1])]
print(round(sum(seen) / len(seen) / (10 * 60000), 4))' "$OUT/infobatch/results.jsonl")
"$KDPRUNE" run "$M" "${common[@]}" --set "output=\"../$OUT/static\"" --set "prune.0.keep=[$keep]"
mkdir -p docs/results/infobatch
python3 scripts/study_infobatch.py "$OUT" | tee docs/results/infobatch/summary.txt
for run in full infobatch static; do
  cp "$OUT/$run/results.jsonl" "docs/results/infobatch/$run.results.jsonl"
  cp "$OUT/$run/timings.jsonl" "docs/results/infobatch/$run.timings.jsonl"
done
