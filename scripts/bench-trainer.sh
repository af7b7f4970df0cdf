#!/usr/bin/env bash
# The trainer benchmark of docs/performance.md, side by side in one run on this machine:
# kdprune's student (MLP and CNN) against NumPy, scikit-learn and JAX doing the same training
# step, at the same thread count, with this machine's f32 GEMM rate measured in the same
# kdprune process. Prints JSON lines and a summary; keeps the output in bench/last-run.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
CNN_LIMIT=${CNN_LIMIT:-10000}

scripts/setup.sh >/dev/null
if [ ! -x .venv-bench/bin/python ]; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install --quiet --disable-pip-version-check numpy scikit-learn "jax[cpu]"
fi
export OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS MATMUL_NUM_THREADS=$THREADS
export XLA_FLAGS="--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=$THREADS"
ROUNDS=${ROUNDS:-3}
# Epochs (passes) per MLP measurement, kdprune's and the peers' alike; the fastest counts.
PASSES=${PASSES:-3}
# Epochs of the CNN measurement (60 000 images each); the fastest counts, as the GEMM peak is
# the best of its repetitions and the MLP the fastest of its passes: one epoch alone carried
# the host's slow seconds whole.
CNN_PASSES=${CNN_PASSES:-2}
out=bench/last-run.txt
# The host is shared and its speed moves by tens of percent between minutes: every round runs
# kdprune and all peers back to back, ratios are taken within a round, and the summary gives
# each round and the median over rounds.
{
  echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(lscpu | grep 'Model name' | sed 's/ \+/ /g'), threads=$THREADS, rounds=$ROUNDS, passes=$PASSES, cnn_passes=$CNN_PASSES"
  for round in $(seq 1 "$ROUNDS"); do
    echo "## round $round"
    echo "## kdprune MLP"
    target/release/kdprune bench bench/mlp.toml --epochs "$PASSES" --student-only 2>/dev/null | tr -d '\n ' ; echo
    echo "## kdprune CNN"
    target/release/kdprune bench bench/cnn.toml --epochs "$CNN_PASSES" --student-only 2>/dev/null | tr -d '\n ' ; echo
    echo "## peers"
    .venv-bench/bin/python bench/peers.py build/fashion-mnist "$CNN_LIMIT" "" "$PASSES"
  done
} | tee "$out"
.venv-bench/bin/python bench/summary.py "$out" | tee -a "$out"
