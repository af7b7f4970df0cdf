#!/usr/bin/env bash
# Submits the three steps of one manifest as Slurm jobs, each waiting for the one before:
#   deploy/slurm/submit.sh experiments/fashion-mnist-methods.toml
# The array size (--array=0-3, four shards) is in prepare.sbatch and run.sbatch; change both
# together. The output folder and cache_dir must be on a file system every node sees.
set -euo pipefail
here="$(dirname "$0")"
manifest="$1"
prepare=$(sbatch --parsable "$here/prepare.sbatch" "$manifest")
run=$(sbatch --parsable --dependency="afterok:${prepare}" "$here/run.sbatch" "$manifest")
sbatch --parsable --dependency="afterok:${run}" "$here/merge.sbatch" "$manifest"
