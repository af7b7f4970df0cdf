"""Compares kdprune's EL2N, forgetting and AUM (two seed sets of its proxy) with the NumPy
reference's (two seed sets): Spearman correlations between every pair, and the class make-up
of the hardest 10 % and 30 % (Fashion-MNIST's classes by name; AUM's hardest are its lowest).
Prints the CPU.

    python scripts/compare_reference_proxy.py <kdprune A scores/> <kdprune B scores/> <ref A .npz> <ref B .npz>
"""
import glob
import os
import sys

import numpy as np

CLASSES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Boot"]


def ranks(v):
    r = np.empty(len(v))
    r[np.argsort(v, kind="stable")] = np.arange(len(v))
    return r


def spearman(a, b):
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def kdprune_scores(folder, method):
    (path,) = glob.glob(os.path.join(folder, f"{method}_*_seed0.scores.npy"))
    return np.load(path)


def main():
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        cpu = "unknown"
    print(f"CPU: {cpu}")
    ra, rb = np.load(sys.argv[3]), np.load(sys.argv[4])
    for method in ("el2n", "forgetting", "aum"):
        sign = -1.0 if method == "aum" else 1.0
        sets = {
            "kdprune A": sign * kdprune_scores(sys.argv[1], method),
            "kdprune B": sign * kdprune_scores(sys.argv[2], method),
            "reference A": sign * ra[method],
            "reference B": sign * rb[method],
        }
        print(f"\n== {method} ==")
        report(sets, ra["labels"])


def report(sets, labels):
    names = list(sets)
    print("Spearman:")
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            print(f"  {names[i]:<12} vs {names[j]:<12} {spearman(sets[names[i]], sets[names[j]]):.4f}")
    for frac in (0.1, 0.3):
        k = int(frac * len(labels))
        print(f"hardest {int(frac * 100)} % ({k}) by class:")
        print("  " + " " * 12 + "".join(f"{c:>9}" for c in CLASSES))
        for name, v in sets.items():
            top = np.argsort(-v, kind="stable")[:k]
            counts = np.bincount(labels[top], minlength=10)
            print(f"  {name:<12}" + "".join(f"{c:>9}" for c in counts))


if __name__ == "__main__":
    main()
