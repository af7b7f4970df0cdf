#!/usr/bin/env python3
"""The CIFAR-10 study's tables in docs/results.md, from its results.

    python3 scripts/cifar10_study_tables.py [docs/results/cifar10/study.results.jsonl]

Prints two Markdown tables: test accuracy (%) per method, keep and fixed α with each teacher
(mean ± sample standard deviation over the seeds that ran, `(n=3)` where three did), and one
row per `alpha = "auto"` cell with the α its held-out search chose, each candidate's held-out
accuracy, and the same cell's fixed-α students of the same seed beside it.
"""
import json
import statistics
import sys

NAMES = {
    "random": "random",
    "el2n": "EL2N (hardest)",
    "forgetting": "forgetting (hardest)",
    "dynamic-uncertainty": "dynamic uncertainty (hardest)",
    "aum": "AUM with CCS",
}
# (α, teacher) per column; α = 0 trains on labels only, whatever the teacher.
COLUMNS = [(0.0, None), (0.5, "self"), (0.9, "self"), (0.5, "tutorial-cnn"), (0.9, "tutorial-cnn")]


def teacher_of(row):
    return row.get("teacher") if row["alpha"] > 0 else None


def spread(values):
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    text = f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"
    return text if len(values) == 2 else f"{text} (n={len(values)})"


def fixed_alpha_table(rows):
    cells = {}
    for r in rows:
        if r.get("alpha_rule"):
            continue
        key = (r["method"], r["keep"], r["alpha"], teacher_of(r))
        cells.setdefault(key, []).append(100 * r["test_accuracy"])
    yield (
        "| method | keep | α = 0 | α = 0.5, self | α = 0.9, self "
        "| α = 0.5, tutorial CNN | α = 0.9, tutorial CNN |"
    )
    yield "|---|---:|---:|---:|---:|---:|---:|"
    for method, name in NAMES.items():
        for keep in sorted({k for (m, k, _, _) in cells if m == method}):
            values = [spread(cells.get((method, keep, a, t), [])) for a, t in COLUMNS]
            yield f"| {name} | {keep:.2f} | " + " | ".join(values) + " |"


def auto_table(rows):
    fixed = {
        (r["method"], r["keep"], r["seed"], r["alpha"], teacher_of(r)): 100 * r["test_accuracy"]
        for r in rows
        if not r.get("alpha_rule")
    }
    auto = sorted(
        (r for r in rows if r.get("alpha_rule")),
        key=lambda r: (list(NAMES).index(r["method"]), r["keep"], r["teacher"], r["seed"]),
    )
    yield (
        "| method | keep | teacher | seed | α chosen (held-out accuracy of each candidate, %) "
        "| auto | α = 0 | α = 0.5 | α = 0.9 |"
    )
    yield "|---|---:|---|---:|---|---:|---:|---:|---:|"
    for r in auto:
        m, k, s, t = r["method"], r["keep"], r["seed"], r["teacher"]
        trials = ", ".join(
            f"{x['alpha']:g}: {100 * x['holdout_accuracy']:.1f}" for x in r["alpha_search"]
        )
        same = [fixed.get((m, k, s, a, None if a == 0 else t)) for a in (0.0, 0.5, 0.9)]
        same = " | ".join("-" if v is None else f"{v:.2f}" for v in same)
        yield (
            f"| {NAMES[m]} | {k:.2f} | {t} | {s} | {r['alpha']:g} ({trials}) "
            f"| {100 * r['test_accuracy']:.2f} | {same} |"
        )


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "docs/results/cifar10/study.results.jsonl"
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    print("\n".join(fixed_alpha_table(rows)))
    print()
    print("\n".join(auto_table(rows)))


if __name__ == "__main__":
    main()
