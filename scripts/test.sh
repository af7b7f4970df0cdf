#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set-up of what the tests need (ONNX Runtime from
# PyPI into .venv), formatting and lint gates, the CUDA feature's build, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# A clean clone gains nothing from incremental caches, and they would double the disk the
# test build takes.
export CARGO_INCREMENTAL=0

scripts/setup.sh --runtime
cargo fmt --all -- --check
# The host's import graph: no cycles, no upward imports beyond those docs/architecture.md names.
python3 scripts/imports.py --check
# No function of host/src over 120 lines.
python3 scripts/long-functions.py --check
# The CIFAR-10 study's tables and their Welch t test (docs/results.md).
python3 -m unittest discover -s scripts -p 'test_*.py'
cargo clippy --workspace --all-targets -- -D warnings
# CUDA support is compiled (not run: CI has no GPU) so that it cannot rot.
cargo check -p kdprune --features cuda
cargo test --workspace
# What a CPU without AVX-512 runs (the build without feature x86-v4: AVX2 kernels, im2col and
# gemm's AVX2 products where they apply), tested on any machine. Same target folder: only
# kdprune and the gemm crates build again (another feature set, another artifact).
cargo test -p kdprune --lib --no-default-features
