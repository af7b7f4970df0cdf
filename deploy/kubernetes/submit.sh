#!/usr/bin/env bash
# Runs the three Jobs of one manifest in order, each after the one before has completed:
#   deploy/kubernetes/submit.sh
# Edit MANIFEST (and SHARDS with completions and parallelism) in the three files first.
set -euo pipefail
here="$(dirname "$0")"
for step in prepare run merge; do
  kubectl apply -f "$here/$step-job.yaml"
  kubectl wait --for=condition=complete --timeout=24h "job/kdprune-$step"
done
