"""PyTorch peers for kdprune's trainer benchmark (docs/performance.md): the same networks and
training step on CPU, in both of PyTorch's layouts, at the thread count under test.

    peers_torch.py CASE DATA LIMIT PASSES THREADS

CASE:
- resnet20: kdprune's `bench/resnet20.toml` student on CIFAR-10 (DATA = build/cifar10, the
  ImageFolder tree): conv 16 + BN + ReLU, 3 × 3 basic blocks (16, 32 s2, 64 s2; 3×3 convs
  without bias, BN, a 1×1 conv + BN shortcut where the shape changes, ReLU after the add),
  global average pooling, dense 10.
- cnn: `bench/cnn.toml` on Fashion-MNIST (DATA = build/fashion-mnist): conv16-relu-maxpool2-
  conv32-relu-maxpool2-dense10, 3×3 convs with padding 1.
- mlp: `bench/mlp.toml` on Fashion-MNIST: 784-256-128-10 with ReLUs, batches of a fresh
  shuffle each pass (as kdprune and the NumPy peer draw theirs); one layout, `torch-mlp`.

All: batch 128, cross-entropy, SGD with momentum 0.9 and weight decay 5e-4, lr 0.05. Each
layout trains PASSES passes over the first LIMIT training images after 3 warm-up batches and
reports the fastest pass as one JSON line per layout (`peer`, `samples_per_s`, `seconds`).
"""

import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

BATCH = 128


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def resnet20():
    layers = [nn.Conv2d(3, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for cout, stride in [(16, 1), (32, 2), (64, 2)]:
        for b in range(3):
            layers.append(Block(cin, cout, stride if b == 0 else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )


def mlp():
    return nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def cifar10(folder, limit):
    """The first `limit` training images (class folders in order, files sorted), normalised."""
    from PIL import Image

    root = os.path.join(folder, "train")
    classes = sorted(os.listdir(root))
    files = [(os.path.join(root, c, f), i) for i, c in enumerate(classes) for f in sorted(os.listdir(os.path.join(root, c)))]
    rng = np.random.default_rng(0)
    picked = [files[i] for i in rng.permutation(len(files))[:limit]]
    x = np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255.0 for p, _ in picked])
    mean, std = np.array([0.4914, 0.4822, 0.4465]), np.array([0.2470, 0.2435, 0.2616])
    x = ((x - mean) / std).astype(np.float32).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.tensor([y for _, y in picked])


def fashion_mnist(folder, limit):
    sys.path.insert(0, os.path.dirname(__file__))
    from peers import load

    x, y = load(folder)
    return torch.from_numpy(x[:limit].reshape(-1, 1, 28, 28).copy()), torch.from_numpy(y[:limit])


def measure(name, model, x, y, passes, channels_last, shuffle=False):
    if x.dim() == 4:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(memory_format=fmt)
        x = x.contiguous(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    model.train()

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        opt.step()

    batches = [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(x) - BATCH + 1, BATCH)]
    for xb, yb in batches[:3]:
        step(xb, yb)
    seconds = []
    for _ in range(passes):
        start = time.perf_counter()
        if shuffle:
            order = torch.randperm(len(x))
            for i in range(0, len(x) - BATCH + 1, BATCH):
                picked = order[i : i + BATCH]
                step(x[picked], y[picked])
        else:
            for xb, yb in batches:
                step(xb, yb)
        seconds.append(time.perf_counter() - start)
    samples = len(batches) * BATCH
    layout = "" if x.dim() == 2 else "-channels-last" if channels_last else "-nchw"
    print(json.dumps({"peer": f"torch-{name}{layout}", "samples_per_s": samples / min(seconds), "seconds": seconds,
                      "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)


def main():
    case, folder, limit, passes, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if case == "resnet20":
        x, y = cifar10(folder, limit)
        make = resnet20
    elif case == "cnn":
        x, y = fashion_mnist(folder, limit)
        make = small_cnn
    elif case == "mlp":
        x, y = fashion_mnist(folder, limit)
        torch.manual_seed(0)
        measure(case, mlp(), x.reshape(len(x), -1), y, passes, False, shuffle=True)
        return
    else:
        raise SystemExit(f"peers_torch: case is resnet20, cnn or mlp, not {case}")
    for channels_last in (True, False):
        torch.manual_seed(0)
        measure(case, make(), x, y, passes, channels_last)


if __name__ == "__main__":
    main()
