"""Python onnxruntime's soft-label pass, the peer of `kdprune bench --teacher-only`
(scripts/bench-teacher.sh, docs/performance.md).

The same whole pass kdprune times, from the decoded data set in memory (file decoding is not
the teacher's work and is left out on both sides): preprocess each batch (scale, mean, std,
layout), run the model, turn its output into log-space scores (ln p for probabilities), with
the same model, output, threads and batch. Prints one JSON line: images/s of the pass and of
inference alone.

usage: teacher_peer.py MODEL DATA FORMAT BATCH THREADS SCALE MEAN STD LAYOUT
  FORMAT: idx (DATA = folder with train-images-idx3-ubyte.gz) or csv (gzip CSV, label last)
  LAYOUT: flat or nchw (1 x 28 x 28)
"""

import gzip
import json
import struct
import sys
import time

import numpy as np
import onnxruntime as ort


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims[0], -1)


def read(data, fmt):
    if fmt == "idx":
        return read_idx(f"{data}/train-images-idx3-ubyte.gz").astype(np.float32)
    table = np.loadtxt(gzip.open(data, "rt"), delimiter=",", dtype=np.float32)
    return table[:, :-1]


def main():
    model, data, fmt, batch, threads, scale, mean, std, layout = sys.argv[1:10]
    batch, threads = int(batch), int(threads)
    scale, mean, std = float(scale), float(mean), float(std)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else None
    step = fixed or batch
    if fixed:
        step = max(batch // fixed, 1) * fixed
    name = inp.name
    # The float output of rank 2 (a scikit-learn model also has an int64 label output).
    output = next(o.name for o in session.get_outputs() if o.type == "tensor(float)" and len(o.shape) == 2)
    # Warm-up outside the timing, as kdprune's bench does.
    warm = np.zeros((fixed or 1,) + ((1, 28, 28) if layout == "nchw" else (inp.shape[1],)), np.float32)
    classes = session.run([output], {name: warm})[0].shape[1]

    x = read(data, fmt)
    n = len(x)
    passes, inferences = [], []
    for _ in range(3):
        seconds, inference = one_pass(session, name, output, x, classes, step, fixed, scale, mean, std, layout)
        passes.append(n / seconds)
        inferences.append(n / inference)
    print(json.dumps({
        "peer": "python-onnxruntime",
        "onnxruntime": ort.__version__,
        "model": model,
        "batch": step,
        "threads": threads,
        "images": n,
        "pass_images_per_s": max(passes),
        "passes_images_per_s": passes,
        "inference_images_per_s": max(inferences),
    }), flush=True)


def one_pass(session, name, output, x, classes, step, fixed, scale, mean, std, layout):
    """Seconds of the whole pass and of inference alone."""
    n = len(x)
    started = time.perf_counter()
    out = np.empty((n, classes), np.float32)
    inference = 0.0
    for start in range(0, n, step):
        rows = x[start : start + step]
        pre = ((rows / scale - mean) / std).astype(np.float32)
        if layout == "nchw":
            pre = pre.reshape(-1, 1, 28, 28)
        t = time.perf_counter()
        if fixed:
            parts = [session.run([output], {name: pre[i : i + fixed]})[0] for i in range(0, len(pre), fixed)]
            y = np.concatenate(parts)
        else:
            y = session.run([output], {name: pre})[0]
        inference += time.perf_counter() - t
        if np.allclose(y.sum(1), 1.0, atol=1e-3) and (y >= 0).all():
            y = np.log(np.maximum(y, 1e-30))
        out[start : start + len(rows)] = y
    return time.perf_counter() - started, inference


if __name__ == "__main__":
    main()
