#!/usr/bin/env bash
# kdprune's EL2N (after 3 of 20 cosine epochs of the example student's proxy), forgetting and
# AUM (all 20 epochs), two seed sets of 3 runs, against an independent NumPy proxy
# (scripts/reference_proxy.py, two seed sets of 3 runs): Spearman correlations and the class
# make-up of the hardest 10 % and 30 %. Writes docs/results/reference-proxy.txt, which
# docs/results.md quotes.
set -euo pipefail
cd "$(dirname "$0")/.."
KDPRUNE="${KDPRUNE:-target/release/kdprune}"
PY="${PY:-.venv-bench/bin/python}"
for s in 0 100; do
  rm -rf "runs/reference-proxy-$s"
  "$KDPRUNE" score "bench/reference-proxy-$s.toml" >/dev/null
done
"$PY" scripts/reference_proxy.py build/fashion-mnist runs/reference-A.npz 3 3 0 20
"$PY" scripts/reference_proxy.py build/fashion-mnist runs/reference-B.npz 3 3 100 20
"$PY" scripts/compare_reference_proxy.py runs/reference-proxy-0/scores runs/reference-proxy-100/scores \
  runs/reference-A.npz runs/reference-B.npz | tee docs/results/reference-proxy.txt
