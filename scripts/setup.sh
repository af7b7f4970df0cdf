#!/usr/bin/env bash
# Set-up on a fresh machine: ONNX Runtime (PyPI wheel), Fashion-MNIST (Debian package), the
# build, and the plugin folder. Idempotent: a second run only checks.
#   scripts/setup.sh            everything (what the demo needs)
#   scripts/setup.sh --runtime  ONNX Runtime only (what the tests need)
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION=1.32.0

# 1. ONNX Runtime from PyPI into .venv (ort loads its libonnxruntime.so at run time).
if ! ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* >/dev/null 2>&1; then
  echo "setup: installing onnxruntime==$ORT_VERSION into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "onnxruntime==$ORT_VERSION" numpy
fi

if [ "${1:-}" = "--runtime" ]; then
  exit 0
fi

# 2. Fashion-MNIST from Debian's dataset-fashion-mnist, linked as build/fashion-mnist.
mkdir -p build
FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: apt-get install dataset-fashion-mnist"
    apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || {
      apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }
  else
    echo "setup: not root; unpacking dataset-fashion-mnist into build/debroot"
    (cd build && apt-get download dataset-fashion-mnist)
    dpkg -x build/dataset-fashion-mnist_*.deb build/debroot
    FMNIST="$PWD/build/debroot/usr/share/datasets/fashion-mnist"
  fi
fi
ln -sfn "$FMNIST" build/fashion-mnist

# 3. The build, and the plugin folder the examples name.
cargo build --release --workspace --quiet
mkdir -p build/plugins
# The library of every plugin crate in plugins/ (folder name = plugin name, library
# libkdprune_<name with _ for ->.so); nothing else that may sit in target/release.
rm -f build/plugins/libkdprune_*.so
for dir in plugins/*/; do
  name=$(basename "$dir")
  cp -f "target/release/libkdprune_${name//-/_}.so" build/plugins/
done
echo "setup: done (plugins in build/plugins: $(ls build/plugins | tr '\n' ' '))"
