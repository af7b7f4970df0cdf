#!/usr/bin/env python3
"""The host library's import graph, file by file: the cycles, and the imports that run upward
against the floor order of docs/architecture.md.

    python3 scripts/imports.py           # summary: modules, imports, cycles, upward imports
    python3 scripts/imports.py --edges   # every import, file to file
    python3 scripts/imports.py --check   # exit 1 on a cycle or on more upward imports than allowed

A module is a file of host/src (a mod.rs names its folder). An import is any `crate::` or
`super::` path in the file's code outside `#[cfg(test)] mod tests` (comments left out), `use`
trees expanded; a path ends at the longest prefix that is a module."""
import os, re, sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "host", "src")

# The floors, lowest first. A module's floor is its longest listed prefix; an import from a
# module to one on a higher floor is upward. Within a floor, imports may point either way, but
# never in a cycle.
FLOORS = [
    ["hash", "tensor", "suggest", "progress", "shard"],
    ["train::kernels"],
    ["select"],
    ["train"],
    ["data"],
    ["dynamics"],
    ["inputs"],
    ["plugins"],
    ["teacher"],
    ["manifest"],
    ["results"],
    ["report"],
    ["experiment", "bench"],
    ["crate"],
]
# Upward imports allowed, each with its reason in docs/architecture.md.
ALLOWED_UP = set()


def module_of(path):
    parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return "::".join(parts) if parts else "crate"


def strip(src):
    src = re.sub(r"//[^\n]*", "", src)
    cut = re.search(r"#\[cfg\(test\)\]\s*mod tests", src)
    return src[: cut.start()] if cut else src


def expand(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = tree.strip()
    m = re.match(r"^([^{]*)\{(.*)\}$", tree, re.S)
    if not m:
        return [tree.split(" as ")[0].strip()]
    head, body = m.group(1), m.group(2)
    items, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            items.append(cur); cur = ""; continue
        depth += ch == "{"; depth -= ch == "}"; cur += ch
    items.append(cur)
    out = []
    for it in items:
        if it.strip():
            out += [head + e for e in expand(it)]
    return out


def main():
    files = {}
    for d, _, fs in os.walk(ROOT):
        for f in fs:
            if f.endswith(".rs") and f != "main.rs":
                files[module_of(os.path.join(d, f))] = os.path.join(d, f)
    modules = set(files)

    def resolve(parts):
        for n in range(len(parts), 0, -1):
            m = "::".join(parts[:n])
            if m in modules:
                return m
        return None

    edges = defaultdict(set)
    for m, p in files.items():
        src = strip(open(p).read())
        base_here = [] if m == "crate" else m.split("::")
        # Inline modules (`mod avx2 { ... }`): a `super::` inside one is relative to it.
        inline = []
        for mm in re.finditer(r"\bmod\s+([a-z_0-9]+)\s*\{", src):
            depth, i = 1, mm.end()
            while depth and i < len(src):
                depth += src[i] == "{"; depth -= src[i] == "}"; i += 1
            inline.append((mm.start(), i, mm.group(1)))
        def here_at(pos):
            return base_here + [name for a, b, name in inline if a <= pos < b]
        paths = []
        for u in re.finditer(r"\buse\s+([^;]+);", src):
            paths += [(e, u.start()) for e in expand(u.group(1))]
        for u in re.finditer(r"\b((?:crate|super)(?:::(?:super|[A-Za-z_][A-Za-z0-9_]*))+)", src):
            if not re.search(r"\buse\s+[^;]*$", src[max(0, u.start() - 300): u.start()]):
                paths.append((u.group(1), u.start()))
        for path, pos in paths:
            here = here_at(pos)
            parts = [x.strip() for x in path.split("::") if x.strip()]
            if not parts:
                continue
            if parts[0] not in ("crate", "super", "self"):
                # A path relative to this module: only its child modules count.
                if "::".join(here + parts[:1]) not in modules:
                    continue
                parts = ["self"] + parts
            if parts[0] == "crate":
                full = parts[1:]
            elif parts[0] == "self":
                full = here + parts[1:]
            else:
                n = 0
                while n < len(parts) and parts[n] == "super":
                    n += 1
                full = here[: len(here) - n] + parts[n:]
            t = resolve(full) if full else "crate"
            if t and t != m:
                edges[m].add(t)

    def floor(m):
        best, best_len = len(FLOORS) - 1, -1
        for i, fl in enumerate(FLOORS):
            for prefix in fl:
                if (m == prefix or m.startswith(prefix + "::")) and len(prefix) > best_len:
                    best, best_len = i, len(prefix)
        return best

    # Tarjan's strongly connected components.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
    def strong(v):
        index[v] = low[v] = counter[0]; counter[0] += 1
        stack.append(v); on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                strong(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            sccs.append(comp)
    sys.setrecursionlimit(10000)
    for v in sorted(modules):
        if v not in index:
            strong(v)

    if "--edges" in sys.argv:
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f"{a} -> {b}")
    cycles = [sorted(c) for c in sccs if len(c) > 1]
    # A parent importing its own child is the module tree, not an upward import.
    up = sorted((a, b) for a in edges for b in edges[a]
                if floor(b) > floor(a) and not b.startswith(a + "::") and not a == "crate")
    print(f"modules: {len(modules)}, imports: {sum(len(v) for v in edges.values())}")
    print(f"cycles: {len(cycles)}")
    for c in cycles:
        print(f"  {len(c)} modules: {' '.join(c)}")
    print(f"upward imports: {len(up)}")
    for a, b in up:
        print(f"  {a} -> {b}{'  (allowed)' if (a, b) in ALLOWED_UP else ''}")
    bad_up = [e for e in up if e not in ALLOWED_UP]
    if "--check" in sys.argv and (cycles or len(up) > 3 or bad_up):
        sys.exit(1)


main()
