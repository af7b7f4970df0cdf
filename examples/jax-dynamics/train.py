"""Train a small model in JAX on Fashion-MNIST and write its training dynamics in the layout
kdprune's `[dynamics] from` reads (docs/manifest.md), so that kdprune's methods score a model
trained elsewhere.

    python train.py <fashion-mnist folder> <output folder> [epochs]

Writes, under the output folder:
  dynamics/batch/logits.npy  float32 [1, E, N, 10]  each example's logits in its own training
                             minibatch (before the step), rows in the epoch's shuffled order
  dynamics/batch/order.npy   int64 [1, E, N]        the example of each row
  dynamics/pass/logits.npy   float32 [1, T, N, 10]  evaluation passes over the whole set
  dynamics/pass/epochs.npy   float32 [T]            the epoch of each pass (1 and E)
  embeddings/proxy.npy       float32 [N, 256]       penultimate activations after training
"""
import gzip
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np


def read_idx(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def load(folder):
    x = read_idx(os.path.join(folder, "train-images-idx3-ubyte.gz"), 16).reshape(-1, 784)
    y = read_idx(os.path.join(folder, "train-labels-idx1-ubyte.gz"), 8).astype(np.int32)
    # The normalisation of examples/fashion-mnist.toml.
    return ((x / 255.0 - 0.2860) / 0.3530).astype(np.float32), y


def init(key, sizes):
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        key, sub = jax.random.split(key)
        bound = np.sqrt(6.0 / fan_in)
        params.append((jax.random.uniform(sub, (fan_in, fan_out), minval=-bound, maxval=bound),
                       jnp.zeros(fan_out)))
    return params


def forward(params, x):
    """Logits and the penultimate activations."""
    h = x
    for w, b in params[:-1]:
        h = jax.nn.relu(h @ w + b)
    w, b = params[-1]
    return h @ w + b, h


def loss(params, x, y):
    logits, _ = forward(params, x)
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(y.shape[0]), y]), logits


@jax.jit
def step(params, velocity, x, y, lr):
    (_, logits), grads = jax.value_and_grad(loss, has_aux=True)(params, x, y)
    velocity = jax.tree.map(lambda v, g: 0.9 * v + g, velocity, grads)
    params = jax.tree.map(lambda p, v: p - lr * v, params, velocity)
    return params, velocity, logits


predict = jax.jit(forward)


def evaluate(params, x, batch=4096):
    outs = [predict(params, x[i:i + batch]) for i in range(0, len(x), batch)]
    return (np.concatenate([np.asarray(o[0]) for o in outs]),
            np.concatenate([np.asarray(o[1]) for o in outs]))


def main():
    data_dir, out_dir = sys.argv[1], sys.argv[2]
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    x, y = load(data_dir)
    n, batch = len(y), 128
    params = init(jax.random.PRNGKey(0), [784, 256, 10])
    velocity = jax.tree.map(jnp.zeros_like, params)
    rng = np.random.default_rng(0)
    batch_logits = np.zeros((1, epochs, n, 10), np.float32)
    order = np.zeros((1, epochs, n), np.int64)
    checkpoints = sorted({1, epochs})
    pass_logits = np.zeros((1, len(checkpoints), n, 10), np.float32)
    started = time.time()
    for epoch in range(epochs):
        perm = rng.permutation(n)
        order[0, epoch] = perm
        lr = 0.05 * 0.5 * (1 + np.cos(np.pi * epoch / epochs))
        for start in range(0, n, batch):
            rows = perm[start:start + batch]
            params, velocity, logits = step(params, velocity, x[rows], y[rows], lr)
            batch_logits[0, epoch, start:start + len(rows)] = np.asarray(logits)
        if epoch + 1 in checkpoints:
            logits, _ = evaluate(params, x)
            pass_logits[0, checkpoints.index(epoch + 1)] = logits
            print(f"epoch {epoch + 1}: train accuracy {np.mean(logits.argmax(1) == y):.4f}")
    _, embedding = evaluate(params, x)
    print(f"trained {epochs} epochs in {time.time() - started:.1f} s (JAX {jax.__version__}, CPU)")
    for rel, array in [("dynamics/batch/logits.npy", batch_logits),
                       ("dynamics/batch/order.npy", order),
                       ("dynamics/pass/logits.npy", pass_logits),
                       ("dynamics/pass/epochs.npy", np.array(checkpoints, np.float32)),
                       ("embeddings/proxy.npy", embedding.astype(np.float32))]:
        path = os.path.join(out_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.save(path, array)
    print(f"wrote {out_dir}")


if __name__ == "__main__":
    main()
