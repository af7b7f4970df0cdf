#!/usr/bin/env bash
# The teacher benchmark of docs/performance.md, side by side in one run: kdprune's soft-label
# pass (`kdprune bench --teacher-only`) against Python onnxruntime's (bench/teacher_peer.py) on
# the same model, output, threads and batch, alternating, ROUNDS times; from the decoded data in
# memory, preprocessing, inference and the log-space conversion counted on both sides. Models:
# the dynamic-batch scikit-learn MLP of models/ at batch 256 and 1000, and the ONNX zoo's
# fixed-batch-1 MNIST CNN. Output kept in bench/teacher-run.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
THREADS=2
scripts/setup.sh >/dev/null
mkdir -p runs/bench-teacher
out=bench/teacher-run.txt
py=.venv/bin/python
{
  echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(lscpu | grep 'Model name' | sed 's/ \+/ /g'), $(grep -o -w 'avx2\|avx512f\|avx512_bf16\|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' '), threads=$THREADS, rounds=$ROUNDS"
  for round in $(seq 1 "$ROUNDS"); do
    for batch in 256 1000; do
      sed "s/^batch_size = 256/batch_size = $batch/" bench/teacher-mlp.toml > bench/.teacher-mlp-$batch.toml
      echo "## round $round mlp batch $batch"
      target/release/kdprune --quiet bench "bench/.teacher-mlp-$batch.toml" --teacher-only | tr -d '\n '; echo
      $py bench/teacher_peer.py models/fashion-mnist-mlp.onnx build/fashion-mnist idx "$batch" "$THREADS" 255 0 1 flat
    done
    echo "## round $round zoo batch 1 (fixed)"
    target/release/kdprune --quiet bench bench/teacher-zoo.toml --teacher-only | tr -d '\n '; echo
    $py bench/teacher_peer.py tests/fixtures/mnist-zoo-cntk-opset7.onnx tests/fixtures/mnist-5k.csv.gz csv 256 "$THREADS" 1 0 1 nchw
  done
} | tee "$out"
rm -f bench/.teacher-mlp-*.toml
