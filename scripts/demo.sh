#!/usr/bin/env bash
# The main job: set-up, then random pruning on Fashion-MNIST at several keep fractions, with
# and without distillation from the ONNX teacher in models/, printing the accuracy table.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
target/release/kdprune run examples/fashion-mnist.toml
