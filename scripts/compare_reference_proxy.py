"""Compares kdprune's EL2N (two seed sets of its proxy) with the NumPy reference's (two seed
sets): Spearman correlations between every pair, and the class make-up of the hardest 10 %
and 30 % (Fashion-MNIST's classes by name). Prints the CPU.

    python scripts/compare_reference_proxy.py <kdprune A .npy> <kdprune B .npy> <ref A .npz> <ref B .npz>
"""
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


def main():
    ka, kb = np.load(sys.argv[1]), np.load(sys.argv[2])
    ra, rb = np.load(sys.argv[3]), np.load(sys.argv[4])
    labels = ra["labels"]
    sets = {"kdprune A": ka, "kdprune B": kb, "reference A": ra["el2n"], "reference B": rb["el2n"]}
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        cpu = "unknown"
    print(f"CPU: {cpu}")
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
