"""The package's import graph has no circles, and the command modules import only cli/common.

The graph is built from the source with :mod:`ast`, counting every import — at module level and
inside functions (a deferred import hides a circle from the interpreter, not from the design).
An import of ``a.b.c`` also runs the ``__init__`` of ``a.b`` (unless the importer lives inside
``a.b`` already), so that edge is counted too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mrfrecon

ROOT = Path(mrfrecon.__file__).parent
PKG = "mrfrecon"


def _modules() -> dict[str, Path]:
    mods = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join([PKG, *parts])] = p
    return mods


def _is_package(name: str, mods: dict[str, Path]) -> bool:
    return name in mods and mods[name].name == "__init__.py"


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        pkg = mod if _is_package(mod, mods) else mod.rsplit(".", 1)[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == PKG}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")
                    base = base[: len(base) - node.level + 1]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                if src.split(".")[0] != PKG:
                    continue
                for a in node.names:  # `from pkg import submodule` depends on the submodule
                    sub = f"{src}.{a.name}"
                    targets.add(sub if sub in mods else src)
        for t in targets:
            t = next((c for c in (t, t.rsplit(".", 1)[0]) if c in mods), None)
            if t is None or t == mod:
                continue
            graph[mod].add(t)
            parts = t.split(".")
            for i in range(2, len(parts)):  # parent packages' __init__ run first (not the importer's own)
                parent = ".".join(parts[:i])
                if not (mod == parent or mod.startswith(parent + ".")):
                    graph[mod].add(parent)
    # the root package is every module's ancestor: it runs first and is not part of a cycle
    return {m: {t for t in ts if t != PKG} for m, ts in graph.items() if m != PKG}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(g) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    cycles = _cycles(_graph())
    assert not cycles, f"import circles: {cycles}"


def test_graph_sees_known_edges():
    g = _graph()
    assert "mrfrecon.io.scan" in g["mrfrecon.io.cohort"] or "mrfrecon.atomic" in g["mrfrecon.io.cohort"]
    assert "mrfrecon.sequence" in g["mrfrecon.io.scan"]
    assert "mrfrecon.atomic" in g["mrfrecon.sequence"]  # the deferred import is counted
    assert "mrfrecon.io" in g["mrfrecon.dictionary"]  # io/__init__ runs when io.h5 is imported


def test_command_modules_import_only_common():
    g = _graph()
    commands = [m for m in g if m.startswith("mrfrecon.cli.") and m != "mrfrecon.cli.common"]
    assert commands
    for m in commands:
        others = {t for t in g[m] if t.startswith("mrfrecon.cli")} - {"mrfrecon.cli.common"}
        assert not others, f"{m} imports {others}"
    assert not {t for t in g["mrfrecon.cli.common"] if t.startswith("mrfrecon.cli")}


def test_atomic_is_the_ground_floor():
    g = _graph()
    assert g["mrfrecon.atomic"] == set()
