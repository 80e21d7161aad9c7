#!/usr/bin/env python3
"""Fails when the host's top-level modules import each other in a cycle.

Every `crate::<module>` path in host/src (in `use` lines and inline paths, tests included) is
an edge from the module whose file it is in to `<module>`. Modules must form a layered graph:
leaf modules (bodies, error chains, clocks, the worker index) at the bottom, the request
driver (`proxy`) and the server near the top. Prints each cycle it finds, with the files and
lines that make its edges.
"""
import pathlib
import re
import sys
from collections import defaultdict

SRC = pathlib.Path(__file__).resolve().parent.parent / "host" / "src"
PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
# `use crate::{a, b::C}`: each first segment inside the braces is a module.
GROUP = re.compile(r"\bcrate::\{([^}]*)\}")


def targets(line: str) -> list[str]:
    found = PATH.findall(line)
    for group in GROUP.findall(line):
        found += [p.strip().split("::")[0] for p in group.split(",") if p.strip()]
    return found


def owner(path: pathlib.Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def main() -> int:
    edges = defaultdict(lambda: defaultdict(list))
    for path in sorted(SRC.rglob("*.rs")):
        source = owner(path)
        if source in ("main", "lib"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.lstrip()
            if stripped.startswith("//"):
                continue
            for target in targets(line):
                if target != source:
                    edges[source][target].append(f"{path.relative_to(SRC.parent.parent)}:{number}")
    # Tarjan's strongly connected components.
    index, low, stack, on_stack, components = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    if not components:
        print(f"module graph of host/src: no import cycles among {len(index)} modules")
        return 0
    for component in components:
        members = set(component)
        print(f"import cycle among host modules: {', '.join(component)}", file=sys.stderr)
        for source in component:
            for target, places in sorted(edges[source].items()):
                if target in members:
                    print(f"  {source} -> {target}: {', '.join(places[:3])}"
                          + (f" (+{len(places) - 3} more)" if len(places) > 3 else ""),
                          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
