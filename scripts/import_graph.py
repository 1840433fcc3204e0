"""Print the import graph's depth and cycles of ``redisq/`` + ``webapp/``.

Every import counts: top-level, function-level and ``if TYPE_CHECKING:`` ones, since each of them
is a dependency a reader (and mypy) must follow. Depth is the longest chain of modules in the graph
after each cycle is folded into one node; a cycle is a strongly connected component of two or more
modules. ``--simple`` also prints the longest chain that repeats no module (slow on a graph with
large cycles), ``--edges`` every edge. Run: ``python scripts/import_graph.py``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("redisq", "webapp")


def module_names() -> dict[str, Path]:
    """Dotted name -> file of every module of the packages (a package is its ``__init__``)."""
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` is or lies in."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(mod: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The known modules that ``mod`` imports anywhere in its file."""
    is_pkg = path.name == "__init__.py"
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                src = ".".join(anchor + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            # ``from pkg import sub`` depends on the submodule when there is one, else on ``pkg``
            # (a package's ``__init__`` that each submodule runs first is not counted as an edge).
            targets = [f"{src}.{alias.name}" if f"{src}.{alias.name}" in known else src
                       for alias in node.names]
        else:
            continue
        for target in targets:
            hit = resolve(target, known)
            if hit and hit != mod:
                found.add(hit)
    return found


def sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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
            out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def depth(graph: dict[str, set[str]], comps: list[list[str]]) -> tuple[int, list[str]]:
    """The longest import chain (in modules) of the graph with each cycle folded into one node."""
    comp_of = {m: i for i, comp in enumerate(comps) for m in comp}
    memo: dict[int, list[int]] = {}

    def longest(c: int) -> list[int]:
        if c not in memo:
            nexts = {comp_of[w] for m in comps[c] for w in graph[m]} - {c}
            best = max((longest(n) for n in nexts), key=len, default=[])
            memo[c] = [c, *best]
        return memo[c]

    chain = max((longest(c) for c in range(len(comps))), key=len)
    return len(chain), ["+".join(comps[c]) for c in chain]


def longest_simple_path(graph: dict[str, set[str]]) -> list[str]:
    """The longest import chain that visits no module twice (exhaustive search: fine for a
    graph of this size; with no cycles it equals the folded depth)."""
    best: list[str] = []

    def walk(path: list[str], seen: set[str]) -> None:
        nonlocal best
        if len(path) > len(best):
            best = list(path)
        for w in sorted(graph[path[-1]] - seen):
            seen.add(w)
            path.append(w)
            walk(path, seen)
            path.pop()
            seen.discard(w)

    for v in sorted(graph):
        walk([v], {v})
    return best


def main() -> None:
    known = module_names()
    graph = {mod: imports_of(mod, path, known) for mod, path in known.items()}
    comps = sccs(graph)
    cycles = [c for c in comps if len(c) > 1]
    n, chain = depth(graph, comps)
    print(f"modules: {len(graph)}  edges: {sum(len(v) for v in graph.values())}")
    print(f"depth: {n}  ({' -> '.join(chain)})")
    print(f"cycles: {len(cycles)}")
    for comp in cycles:
        print("  " + " <-> ".join(comp))
    if "--simple" in sys.argv:
        path = longest_simple_path(graph)
        print(f"longest simple path: {len(path)}  ({' -> '.join(path)})")
    if "--edges" in sys.argv:
        for mod in sorted(graph):
            print(f"{mod}: {', '.join(sorted(graph[mod]))}")


if __name__ == "__main__":
    main()
