"""An independent NumPy proxy for kdprune's dynamics methods (issue: "the existing dynamics
methods against an independent reference"): the same network, initialisation, update order,
momentum form and schedule as kdprune's trainer, written from its docs, not its code:

- MLP 784-256-128-10, ReLU; weights He-uniform U(±sqrt(6/fan_in)), biases 0;
- SGD as PyTorch's: g += wd·w (weights only), v = μ·v + g, w -= lr·v; the gradient's global
  norm clipped to `clip` before (kdprune clips, then the optimiser adds the decay);
- lr: linear warm-up over the first epoch's steps ((step+1)/warmup · base), then cosine to 0
  over the rest of E epochs; batches of 128 in a fresh shuffle each epoch;
- EL2N = ||softmax(s) − onehot(y)||₂ from an evaluation pass after `epoch` epochs, mean over
  the runs of a seed set.

    python scripts/reference_proxy.py <fashion-mnist folder> <out.npz> [runs] [epoch] [first seed]
"""
import gzip
import os
import sys
import time

import numpy as np


def load(folder):
    def idx(name, offset):
        with gzip.open(os.path.join(folder, name), "rb") as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)
    x = idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 784).astype(np.float32)
    y = idx("train-labels-idx1-ubyte.gz", 8).astype(np.int64)
    return (x / 255.0 - 0.2860) / 0.3530, y


def init(rng, sizes):
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = np.sqrt(6.0 / fan_in)
        params.append([rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32),
                       np.zeros(fan_out, np.float32)])
    return params


def forward(params, x):
    acts = [x]
    for i, (w, b) in enumerate(params):
        z = acts[-1] @ w + b
        acts.append(np.maximum(z, 0) if i < len(params) - 1 else z)
    return acts


def softmax(s):
    e = np.exp(s - s.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def train(x, y, seed, epochs_total, epochs_run, lr=0.05, mu=0.9, wd=5e-4, clip=5.0, batch=128):
    rng = np.random.default_rng(seed)
    params = init(rng, [784, 256, 128, 10])
    velocity = [[np.zeros_like(w), np.zeros_like(b)] for w, b in params]
    n = len(y)
    steps_per_epoch = -(-n // batch)
    warmup, total = steps_per_epoch, steps_per_epoch * epochs_total
    step = 0
    for _ in range(epochs_run):
        order = rng.permutation(n)
        for start in range(0, n, batch):
            rows = order[start:start + batch]
            acts = forward(params, x[rows])
            g = softmax(acts[-1])
            g[np.arange(len(rows)), y[rows]] -= 1.0
            g /= len(rows)
            grads = []
            for i in range(len(params) - 1, -1, -1):
                w, _ = params[i]
                grads.append([acts[i].T @ g, g.sum(0)])
                if i > 0:
                    g = (g @ w.T) * (acts[i] > 0)
            grads.reverse()
            norm = np.sqrt(sum((gw ** 2).sum() + (gb ** 2).sum() for gw, gb in grads))
            scale = min(1.0, clip / (norm + 1e-6))
            if step < warmup:
                rate = lr * (step + 1) / warmup
            else:
                rate = lr * 0.5 * (1 + np.cos(np.pi * (step - warmup) / max(total - warmup, 1)))
            for (w, b), (gw, gb), v in zip(params, grads, velocity):
                gw = gw * scale + wd * w
                gb = gb * scale
                v[0] = mu * v[0] + gw
                v[1] = mu * v[1] + gb
                w -= rate * v[0]
                b -= rate * v[1]
            step += 1
    p = softmax(forward(params, x)[-1])
    p[np.arange(n), y] -= 1.0
    return np.sqrt((p ** 2).sum(1))


def main():
    folder, out = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    epoch = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    first = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    x, y = load(folder)
    started = time.time()
    el2n = np.mean([train(x, y, first + r, 20, epoch) for r in range(runs)], axis=0)
    np.savez(out, el2n=el2n.astype(np.float32), labels=y)
    print(f"{runs} runs from seed {first}, EL2N after {epoch} of 20 epochs: {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
