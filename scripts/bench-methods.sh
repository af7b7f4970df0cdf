#!/usr/bin/env bash
# Time to score Fashion-MNIST with every pruning method of a manifest (inputs computed once),
# against the time to train one student on the kept 30 %, in the same run.
#   scripts/bench-methods.sh [manifest]   (default bench/methods.toml; bench/new-methods.toml
#                                          holds the methods added since)
# Writes bench/<manifest name>-<date>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
manifest="${1:-bench/methods.toml}"
scripts/setup.sh >/dev/null
out="bench/$(basename "$manifest" .toml)-$(date +%Y-%m-%d-%H%M).txt"
output=$(python3 -c 'import os, sys, tomllib; m = sys.argv[1]; print(os.path.normpath(os.path.join(os.path.dirname(m), tomllib.load(open(m, "rb"))["output"])))' "$manifest")
{
  echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) manifest $manifest"
  echo "# CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(nproc) cores; $(grep -o -w -E 'avx2|avx512f|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  rm -rf "$output"
  # Cold: the teacher, its embedding and the proxy computed, then every method scored.
  /usr/bin/time -f "# kdprune score (cold): %e s wall, %M KiB peak" \
    target/release/kdprune score "$manifest" 2>&1 | grep -v INFO || true
  # One student on the kept 30 % (random), 10 epochs: what no method may take longer than.
  KDPRUNE_LOG=info target/release/kdprune run "$manifest" 2>&1 \
    | grep -E 'cell done method=random|where the time went' || true
  python3 - "$output" <<'PY'
import json, sys
s = json.load(open(f"{sys.argv[1]}/scores/summary.json"))
print("# per method (kdprune score, seconds of scoring and selecting keep 0.3):")
for m in s["methods"]:
    print(f'{m["method"]:<22} {m["params"]!s:<28} {m["seconds"]:8.3f} s')
print("# inputs:", {k: round(v, 2) for k, v in s["time"].items()})
PY
} | tee "$out"
echo "written $out"
