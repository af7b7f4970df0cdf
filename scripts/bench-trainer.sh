#!/usr/bin/env bash
# The trainer benchmark of docs/performance.md, side by side in one run on this machine:
# kdprune's student (MLP, CNN and ResNet-20) against NumPy, scikit-learn, JAX and PyTorch doing
# the same training step, at the same thread count, with this machine's f32 GEMM rate measured
# in the same kdprune process. Prints JSON lines and a summary; keeps the output in
# bench/last-run.txt. PyTorch (the `torch` wheel from PyPI, about 5 GB with its CUDA
# libraries; it runs on the CPU) is installed into .venv-bench on first use: a benchmark
# peer, never a test dependency.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
CNN_LIMIT=${CNN_LIMIT:-10000}
# CIFAR-10 images per ResNet-20 pass, kdprune's and PyTorch's alike (40 batches of 128).
RESNET_LIMIT=${RESNET_LIMIT:-5120}

# KDPRUNE: a kdprune binary to measure (an earlier build, say) instead of this checkout's,
# which setup builds.
[ -n "${KDPRUNE:-}" ] || scripts/setup.sh >/dev/null
if [ ! -x .venv-bench/bin/python ]; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install --quiet --disable-pip-version-check numpy scikit-learn "jax[cpu]"
fi
if ! .venv-bench/bin/python -c 'import torch, PIL' 2>/dev/null; then
  .venv-bench/bin/pip install --quiet --disable-pip-version-check torch pillow
fi
[ -d build/cifar10/train ] || scripts/setup.sh --cifar10 >/dev/null
export OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS MATMUL_NUM_THREADS=$THREADS
export XLA_FLAGS="--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=$THREADS"
# Which vector extensions every side may use. native: each picks its best for this CPU (an
# OPENBLAS_CORETYPE inherited from the environment is dropped: this project's machines have
# come with it set to Haswell, which holds OpenBLAS to AVX2 on an AVX-512 CPU). avx2: what an
# AVX2 machine runs, on this one: kdprune built without its AVX-512 kernels (feature x86-v4),
# OpenBLAS on its Haswell kernel, XLA at most AVX2.
SIMD=${SIMD:-native}
case "$SIMD" in
  native)
    unset OPENBLAS_CORETYPE
    KDPRUNE=${KDPRUNE:-target/release/kdprune}
    ;;
  avx2)
    export OPENBLAS_CORETYPE=Haswell
    XLA_FLAGS="$XLA_FLAGS --xla_cpu_max_isa=AVX2"
    cargo build --quiet --release -p kdprune --no-default-features --target-dir target/avx2
    KDPRUNE=target/avx2/release/kdprune
    ;;
  *)
    echo "bench-trainer: SIMD is native or avx2, not $SIMD" >&2
    exit 2
    ;;
esac
ROUNDS=${ROUNDS:-3}
# Another kdprune binary (an earlier commit's release build) to run in every round beside this
# one, for a before/after comparison on one machine: rows "x before" = this / that.
KDPRUNE_BEFORE=${KDPRUNE_BEFORE:-}
# Epochs (passes) per MLP measurement, kdprune's and the peers' alike; the fastest counts.
PASSES=${PASSES:-3}
# Epochs of the CNN measurement (60 000 images each); the fastest counts, as the GEMM peak is
# the best of its repetitions and the MLP the fastest of its passes: one epoch alone carried
# the host's slow seconds whole.
CNN_PASSES=${CNN_PASSES:-2}
out=bench/last-run.txt
# kdprune's JSON report on one line (spaces inside its strings kept).
one_line() {
  .venv-bench/bin/python -c 'import json, sys; print(json.dumps(json.load(sys.stdin), separators=(",", ":")))'
}
# The host is shared and its speed moves by tens of percent between minutes: every round runs
# kdprune and all peers back to back, ratios are taken within a round, and the summary gives
# each round and the median over rounds.
{
  echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(lscpu | grep 'Model name' | sed 's/ \+/ /g'), threads=$THREADS, rounds=$ROUNDS, passes=$PASSES, cnn_passes=$CNN_PASSES, simd=$SIMD${KDPRUNE_BEFORE:+, before=$(basename "$KDPRUNE_BEFORE")}"
  for round in $(seq 1 "$ROUNDS"); do
    echo "## round $round"
    echo "## kdprune MLP"
    "$KDPRUNE" bench bench/mlp.toml --epochs "$PASSES" --student-only 2>/dev/null | one_line
    echo "## kdprune CNN"
    "$KDPRUNE" bench bench/cnn.toml --epochs "$CNN_PASSES" --student-only --layers 2>/dev/null | one_line
    echo "## kdprune ResNet-20"
    "$KDPRUNE" bench bench/resnet20.toml --epochs "$CNN_PASSES" --student-only --layers \
      --limit "$RESNET_LIMIT" 2>/dev/null | one_line
    if [ -n "${KDPRUNE_BEFORE:-}" ]; then
      echo "## before MLP"
      "$KDPRUNE_BEFORE" bench bench/mlp.toml --epochs "$PASSES" --student-only 2>/dev/null | one_line
      echo "## before CNN"
      "$KDPRUNE_BEFORE" bench bench/cnn.toml --epochs "$CNN_PASSES" --student-only 2>/dev/null | one_line
      echo "## before ResNet-20"
      "$KDPRUNE_BEFORE" bench bench/resnet20.toml --epochs "$CNN_PASSES" --student-only \
        --limit "$RESNET_LIMIT" 2>/dev/null | one_line
    fi
    echo "## peers"
    .venv-bench/bin/python bench/peers.py build/fashion-mnist "$CNN_LIMIT" "" "$PASSES"
    .venv-bench/bin/python bench/peers_torch.py mlp build/fashion-mnist 60000 "$PASSES" "$THREADS"
    .venv-bench/bin/python bench/peers_torch.py cnn build/fashion-mnist "$CNN_LIMIT" "$CNN_PASSES" "$THREADS"
    .venv-bench/bin/python bench/peers_torch.py resnet20 build/cifar10 "$RESNET_LIMIT" "$CNN_PASSES" "$THREADS"
  done
} | tee "$out"
.venv-bench/bin/python bench/summary.py "$out" | tee -a "$out"
