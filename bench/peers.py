"""Training-throughput peers for kdprune's student benchmark (docs/performance.md).

Same data (Fashion-MNIST, 60 000 images, normalised), same networks, same batch (128), same
update (SGD, momentum 0.9, weight decay 5e-4 on weights), samples/s printed as JSON lines.
The MLP peers train PASSES epochs (argument 4, default 1) and report the fastest, as
`kdprune bench --epochs N` does; the CNN peers train one pass over the first CNN_LIMIT images.


- numpy-mlp:   784-256-128-10 MLP step written in NumPy (matmuls on OpenBLAS)
- sklearn-mlp: scikit-learn MLPClassifier, hidden (256, 128), solver sgd, batch 128
- numpy-cnn:   conv16-relu-maxpool2-conv32-relu-maxpool2-dense10 by im2col in NumPy
- jax-mlp / jax-cnn: the same networks as jitted JAX steps (XLA CPU), when jax is installed
- numpy-gemm:  f32 GEMM rate of OpenBLAS (1024³, best of 5), a second measure of the machine's peak

Run with OPENBLAS_NUM_THREADS / OMP_NUM_THREADS set to the thread count under test.
"""

import gzip
import json
import struct
import sys
import time

import numpy as np

BATCH = 128
LR, MOM, WD = 0.05, 0.9, 5e-4


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(folder):
    x = read_idx(f"{folder}/train-images-idx3-ubyte.gz").astype(np.float32)
    y = read_idx(f"{folder}/train-labels-idx1-ubyte.gz").astype(np.int64)
    x = ((x / 255.0 - 0.2860) / 0.3530).astype(np.float32)
    return x, y


def report(name, samples, seconds, **extra):
    """`seconds`: one pass's time, or a list of them (the fastest gives the rate)."""
    passes = seconds if isinstance(seconds, list) else [seconds]
    print(json.dumps({"peer": name, "samples_per_s": samples / min(passes), "seconds": passes, **extra}), flush=True)


def he(rng, fan_in, shape):
    b = np.sqrt(6.0 / fan_in)
    return rng.uniform(-b, b, size=shape).astype(np.float32)


def softmax_ce_grad(logits, y):
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return p / len(y)


def numpy_gemm(n=1024, reps=5):
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    kernel = "unknown"
    try:
        import threadpoolctl

        kernel = next(
            (i.get("architecture", "unknown") for i in threadpoolctl.threadpool_info() if i.get("internal_api") == "openblas"),
            "unknown",
        )
    except ImportError:
        pass
    print(json.dumps({"peer": "numpy-gemm", "gflops": 2 * n**3 / best / 1e9, "openblas_kernel": kernel}), flush=True)


