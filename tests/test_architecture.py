"""The package's layout keeps its promises: imports go one way (no module imports a module that imports
it back, counting imports inside functions too), the core (every module outside ``mhe/lab/``) never imports
the lab (``mhe.lab``), the experiment layer is imported by no library module, and no module is longer than
500 lines."""

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
    assert set(importers) <= {"mhe.lab.cli"}, importers
    for lower in ("mhe.lab.train", "mhe.models.hand", "mhe.models.multi_hypothesis", "mhe.evaluation", "mhe.metrics",
                  "mhe.data.synthetic"):
        assert "mhe.lab.experiments" not in import_graph()[lower]


LAB = "mhe.lab"


def lab_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports of ``mhe.lab`` (or of anything inside it) in the source of the module named ``module``, as
    ``line: statement`` strings: absolute (``import mhe.lab.x``, ``from mhe.lab import x``, ``from mhe import
    lab``) and relative (``from .lab import x``, ``from .. import lab``) alike, at the top level or inside
    functions, and ``importlib.import_module`` / ``__import__`` of a literal name in the lab."""
    package = module if is_package else module.rpartition(".")[0]

    def in_lab(name: str) -> bool:
        return name == LAB or name.startswith(LAB + ".")

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            names = [origin] + [f"{origin}.{a.name}" for a in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            names = [node.args[0].value]
        else:
            continue
        if any(in_lab(n) for n in names):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_lab_import_finder_finds_every_form():
    for source in ("import mhe.lab", "import mhe.lab.train as t", "from mhe.lab import cli",
                   "from mhe.lab.cli import main", "from mhe import lab", "from mhe import metrics, lab",
                   "def f():\n    from mhe.lab.report import x", "from .lab import cli", "from . import lab",
                   "import importlib\nimportlib.import_module('mhe.lab.cli')", "__import__('mhe.lab')"):
        assert lab_imports(source, "mhe.diagnostics"), source
    assert lab_imports("from ..lab.train import Trainer", "mhe.viz.training")
    assert lab_imports("from .. import lab", "mhe.models", is_package=True)
    for source in ("import mhe.labels", "from mhe import labels", "from mhe.viz import lab", "from .data import lab",
                   "from mhe.metrics import lab_thing", "x = 'mhe.lab'", "from . import laboratory"):
        assert not lab_imports(source, "mhe.diagnostics"), source
    assert not lab_imports("from .lab import x", "mhe.viz.training")  # that is mhe.viz.lab


def test_the_core_never_imports_the_lab():
    core = [p for p in PACKAGE.rglob("*.py") if (PACKAGE / "lab") not in p.parents]
    assert len(core) > 20 and PACKAGE / "diagnostics.py" in core  # the walk found the core
    offenders = {}
    for path in core:
        found = lab_imports(path.read_text(), module_name(path), is_package=path.name == "__init__.py")
        if found:
            offenders[str(path.relative_to(PACKAGE.parent))] = found
    assert not offenders, (f"core modules import the lab (mhe.lab): {offenders}; the core must work without the "
                           "lab: move the code that needs the lab into mhe/lab/, or pass what it needs in as "
                           "arguments")


MAX_LINES = 500


def test_no_module_is_longer_than_500_lines():
    lengths = {str(p.relative_to(PACKAGE.parent)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert len(lengths) > 40 and lengths["mhe/lab/cli.py"] > 100  # the walk found the package
    long = {path: n for path, n in sorted(lengths.items()) if n > MAX_LINES}
    assert not long, (f"modules longer than {MAX_LINES} lines: {long}; split each by topic into modules of at most "
                      f"{MAX_LINES} lines (docs/architecture.md, 'Where new code goes')")
