#!/usr/bin/env bash
# Trains a small model in JAX (CPU, from PyPI), writes its dynamics in kdprune's layout, and
# scores them with `kdprune score`. Needs scripts/setup.sh's build/ (data, plugins, binary).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x .venv-bench/bin/python ]; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install --quiet --disable-pip-version-check numpy scikit-learn "jax[cpu]"
fi
.venv-bench/bin/python examples/jax-dynamics/train.py build/fashion-mnist build/jax-dynamics "${EPOCHS:-5}"
KDPRUNE="${KDPRUNE:-target/release/kdprune}"
"$KDPRUNE" check examples/jax-dynamics/manifest.toml
"$KDPRUNE" score examples/jax-dynamics/manifest.toml
