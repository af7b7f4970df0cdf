#!/usr/bin/env bash
# Re-make models/fashion-mnist-cnn.onnx: kdprune's own trainer on the full Fashion-MNIST
# training set (models/fashion-mnist-cnn-teacher.toml: conv32-pool-conv64-pool-dense128,
# 12 epochs, flips, SGD with momentum and a cosine schedule), exported as ONNX by `save = true`.
# About 11 minutes on 2 cores. Needs scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf runs/fashion-mnist-cnn-teacher
target/release/kdprune run models/fashion-mnist-cnn-teacher.toml
cp runs/fashion-mnist-cnn-teacher/students/*.onnx models/fashion-mnist-cnn.onnx
echo "models/fashion-mnist-cnn.onnx written"
