"""A pruning method in NumPy, run by kdprune's `external` plugin: the class-balanced training
loss — each example's mean training loss (over the proxy's runs and epochs) divided by the
mean of its class, so that a hard example of an easy class ranks like a hard example of a
hard class. High = hard.

kdprune writes the inputs into the folder given as the last argument: features.npy,
labels.npy, request.json, and one .npy per input of the manifest's `inputs`.
"""
import json
import sys
from pathlib import Path

import numpy as np

folder = Path(sys.argv[-1])
request = json.loads((folder / "request.json").read_text())
labels = np.load(folder / "labels.npy")                     # int64 [N]
loss = np.load(folder / request["inputs"]["dynamics/batch/loss"])  # f32 [R, E, N]

per_example = loss.mean(axis=(0, 1))                        # [N]
class_mean = np.bincount(labels, weights=per_example, minlength=request["num_classes"])
class_mean /= np.maximum(np.bincount(labels, minlength=request["num_classes"]), 1)
scores = per_example / np.maximum(class_mean[labels], 1e-12)

np.save(folder / "scores.npy", scores.astype(np.float32))
