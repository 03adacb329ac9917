"""The package's layout keeps its promises: imports go one way (no module imports a module that imports
it back, counting imports inside functions too), and the experiment layer is imported by no library module."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mhe"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the mhe modules it imports anywhere in its source (top level or inside functions)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from mhe.x import y` may name a submodule y
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
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
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_a_module_that_imports_it_back():
    # the package __init__ files only re-export their submodules lazily; leave them out
    graph = {k: {d for d in v if not (PACKAGE / Path(*d.split(".")[1:]) / "__init__.py").exists()}
             for k, v in import_graph().items()}
    assert cycles(graph) == []


def test_the_experiment_layer_sits_on_top():
    importers = sorted(k for k, v in import_graph().items() if "mhe.lab.experiments" in v)
    assert set(importers) <= {"mhe.lab.cli", "mhe.viz.explorer"}, importers
    for lower in ("mhe.lab.train", "mhe.models.hand", "mhe.models.multi_hypothesis", "mhe.evaluation", "mhe.metrics",
                  "mhe.data.synthetic"):
        assert "mhe.lab.experiments" not in import_graph()[lower]
