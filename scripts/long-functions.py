#!/usr/bin/env python3
"""Functions of host/src longer than a limit (default 120 lines), longest first, tests left
out: `python3 scripts/long-functions.py [LIMIT] [--check]`; with `--check`, exit 1 when there
is one (scripts/test.sh runs it)."""
import os, re, sys

ARGS = [a for a in sys.argv[1:] if a != "--check"]
LIMIT = int(ARGS[0]) if ARGS else 120
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "host", "src")
found = []
for d, _, fs in os.walk(ROOT):
    for f in fs:
        if not f.endswith(".rs"):
            continue
        path = os.path.join(d, f)
        lines = open(path).read().split("\n")
        cut = next((i for i, l in enumerate(lines) if re.match(r"\s*#\[cfg\(test\)\]", l)), len(lines))
        i = 0
        while i < cut:
            m = re.match(r"^(\s*)(pub(\([a-z]+\))? )?(unsafe )?fn ([a-z_0-9]+)", lines[i])
            if m:
                indent = m.group(1)
                j = i
                while j < len(lines) and not (lines[j].startswith(indent + "}") and len(lines[j].rstrip()) == len(indent) + 1):
                    j += 1
                found.append((j - i + 1, os.path.relpath(path, ROOT), i + 1, m.group(5)))
                i = j
            i += 1
found.sort(reverse=True)
over = [f for f in found if f[0] > LIMIT]
for n, p, line, name in over:
    print(f"{n:5} {p}:{line} {name}")
if "--check" in sys.argv and over:
    print(f"{len(over)} function(s) over {LIMIT} lines; cut them into stages a reader can hold")
    sys.exit(1)
