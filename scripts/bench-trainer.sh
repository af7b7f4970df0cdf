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
out=bench/last-run.txt
{
  echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(lscpu | grep 'Model name' | sed 's/ \+/ /g'), threads=$THREADS"
  echo "## kdprune MLP"
  target/release/kdprune bench bench/mlp.toml --epochs 1 --student-only 2>/dev/null | tr -d '\n ' ; echo
  echo "## kdprune CNN"
  target/release/kdprune bench bench/cnn.toml --epochs 1 --student-only 2>/dev/null | tr -d '\n ' ; echo
  echo "## peers"
  .venv-bench/bin/python bench/peers.py build/fashion-mnist "$CNN_LIMIT"
} | tee "$out"
.venv-bench/bin/python - "$out" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
ours = [json.loads(l) for l in lines if l.startswith("{\"train_examples")]
peers = {d["peer"]: d for d in (json.loads(l) for l in lines if l.startswith("{\"peer")) if "samples_per_s" in d}
mlp, cnn = ours
print("\nsummary (samples/s, ratio = kdprune / peer)")
print(f"MLP kdprune {mlp['student_samples_per_s_hard']:.0f}, {mlp['student_gflops']:.1f} GFLOP/s = "
      f"{100 * mlp['fraction_of_gemm_peak']:.0f} % of GEMM {mlp['gemm_peak_gflops']:.1f} GFLOP/s")
for p in ("numpy-mlp", "sklearn-mlp", "jax-mlp"):
    if p in peers:
        print(f"  vs {p}: {peers[p]['samples_per_s']:.0f} -> {mlp['student_samples_per_s_hard'] / peers[p]['samples_per_s']:.2f}x")
print(f"CNN kdprune {cnn['student_samples_per_s_hard']:.0f}, convolutions {cnn['conv_gflops']:.1f} GFLOP/s, "
      f"{100 * cnn['fraction_of_gemm_peak']:.0f} % of GEMM")
for p in ("numpy-cnn", "jax-cnn"):
    if p in peers:
        print(f"  vs {p}: {peers[p]['samples_per_s']:.0f} -> {cnn['student_samples_per_s_hard'] / peers[p]['samples_per_s']:.2f}x")
for name, r in (("MLP", mlp), ("CNN", cnn)):
    print(f"{name} peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB, accounted {r['accounted_bytes'] / 2**20:.0f} MiB")
PY
