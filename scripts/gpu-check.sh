#!/usr/bin/env bash
# For a machine with an NVIDIA GPU (CI never needs one): builds kdprune with --features cuda
# against onnxruntime-gpu from PyPI (scripts/setup.sh --gpu), runs the teachers of models/ on
# CUDA and on CPU over Fashion-MNIST's 60 000 training images, checks that their log-space
# outputs agree within TOL (default 1e-3, absolute, on logits of magnitude ~10), and prints
# images/s on each. Exits non-zero when there is no GPU or when outputs disagree.
set -euo pipefail
cd "$(dirname "$0")/.."
TOL="${TOL:-1e-3}"
if ! nvidia-smi -L; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi failed); nothing measured" >&2
  exit 1
fi
lscpu | grep -E "Model name|^CPU\(s\)"
scripts/setup.sh --gpu
cargo build --release --features cuda -p kdprune --quiet
# The CUDA and cuDNN libraries of the PyPI packages onnxruntime-gpu[cuda,cudnn] installed.
LD_LIBRARY_PATH="$( (ls -d .venv/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null || true) | tr "\n" ":")${LD_LIBRARY_PATH:-}"
export LD_LIBRARY_PATH
out=runs/gpu-check
rm -rf "$out" && mkdir -p "$out"
# name | model | teacher lines
teachers=(
  "mlp|models/fashion-mnist-mlp.onnx|output = \"probabilities\"\n[teacher.preprocess]\nscale = 255.0\nlayout = \"flat\""
  "cnn|models/fashion-mnist-cnn.onnx|[teacher.preprocess]\nscale = 255.0\nmean = [0.2860]\nstd = [0.3530]\nlayout = \"nchw\""
  "linear|models/fashion-mnist-linear.onnx|output = \"probabilities\"\n[teacher.preprocess]\nscale = 255.0\nlayout = \"flat\""
)
for entry in "${teachers[@]}"; do
  IFS='|' read -r name model extra <<<"$entry"
  for provider in cpu cuda; do
    m="$out/$name-$provider.toml"
    cat >"$m" <<TOML
name = "gpu-check-$name-$provider"
output = "$name-$provider"
plugin_dirs = ["../../build/plugins"]
[data]
format = "idx"
train_images = "../../build/fashion-mnist/train-images-idx3-ubyte.gz"
train_labels = "../../build/fashion-mnist/train-labels-idx1-ubyte.gz"
test_images = "../../build/fashion-mnist/t10k-images-idx3-ubyte.gz"
test_labels = "../../build/fashion-mnist/t10k-labels-idx1-ubyte.gz"
[teacher]
onnx = "../../$model"
provider = "$provider"
batch_size = 1000
$(printf "%b" "$extra")
[student]
hidden = [64]
epochs = 1
lr = 0.05
[distillation]
alphas = [0.5]
[[prune]]
method = "random"
keep = [0.01]
TOML
    target/release/kdprune bench "$m" --epochs 1 --quiet >"$out/$name-$provider.json"
    # One real run writes the soft-label cache, compared below.
    target/release/kdprune run "$m" --quiet >/dev/null
  done
  .venv/bin/python scripts/compare_teacher_caches.py "$out/$name-cpu/cache" "$out/$name-cuda/cache" "$TOL" "$name" \
    "$out/$name-cpu.json" "$out/$name-cuda.json"
done
