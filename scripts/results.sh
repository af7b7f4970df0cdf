#!/usr/bin/env bash
# The sweeps behind docs/results.md, then their reports. Resumes: cells already in a folder's
# results.jsonl are not run again. Needs scripts/setup.sh, and ../shared/data for the letter
# recognition table. About 40 minutes on 2 cores; logs kept in bench/results-*.log.
set -euo pipefail
cd "$(dirname "$0")/.."
lscpu | grep -E "Model name|^CPU\(s\)" | tee bench/results-cpu.txt
for m in fashion-mnist-methods fashion-mnist-teachers letter-methods; do
  target/release/kdprune run "experiments/$m.toml" 2>&1 | tee "bench/results-$m.log" | grep -E "time:|cells run" || true
done
target/release/kdprune report runs/results-fashion-mnist > /dev/null
target/release/kdprune report runs/results-letter > /dev/null
echo "reports: runs/results-fashion-mnist/report.{md,html}, runs/results-letter/report.{md,html}"
