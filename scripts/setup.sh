#!/usr/bin/env bash
# Set-up on a fresh machine: ONNX Runtime (PyPI wheel), Fashion-MNIST (Debian package), the
# build, and the plugin folder. Idempotent: a second run only checks.
#   scripts/setup.sh            everything (what the demo needs)
#   scripts/setup.sh --runtime  ONNX Runtime and a headless browser only (what the tests need)
#   scripts/setup.sh --gpu      also onnxruntime-gpu with its CUDA and cuDNN libraries from PyPI
#                               in place of the CPU wheel (same lookup: .venv), for provider = "cuda"
#   scripts/setup.sh --cifar10  also CIFAR-10 as image folders in build/cifar10, from
#                               ../shared/data (for examples/cifar10.toml)
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION=1.32.0

# 1. ONNX Runtime from PyPI into .venv (ort loads its libonnxruntime.so at run time).
if ! ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* >/dev/null 2>&1; then
  echo "setup: installing onnxruntime==$ORT_VERSION into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "onnxruntime==$ORT_VERSION" numpy
fi

# 1b. The GPU build of ONNX Runtime (PyPI onnxruntime-gpu and the nvidia-* CUDA 13 / cuDNN
# wheels), when asked for. Its libonnxruntime.so sits where the CPU wheel's did, so kdprune's
# lookup finds it; the CUDA libraries are in site-packages/nvidia/*/lib (scripts/gpu-check.sh
# puts them on LD_LIBRARY_PATH).
if [ "${1:-}" = "--gpu" ] && ! .venv/bin/python -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" 2>/dev/null; then
  echo "setup: installing onnxruntime-gpu[cuda,cudnn]==1.31.1 into .venv in place of onnxruntime"
  .venv/bin/pip uninstall --quiet -y onnxruntime
  .venv/bin/pip install --quiet --disable-pip-version-check "onnxruntime-gpu[cuda,cudnn]==1.31.1"
fi

# A headless browser, for the test that screenshots `kdprune report`'s page (Debian's
# chromium-headless-shell; root for apt-get).
if [ "${1:-}" = "--runtime" ]; then
  if ! command -v chromium-headless-shell >/dev/null && ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
      echo "setup: apt-get install chromium-headless-shell"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium-headless-shell >/dev/null 2>&1 || {
        apt-get update -q >/dev/null &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium-headless-shell >/dev/null; }
    else
      echo "setup: the report test needs chromium-headless-shell; run as root or install it" >&2
      exit 1
    fi
  fi
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

# 2b. CIFAR-10 (JPEG image folders) from ../shared/data, when asked for.
if [ "${1:-}" = "--cifar10" ] && [ ! -d build/cifar10/train ]; then
  archive=../shared/data/cifar10/cifar10-jpeg-60k.tar.gz
  [ -f "$archive" ] || { echo "setup: $archive is not here; CIFAR-10 needs ../shared/data" >&2; exit 1; }
  echo "setup: unpacking $archive into build/cifar10"
  mkdir -p build/cifar10.part
  tar -xzf "$archive" -C build/cifar10.part
  rm -rf build/cifar10 && mv build/cifar10.part build/cifar10
fi

# 3. The build, and the plugin folder the examples name.
cargo build --release --workspace --quiet
mkdir -p build/plugins
# The library of every plugin crate in plugins/ (folder name = plugin name, library
# libkdprune_<name with _ for ->.so); nothing else that may sit in target/release. Each is
# copied under a name of its own and renamed into place: two set-ups at once (a study and a
# benchmark) then never meet a half-written library, and a running kdprune keeps the one it
# loaded. Libraries of plugins no longer in plugins/ are removed.
wanted=" "
for dir in plugins/*/; do
  name=$(basename "$dir")
  lib="libkdprune_${name//-/_}.so"
  cp -f "target/release/$lib" "build/plugins/.$lib.$$"
  mv -f "build/plugins/.$lib.$$" "build/plugins/$lib"
  wanted+="$lib "
done
for path in build/plugins/libkdprune_*.so; do
  [ -e "$path" ] || continue
  case "$wanted" in *" $(basename "$path") "*) ;; *) rm -f "$path" ;; esac
done
echo "setup: done (plugins in build/plugins: $(ls build/plugins | tr '\n' ' '))"
