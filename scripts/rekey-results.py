#!/usr/bin/env python3
"""Gives results of a manifest the keys this kdprune computes for them, where the kept subset
proves them the same cells: for results keyed by a plugin library's bytes (before plugins
declared their source hash), or by a library since rebuilt, which a run would train again.

    scripts/rekey-results.py MANIFEST RESULTS_JSONL [--set KEY=VALUE ...]

For each result whose key is not one of a student still to train (`kdprune check --json`), it looks for the student still to
train with the same method, parameters, policy, keep, seed, α (or "auto" and its rule),
teacher, τ and `[student]`, and takes that student's key and configuration key only if the
kept indices the result recorded (its `indices` file, in the manifest's output folder) are
byte for byte those `kdprune score` selects now (a keep of 1 keeps every example). Anything
else stays as it was, and is counted. What a result does not record cannot be compared: the
teacher's and the data's content; rekey only results of the same data and teachers.
RESULTS_JSONL is rewritten in place (atomically); run it while no `kdprune run` writes the
folder, with a kdprune built from this checkout (target/release/kdprune).
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KDPRUNE = ROOT / "target/release/kdprune"


def kdprune_json(*args):
    out = subprocess.run([str(KDPRUNE), *args, "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"rekey-results: kdprune {args[0]} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def identity(r, auto, alpha):
    """What a result records of its student, as one comparable value (τ only when it
    distils; the teacher is recorded only then)."""
    distils = auto or (alpha or 0.0) > 0.0
    student = {k: v for k, v in (r["student"] or {}).items() if k != "save"}
    return (r["method"], canonical(r["params"]), r["policy"], round(float(r["keep"]), 6),
            int(r["seed"]), None if auto else round(float(alpha), 6), auto,
            r.get("alpha_rule") if auto else None, r.get("teacher") if distils else None,
            round(float(r["temperature"]), 6) if distils else None, canonical(student))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest")
    parser.add_argument("results")
    parser.add_argument("--set", action="append", default=[], dest="sets")
    args = parser.parse_args()
    sets = [a for s in args.sets for a in ("--set", s)]

    check = kdprune_json("check", args.manifest, *sets)
    if "pending" not in check["cells"]:
        sys.exit(f"rekey-results: {KDPRUNE} lists no pending students; build it from this "
                 "checkout (cargo build --release -p kdprune)")
    output = Path(check["output"]["folder"])
    pending = {identity(p, p["auto"], p["alpha"]): p for p in check["cells"]["pending"]}
    pending_keys = {p["key"] for p in check["cells"]["pending"]}

    scored = kdprune_json("score", args.manifest, *sets)
    kept_now = {}
    for m in scored["methods"]:
        for k in m["keeps"]:
            at = (m["method"], canonical(m["params"]), m["policy"], round(float(k["keep"]), 6),
                  int(m["seed"]))
            kept_now[at] = output / k["indices"]

    lines = Path(args.results).read_text().splitlines()
    rekeyed, other, differ = 0, 0, 0
    out = []
    for line in lines:
        if not line.strip():
            continue
        row = json.loads(line)
        auto = row.get("alpha_rule") is not None
        who = identity(row, auto, row["alpha"])
        p = pending.get(who)
        if row["key"] in pending_keys or p is None:
            # Current already (its student is done, so not pending), or not this plan's.
            other += 1
            out.append(line)
            continue
        if float(row["keep"]) < 1.0:
            now = kept_now.get(who[:5])
            then = output / row["indices"]
            if now is None or not then.exists() or now.read_bytes() != then.read_bytes():
                differ += 1
                out.append(line)
                continue
        # The line as it was but for its two keys.
        for field in ("key", "config"):
            if field not in row:
                line = line[:-1] + "," + json.dumps({field: p[field]}, separators=(",", ":"))[1:]
                continue
            old = json.dumps({field: row[field]}, separators=(",", ":"))[1:-1]
            new = json.dumps({field: p[field]}, separators=(",", ":"))[1:-1]
            assert line.count(old) == 1, f"{field} of {row['key']} not found once in its line"
            line = line.replace(old, new)
        del pending[who]
        rekeyed += 1
        out.append(line)
    tmp = args.results + ".tmp"
    with open(tmp, "w") as f:
        f.write("".join(l + "\n" for l in out))
    os.replace(tmp, args.results)
    print(f"rekey-results: {rekeyed} result(s) rekeyed; {differ} kept another subset or lost "
          f"their indices file; {other} current already or of no student still to train",
          file=sys.stderr)


if __name__ == "__main__":
    main()
