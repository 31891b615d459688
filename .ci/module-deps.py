#!/usr/bin/env python3
"""Top-level module dependencies of the host crate, and the cycles among them.

Reads every `crate::<module>` path in host/src (use lines and inline paths),
prints one line per module with the modules it uses, then any cycle. Exits 1
when the graph has a cycle, so CI keeps the layering honest.

    python3 .ci/module-deps.py            # the list, then cycles if any
    python3 .ci/module-deps.py --longest  # also the ten longest functions
    python3 .ci/module-deps.py --root DIR # another checkout
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(sys.argv[sys.argv.index("--root") + 1]) if "--root" in sys.argv else pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "host" / "src"
ROOTS = {"lib.rs", "main.rs"}


def module_of(path):
    rel = path.relative_to(SRC)
    if rel.name in ROOTS and len(rel.parts) == 1:
        return None
    return rel.parts[0].removesuffix(".rs")


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def imports(text):
    """Names X in `crate::X` and in `use crate::{X, Y::...}` groups."""
    found = set(re.findall(r"\bcrate::([a-z_][a-z0-9_]*)", text))
    for group in re.findall(r"\bcrate::\{([^}]*)\}", text):
        found.update(re.findall(r"(?:^|,)\s*([a-z_][a-z0-9_]*)", group))
    return found


def graph():
    modules = {module_of(p) for p in SRC.rglob("*.rs")} - {None}
    edges = {m: set() for m in modules}
    for path in SRC.rglob("*.rs"):
        me = module_of(path)
        if me is None:
            continue
        for used in imports(strip_comments(path.read_text())):
            if used in modules and used != me:
                edges[me].add(used)
    return edges


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def longest_functions(n=10):
    """(lines, file:line name) of the n longest `fn` bodies, by brace depth."""
    found = []
    for path in SRC.rglob("*.rs"):
        if path.name == "tests.rs":
            continue
        # Unit tests sit in a trailing `#[cfg(test)] mod tests`; leave them out.
        lines = path.read_text().split("#[cfg(test)]\nmod tests")[0].splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)", line)
            if not m:
                continue
            depth, opened = 0, False
            for j in range(i, len(lines)):
                code = re.sub(r'"(?:\\.|[^"\\])*"', '""', re.sub(r"//.*", "", lines[j]))
                code = re.sub(r"'(?:\\.|[^'\\])'", "''", code)
                depth += code.count("{") - code.count("}")
                opened = opened or "{" in code
                if opened and depth <= 0:
                    break
                if not opened and code.rstrip().endswith(";"):
                    break
            if opened:
                found.append((j - i + 1, f"{path.relative_to(SRC.parent.parent)}:{i + 1} {m.group(1)}"))
    return sorted(found, reverse=True)[:n]


def main():
    edges = graph()
    for m in sorted(edges):
        print(f"{m:10} -> {', '.join(sorted(edges[m])) or '(nothing)'}")
    if "--longest" in sys.argv:
        print("\nlongest functions:")
        for length, where in longest_functions():
            print(f"  {length:4} lines  {where}")
    found = cycles(edges)
    for comp in found:
        print(f"cycle among: {', '.join(comp)}", file=sys.stderr)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