def numpy_mlp(x, y, passes):
    rng = np.random.default_rng(0)
    x = x.reshape(len(x), -1)
    sizes = [784, 256, 128, 10]
    W = [he(rng, a, (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    B = [np.zeros(b, np.float32) for b in sizes[1:]]
    VW = [np.zeros_like(w) for w in W]
    VB = [np.zeros_like(b) for b in B]
    seconds = []
    for _ in range(passes):
        order = rng.permutation(len(x))
        start = time.perf_counter()
        numpy_mlp_epoch(x, y, order, W, B, VW, VB)
        seconds.append(time.perf_counter() - start)
    report("numpy-mlp", len(x), seconds)


def numpy_mlp_epoch(x, y, order, W, B, VW, VB):
    for s in range(0, len(x), BATCH):
        idx = order[s : s + BATCH]
        a = [x[idx]]
        for i in range(3):
            z = a[-1] @ W[i] + B[i]
            a.append(np.maximum(z, 0) if i < 2 else z)
        g = softmax_ce_grad(a[-1], y[idx])
        for i in (2, 1, 0):
            gw = a[i].T @ g
            gb = g.sum(0)
            if i > 0:
                g = (g @ W[i].T) * (a[i] > 0)
            VW[i] = MOM * VW[i] + gw + WD * W[i]
            VB[i] = MOM * VB[i] + gb
            W[i] -= LR * VW[i]
            B[i] -= LR * VB[i]


def sklearn_mlp(x, y, passes):
    from sklearn.neural_network import MLPClassifier

    x = x.reshape(len(x), -1)
    clf = MLPClassifier(
        hidden_layer_sizes=(256, 128), solver="sgd", batch_size=BATCH, learning_rate_init=LR,
        momentum=MOM, nesterovs_momentum=False, alpha=WD, max_iter=1, shuffle=True, random_state=0,
    )
    clf.partial_fit(x[:BATCH * 4], y[:BATCH * 4], classes=np.arange(10))
    seconds = []
    for _ in range(passes):
        start = time.perf_counter()
        clf.partial_fit(x, y)
        seconds.append(time.perf_counter() - start)
    report("sklearn-mlp", len(x), seconds)


def im2col(x, k, p):
    b, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))  # b c h w k k
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(b * h * w, c * k * k)


def col2im(cols, shape, k, p):
    b, c, h, w = shape
    cols = cols.reshape(b, h, w, c, k, k)
    dx = np.zeros((b, c, h + 2 * p, w + 2 * p), np.float32)
    for ky in range(k):
        for kx in range(k):
            dx[:, :, ky : ky + h, kx : kx + w] += cols[:, :, :, :, ky, kx].transpose(0, 3, 1, 2)
    return dx[:, :, p : p + h, p : p + w]


def numpy_cnn(x, y, limit):
    rng = np.random.default_rng(0)
    x = x.reshape(-1, 1, 28, 28)[:limit]
    y = y[:limit]
    w1 = he(rng, 9, (16, 9)); b1 = np.zeros(16, np.float32)
    w2 = he(rng, 144, (32, 144)); b2 = np.zeros(32, np.float32)
    w3 = he(rng, 32 * 49, (32 * 49, 10)); b3 = np.zeros(10, np.float32)
    params = [w1, b1, w2, b2, w3, b3]
    vel = [np.zeros_like(p) for p in params]
    order = rng.permutation(len(x))

    def conv(a, w, b):
        n, c, h, ww = a.shape
        cols = im2col(a, 3, 1)
        out = cols @ w.T + b
        return out.reshape(n, h, ww, -1).transpose(0, 3, 1, 2), cols

    def pool(a):
        n, c, h, w = a.shape
        r = a.reshape(n, c, h // 2, 2, w // 2, 2)
        m = r.max(axis=(3, 5))
        mask = r == m[:, :, :, None, :, None]
        return m, mask

    start = time.perf_counter()
    for s in range(0, len(x), BATCH):
        idx = order[s : s + BATCH]
        a0 = x[idx]
        z1, c1 = conv(a0, w1, b1); r1 = np.maximum(z1, 0); p1, m1 = pool(r1)
        z2, c2 = conv(p1, w2, b2); r2 = np.maximum(z2, 0); p2, m2 = pool(r2)
        f = p2.reshape(len(idx), -1)
        logits = f @ w3 + b3
        g = softmax_ce_grad(logits, y[idx])
        gw3 = f.T @ g; gb3 = g.sum(0)
        g = (g @ w3.T).reshape(p2.shape)
        g = (m2 * g[:, :, :, None, :, None]).reshape(r2.shape) * (z2 > 0)
        gm = g.transpose(0, 2, 3, 1).reshape(-1, 32)
        gw2 = gm.T @ c2; gb2 = gm.sum(0)
        g = col2im(gm @ w2, p1.shape, 3, 1)
        g = (m1 * g[:, :, :, None, :, None]).reshape(r1.shape) * (z1 > 0)
        gm = g.transpose(0, 2, 3, 1).reshape(-1, 16)
        gw1 = gm.T @ c1; gb1 = gm.sum(0)
        grads = [gw1, gb1, gw2, gb2, gw3, gb3]
        for i, (p, gr) in enumerate(zip(params, grads)):
            decay = WD * p if i % 2 == 0 else 0.0
            vel[i] = MOM * vel[i] + gr + decay
            p -= LR * vel[i]
    report("numpy-cnn", len(x), time.perf_counter() - start)


def jax_peers(x, y, cnn_limit, passes):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        print(json.dumps({"peer": "jax", "skipped": "jax is not installed"}))
        return
    key = jax.random.PRNGKey(0)

    def init(shapes):
        out = []
        for fan_in, shape in shapes:
            b = np.sqrt(6.0 / fan_in)
            out.append(jnp.asarray(np.random.default_rng(len(out)).uniform(-b, b, shape).astype(np.float32)))
        return out

    def loss_fn(apply):
        def f(params, xb, yb):
            logits = apply(params, xb)
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(xb.shape[0]), yb])
        return f

    def step_fn(apply):
        grad = jax.grad(loss_fn(apply))

        @jax.jit
        def step(params, vel, xb, yb):
            g = grad(params, xb, yb)
            vel = [MOM * v + gi + (WD * p if p.ndim > 1 else 0.0) for v, gi, p in zip(vel, g, params)]
            params = [p - LR * v for p, v in zip(params, vel)]
            return params, vel
        return step

    def mlp_apply(p, xb):
        h = jax.nn.relu(xb @ p[0] + p[1])
        h = jax.nn.relu(h @ p[2] + p[3])
        return h @ p[4] + p[5]

    def cnn_apply(p, xb):
        dn = ("NCHW", "OIHW", "NCHW")
        h = jax.lax.conv_general_dilated(xb, p[0], (1, 1), "SAME", dimension_numbers=dn) + p[1][None, :, None, None]
        h = jax.lax.reduce_window(jax.nn.relu(h), -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        h = jax.lax.conv_general_dilated(h, p[2], (1, 1), "SAME", dimension_numbers=dn) + p[3][None, :, None, None]
        h = jax.lax.reduce_window(jax.nn.relu(h), -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        return h.reshape(xb.shape[0], -1) @ p[4] + p[5]

    for name, apply, shapes, xs, n, name_passes in [
        ("jax-mlp", mlp_apply,
         [(784, (784, 256)), (1, (256,)), (256, (256, 128)), (1, (128,)), (128, (128, 10)), (1, (10,))],
         x.reshape(len(x), -1), len(x), passes),
        ("jax-cnn", cnn_apply,
         [(9, (16, 1, 3, 3)), (1, (16,)), (144, (32, 16, 3, 3)), (1, (32,)), (1568, (1568, 10)), (1, (10,))],
         x.reshape(-1, 1, 28, 28), cnn_limit, 1),
    ]:
        params = init(shapes)
        params = [jnp.zeros_like(p) if p.ndim == 1 else p for p in params]
        vel = [jnp.zeros_like(p) for p in params]
        step = step_fn(apply)
        n = n - n % BATCH  # one compiled batch shape
        rng = np.random.default_rng(0)
        xb0, yb0 = jnp.asarray(xs[:BATCH]), jnp.asarray(y[:BATCH])
        jax.block_until_ready(step(params, vel, xb0, yb0))  # compile outside the timing
        seconds = []
        for _ in range(name_passes):
            order = rng.permutation(n)
            start = time.perf_counter()
            for s in range(0, n, BATCH):
                idx = order[s : s + BATCH]
                params, vel = step(params, vel, jnp.asarray(xs[idx]), jnp.asarray(y[idx]))
            jax.block_until_ready(params)
            seconds.append(time.perf_counter() - start)
        report(name, n, seconds, jax=jax.__version__)


def main():
    folder = sys.argv[1]
    cnn_limit = int(sys.argv[2]) if len(sys.argv) > 2 else 60000
    which = sys.argv[3].split(",") if len(sys.argv) > 3 and sys.argv[3] else ["numpy-gemm", "numpy-mlp", "sklearn-mlp", "numpy-cnn", "jax"]
    passes = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    if "numpy-gemm" in which:
        numpy_gemm()
    x, y = load(folder)
    if "numpy-mlp" in which:
        numpy_mlp(x, y, passes)
    if "sklearn-mlp" in which:
        sklearn_mlp(x, y, passes)
    if "numpy-cnn" in which:
        numpy_cnn(x, y, cnn_limit)
    if "jax" in which:
        jax_peers(x, y, cnn_limit, passes)


if __name__ == "__main__":
    main()
