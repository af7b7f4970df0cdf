"""An independent NumPy proxy for kdprune's dynamics methods (issue: "the existing dynamics
methods against an independent reference"): the same network, initialisation, update order,
momentum form and schedule as kdprune's trainer, written from its docs, not its code:

- MLP 784-256-128-10, ReLU; weights He-uniform U(±sqrt(6/fan_in)), biases 0;
- SGD as PyTorch's: g += wd·w (weights only), v = μ·v + g, w -= lr·v; the gradient's global
  norm clipped to `clip` before (kdprune clips, then the optimiser adds the decay);
- lr: linear warm-up over the first epoch's steps ((step+1)/warmup · base), then cosine to 0
  over the rest of E epochs; batches of 128 in a fresh shuffle each epoch;
- EL2N = ||softmax(s) − onehot(y)||₂ from an evaluation pass after `epoch` epochs;
- forgetting (Toneva et al.): correct → wrong transitions of each example's own training
  minibatch prediction between consecutive epochs, E when never correct; AUM (Pleiss et al.):
  the mean over epochs of the minibatch margin s_y − max_{j≠y} s_j; both over all E epochs;
- each a mean over the runs of a seed set.

    python scripts/reference_proxy.py <fashion-mnist folder> <out.npz> [runs] [epoch] [first seed] [epochs run]
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


def train(x, y, seed, epochs_total, epochs_run, el2n_epoch, lr=0.05, mu=0.9, wd=5e-4, clip=5.0,
          batch=128):
    """EL2N after `el2n_epoch` epochs, and each epoch's minibatch correctness and margin."""
    rng = np.random.default_rng(seed)
    params = init(rng, [784, 256, 128, 10])
    velocity = [[np.zeros_like(w), np.zeros_like(b)] for w, b in params]
    n = len(y)
    steps_per_epoch = -(-n // batch)
    warmup, total = steps_per_epoch, steps_per_epoch * epochs_total
    step = 0
    correct = np.zeros((epochs_run, n), bool)
    margin = np.zeros((epochs_run, n), np.float32)
    el2n = None
    for epoch in range(epochs_run):
        order = rng.permutation(n)
        for start in range(0, n, batch):
            rows = order[start:start + batch]
            acts = forward(params, x[rows])
            s = acts[-1]
            truth = s[np.arange(len(rows)), y[rows]]
            others = s.copy()
            others[np.arange(len(rows)), y[rows]] = -np.inf
            correct[epoch, rows] = s.argmax(1) == y[rows]
            margin[epoch, rows] = truth - others.max(1)
            g = softmax(s)
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
        if epoch + 1 == el2n_epoch:
            p = softmax(forward(params, x)[-1])
            p[np.arange(n), y] -= 1.0
            el2n = np.sqrt((p ** 2).sum(1))
    forgotten = (correct[:-1] & ~correct[1:]).sum(0).astype(np.float32)
    forgotten[~correct.any(0)] = epochs_run
    return el2n, forgotten, margin.mean(0)


def main():
    folder, out = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    epoch = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    first = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    epochs_run = int(sys.argv[6]) if len(sys.argv) > 6 else epoch
    x, y = load(folder)
    started = time.time()
    results = [train(x, y, first + r, 20, epochs_run, epoch) for r in range(runs)]
    el2n, forgetting, aum = (np.mean([r[i] for r in results], axis=0).astype(np.float32)
                             for i in range(3))
    np.savez(out, el2n=el2n, forgetting=forgetting, aum=aum, labels=y)
    print(f"{runs} runs from seed {first}, {epochs_run} of 20 epochs (EL2N after {epoch}): "
          f"{time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
