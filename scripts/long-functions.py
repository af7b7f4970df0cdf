#!/usr/bin/env python3
"""Functions of host/src longer than a limit (default 120 lines), longest first, tests left
out: `python3 scripts/long-functions.py [LIMIT]`."""
import os, re, sys

LIMIT = int(sys.argv[1]) if len(sys.argv) > 1 else 120
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
for n, p, line, name in found:
    if n > LIMIT:
        print(f"{n:5} {p}:{line} {name}")
