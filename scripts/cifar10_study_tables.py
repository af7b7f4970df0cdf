#!/usr/bin/env python3
"""The CIFAR-10 study's tables in docs/results.md, from its results.

    python3 scripts/cifar10_study_tables.py [--compare] [docs/results/cifar10/study.results.jsonl]

Prints two Markdown tables: test accuracy (%) per method, keep and fixed α with each teacher
(mean ± sample standard deviation over the seeds that ran, `(n=3)` where three did), and one
row per `alpha = "auto"` cell with the α its held-out search chose, each candidate's held-out
accuracy, and the same cell's fixed-α students of the same seed beside it.

With `--compare`, prints instead the differences behind the paper's four questions, each with
its noise: a difference is beyond noise when it is more than twice its Welch standard error
over seeds (unpaired), weak where it is beyond noise but Welch's t test gives p ≥ 0.05, and
has no noise estimate when either side ran one seed. "Best" picks
the α (and teacher) with the highest mean test accuracy, so a difference against a best is an
optimistic one: the pick itself rides on the seeds' noise.
"""
import json
import math
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
    cells = fixed_cells(rows)
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


def fixed_cells(rows):
    """`{(method, keep, α, teacher): [accuracy %, one per seed]}` of the fixed-α students."""
    cells = {}
    for r in rows:
        if not r.get("alpha_rule"):
            key = (r["method"], r["keep"], r["alpha"], teacher_of(r))
            cells.setdefault(key, []).append(100 * r["test_accuracy"])
    return cells


def incomplete_beta(a, b, x):
    """The regularised incomplete beta function I_x(a, b), by Lentz's continued fraction
    (Numerical Recipes' `betai`, 3rd ed. §6.4)."""
    if x <= 0.0 or x >= 1.0:
        return min(max(x, 0.0), 1.0)
    if x > (a + 1) / (a + b + 2):
        return 1.0 - incomplete_beta(b, a, 1.0 - x)
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x)
    ) / a
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 300):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-12:
            break
    return front * f


def t_p(t, df):
    """Two-sided p of Student's t at `df` degrees of freedom."""
    return incomplete_beta(df / 2, 0.5, df / (df + t * t))


def welch(a, b):
    """Welch's t test of `mean(a) − mean(b)` (unequal variances, Welch–Satterthwaite degrees of
    freedom): its standard error and two-sided p."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    d = statistics.mean(a) - statistics.mean(b)
    if se == 0:
        return se, 1.0 if d == 0 else 0.0
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return se, t_p(d / se, df)


def difference(a, b):
    """`mean(a) − mean(b)`, with `beyond noise`, `within noise` or `one seed`; a difference
    beyond noise whose Welch t test gives p ≥ 0.05 (with three seeds a side, t's critical value
    is 2.8 to 4.3 standard errors, not 2) is marked weak."""
    d = statistics.mean(a) - statistics.mean(b)
    if min(len(a), len(b)) < 2:
        return f"{d:+.2f} (one seed)"
    se, p = welch(a, b)
    if abs(d) <= 2 * se:
        verdict = "within noise"
    else:
        verdict = "beyond noise" if p < 0.05 else "beyond noise, weak"
    return f"{d:+.2f} ({verdict}, 2SE {2 * se:.2f}, Welch p {p:.3f}, n={min(len(a), len(b))})"


def best(cells, method, keep, teachers, alphas=(0.5, 0.9)):
    """The seeds of the best mean among the given α and teachers, and its label."""
    found = [
        (statistics.mean(v), v, f"{t} α {a:g}")
        for t in teachers
        for a in alphas
        if (v := cells.get((method, keep, a, t)))
    ]
    return max(found, key=lambda f: f[0])[1:] if found else (None, None)


def comparisons(rows):
    cells = fixed_cells(rows)
    teachers = ("self", "tutorial-cnn")
    keeps = sorted({k for (_, k, _, _) in cells if k < 1})
    yield "| method | keep | 1: best KD − α 0, self | 1: the same, tutorial CNN | " \
        "3: α 0.9 − 0.5, self | 3: α 0.9 − 0.5, tutorial CNN | 4: best tutorial CNN − best self |"
    yield "|---|---:|---|---|---|---|---|"
    for method, name in NAMES.items():
        for keep in keeps:
            zero = cells.get((method, keep, 0.0, None))
            line = [name, f"{keep:.2f}"]
            for t in teachers:
                kd, label = best(cells, method, keep, [t])
                line.append(f"{difference(kd, zero)}, {label}" if kd and zero else "-")
            for t in teachers:
                hi, lo = cells.get((method, keep, 0.9, t)), cells.get((method, keep, 0.5, t))
                line.append(difference(hi, lo) if hi and lo else "-")
            small, _ = best(cells, method, keep, ["tutorial-cnn"])
            large, _ = best(cells, method, keep, ["self"])
            line.append(difference(small, large) if small and large else "-")
            yield "| " + " | ".join(line) + " |"
    yield ""
    yield "| method | keep | 2: random's best KD − the method's best KD | random at α 0 − the method at α 0 |"
    yield "|---|---:|---|---|"
    for method, name in NAMES.items():
        if method == "random":
            continue
        for keep in keeps:
            rand, rand_label = best(cells, "random", keep, teachers)
            other, label = best(cells, method, keep, teachers)
            kd = f"{difference(rand, other)}: random {rand_label} against {label}" if rand and other else "-"
            zero_r, zero_m = cells.get(("random", keep, 0.0, None)), cells.get((method, keep, 0.0, None))
            zero = difference(zero_r, zero_m) if zero_r and zero_m else "-"
            yield f"| {name} | {keep:.2f} | {kd} | {zero} |"


def main():
    args = [a for a in sys.argv[1:] if a != "--compare"]
    path = args[0] if args else "docs/results/cifar10/study.results.jsonl"
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if "--compare" in sys.argv[1:]:
        print("\n".join(comparisons(rows)))
        return
    print("\n".join(fixed_alpha_table(rows)))
    print()
    print("\n".join(auto_table(rows)))


if __name__ == "__main__":
    main()
