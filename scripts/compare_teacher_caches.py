"""Compares the soft-label caches (safetensors, tensor "scores") of one teacher run on two
providers, and prints both providers' images/s from `kdprune bench` JSON. Used by
scripts/gpu-check.sh: python compare_teacher_caches.py CPU_CACHE CUDA_CACHE TOL NAME CPU_JSON CUDA_JSON
"""

import glob
import json
import struct
import sys

import numpy as np


def scores(cache_dir):
    """Every `scores` tensor in a cache folder, by the file's key (train and test sets)."""
    out = {}
    for path in sorted(glob.glob(f"{cache_dir}/teacher-*.safetensors")):
        if "embedding" in path:
            continue
        with open(path, "rb") as f:
            data = f.read()
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
        t = header["scores"]
        begin, end = t["data_offsets"]
        values = np.frombuffer(data[8 + n + begin : 8 + n + end], dtype="<f4").reshape(t["shape"])
        out[path.rsplit("/", 1)[1]] = values
    return out


def main():
    cpu_dir, cuda_dir, tol, name, cpu_json, cuda_json = sys.argv[1:7]
    a, b = scores(cpu_dir), scores(cuda_dir)
    if not a or a.keys() != b.keys():
        sys.exit(f"{name}: the two providers' caches do not hold the same sets: {sorted(a)} vs {sorted(b)}")
    worst = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    rates = [json.load(open(p))["teacher_images_per_s"] for p in (cpu_json, cuda_json)]
    verdict = "agree" if worst <= float(tol) else "DISAGREE"
    print(f"{name}: CPU {rates[0]:.0f} images/s, CUDA {rates[1]:.0f} images/s; largest |difference| of log-space outputs {worst:.2e} (tolerance {tol}): {verdict}")
    if worst > float(tol):
        sys.exit(1)


if __name__ == "__main__":
    main()
