"""Build the tutorials as a book: a static website of the executed notebooks and ``docs/`` (``make book``).

    python book/build.py            # the full book, from the notebooks as `make reproduce` runs them
    python book/build.py --smoke    # a quick book from smoke runs (CI; what `SMOKE=1 make book` runs)

The site is written to ``build/book/`` (``build/book-smoke/`` for ``--smoke``): open ``index.html`` from the
file system, or serve the folder with ``python -m http.server -d build/book``.

Three steps:

1. **Execute, cached by content.** Each notebook's executed copy lives in ``build/notebooks/`` (where
   ``make reproduce`` writes it; smoke runs in ``build/notebooks-smoke/``). A copy is reused when its code
   cells are the notebook's code cells and it ran with the same parameters without an error; otherwise the
   notebook is executed again with papermill (markdown-only edits never re-execute: the page takes its
   markdown from the notebook itself). Figures of these runs go to ``build/book-work/figures``, never to the
   committed ``figures/``.
2. **Stage** a Sphinx source tree in ``build/book-work/source`` (``build/book-smoke-work/source``) laid out
   like the repository, so every relative link of the notebooks and docs resolves: the landing page
   (``book/index.md``), ``notebooks/*.ipynb`` (executed; solution cells folded, plotly figures given an
   interactive HTML view, the live widget replaced by a note), ``docs/*.md``, ``CONTRIBUTING.md``, a figure
   gallery and one API page per module of the method core (``mhe.*`` except ``mhe.lab``). Files whose text
   did not change keep their time stamp, so Sphinx re-reads only what changed.
3. **Render** with Sphinx, MyST-NB (notebooks are not executed by Sphinx) and the book theme
   (``book/conf.py``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = ROOT / "notebooks"
DOCS = ROOT / "docs"
FIGURES = ROOT / "figures"

# The reference part of the book, in this order; any other docs/*.md follows, sorted.
REFERENCE = ["docs/method", "docs/glossary", "docs/results", "docs/architecture", "docs/tour", "docs/usage",
             "docs/formats", "docs/toy_training", "docs/gpu", "docs/testing", "gallery", "api/index", "CONTRIBUTING"]
SOLUTION_TAG = "solution"
WIDGET_NOTE = ("*Here JupyterLab shows the live explorer (drop-down, sliders, clickable scatter): it needs a "
               "running kernel, so the book cannot show it. Open this notebook with `make lab` to use it; the "
               "figures below are static views of the same hypotheses.*")


class Paths:
    """Where one kind of build (full or smoke) keeps its executed notebooks, its source tree and its site."""

    def __init__(self, smoke: bool) -> None:
        suffix = "-smoke" if smoke else ""
        self.smoke = smoke
        self.executed = ROOT / "build" / f"notebooks{suffix}"
        self.work = ROOT / "build" / f"book{suffix}-work"
        self.source = self.work / "source"
        self.doctrees = self.work / "doctrees"
        self.figures = self.work / "figures"
        self.html = ROOT / "build" / f"book{suffix}"


def parameters(smoke: bool) -> dict[str, Any]:
    """The parameters a notebook runs with: the book's (and ``make reproduce``'s) embedded defaults or smoke."""
    return {"SMOKE": smoke, "SEED": 0}


def _tags(cell: dict) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _cells(nb: dict) -> list[dict]:
    """A notebook's own cells (without the cell papermill injects)."""
    return [c for c in nb["cells"] if "injected-parameters" not in _tags(c)]


def _code(nb: dict) -> list[str]:
    return ["".join(c.get("source", "")) for c in _cells(nb) if c["cell_type"] == "code"]


def why_stale(notebook: Path, executed: Path, params: dict[str, Any]) -> str | None:
    """Why the executed copy ``executed`` cannot stand for ``notebook`` run with ``params`` (None: it can)."""
    if not executed.is_file():
        return "not executed yet"
    try:
        ran = json.loads(executed.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f"unreadable executed copy ({err})"
    meta = ran.get("metadata", {}).get("papermill", {})
    if meta.get("parameters") != params:
        return f"ran with {meta.get('parameters')}, not {params}"
    if meta.get("exception"):
        return "its last run stopped on an error"
    source = json.loads(notebook.read_text(encoding="utf-8"))
    if _code(ran) != _code(source) or [c["cell_type"] for c in _cells(ran)] != [c["cell_type"] for c in _cells(source)]:
        return "its code changed since it ran"
    return None


def _run_notebook():
    from mhe.lab.notebooks import run_notebook

    return run_notebook


def execute(paths: Paths, jobs: int, allow_stale: bool) -> list[Path]:
    """Bring every notebook's executed copy up to date (in parallel, ``jobs`` kernels); return them in order."""
    params = parameters(paths.smoke)
    notebooks = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise SystemExit(f"book: no NN_*.ipynb notebooks in {NOTEBOOKS}")
    todo = []
    for nb in notebooks:
        reason = why_stale(nb, paths.executed / nb.name, params)
        if reason is None:
            print(f"[book] {nb.name}: executed copy up to date", flush=True)
        elif allow_stale and (paths.executed / nb.name).is_file() and "code changed" in reason:
            print(f"[book] {nb.name}: {reason}; --allow-stale: its old outputs are shown", flush=True)
        else:
            print(f"[book] {nb.name}: {reason}; executing", flush=True)
            todo.append(nb)
    if todo:
        run_notebook = _run_notebook()
        paths.figures.mkdir(parents=True, exist_ok=True)
        os.environ["MHE_FIGURES_DIR"] = str(paths.figures)  # never the committed figures/
        if paths.smoke:
            os.environ["MHE_SMOKE"] = "1"
        if jobs > 1:
            os.environ.setdefault("OMP_NUM_THREADS", "1")

        def one(nb: Path) -> str | None:
            start = time.perf_counter()
            try:
                run_notebook(nb, params, out_dir=paths.executed)
            except Exception as err:  # a cell raised: papermill kept the executed copy, traceback included
                first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
                print(f"[book] {nb.name}: FAILED after {time.perf_counter() - start:.0f} s: {first}", flush=True)
                return f"{nb.name}: {first}"
            print(f"[book] {nb.name}: executed in {time.perf_counter() - start:.0f} s", flush=True)
            return None

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            failed = [f for f in pool.map(one, todo) if f]
        if failed:
            raise SystemExit("book: a notebook stopped on an error, so its page would show the traceback; fix it "
                             f"and run again (the executed copies are in {paths.executed.relative_to(ROOT)}):\n  "
                             + "\n  ".join(failed))
    return [paths.executed / nb.name for nb in notebooks]


# -- staging ---------------------------------------------------------------------------------------------

def _write(path: Path, text: str, written: set[Path]) -> None:
    """Write ``text`` unless the file already holds it (so its time stamp, and Sphinx's cache, survive)."""
    written.add(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def plotly_html(figure: dict, div_id: str) -> str:
    """An interactive HTML view of a plotly figure (its JSON output), drawn by the page's plotly.js."""
    import plotly.io as pio

    html = pio.to_html(figure, include_plotlyjs=False, full_html=False, div_id=div_id,
                       config={"responsive": True, "displaylogo": False})
    return f'<div class="mhe-plotly">{html}</div>'


def stage_notebook(executed: Path, source: Path) -> dict:
    """The page version of an executed notebook: the notebook's own markdown and cell metadata with the run's
    outputs; the injected-parameters cell dropped, solution cells folded (``hide-cell``), plotly outputs given
    an interactive HTML view, widget outputs (which need a kernel) replaced by a note."""
    ran = json.loads(executed.read_text(encoding="utf-8"))
    own = json.loads(source.read_text(encoding="utf-8"))
    cells = []
    for k, (cell, mine) in enumerate(zip(_cells(ran), own["cells"], strict=True)):
        cell = dict(mine, outputs=cell.get("outputs", []), execution_count=cell.get("execution_count")) \
            if mine["cell_type"] == "code" else dict(mine)
        tags = _tags(mine)
        if SOLUTION_TAG in tags and "hide-cell" not in tags:
            cell["metadata"] = dict(mine.get("metadata", {}), tags=[*tags, "hide-cell"])
        for j, out in enumerate(cell.get("outputs", [])):
            data = out.get("data", {})
            if "application/vnd.plotly.v1+json" in data and "text/html" not in data:
                div = f"plotly-{source.stem[:2]}-{k}-{j}"
                data["text/html"] = plotly_html(data["application/vnd.plotly.v1+json"], div)
                # the explorer's panels need more than the text column: the theme's full-width cell
                present = cell.get("metadata", {}).get("tags", [])
                if "full-width" not in present:
                    cell["metadata"] = dict(cell.get("metadata", {}), tags=[*present, "full-width"])
            if "application/vnd.jupyter.widget-view+json" in data:
                out["data"] = {"text/markdown": WIDGET_NOTE}
        if cell["cell_type"] == "markdown":
            cell["source"] = _rewrite_links("".join(cell["source"]))
        cells.append(cell)
    meta = {k: v for k, v in ran.get("metadata", {}).items() if k not in ("widgets", "papermill")}
    return {**ran, "metadata": meta, "cells": cells}


def _rewrite_links(text: str) -> str:
    """Links that leave the book's tree: the README becomes the landing page."""
    return text.replace("](../README.md", "](../index.md")


def gallery_page() -> str:
    """Every figure in figures/ with its notebook's caption (the report's gallery, its images as MyST images)."""
    from mhe.lab.gallery import gallery
    text = gallery(FIGURES, NOTEBOOKS)
    text = re.sub(r'<img src="(figures/[^"]+)" width="\d+">', r"![](\1)", text)
    text = re.sub(r"^## Gallery", "# Figure gallery", text, count=1, flags=re.M)
    return "(gallery)=\n" + text.replace("written by `python -m", "generated by `python -m") + "\n"


def core_modules() -> list[str]:
    """The method core: every module of ``mhe`` but ``mhe.lab`` (and private or ``__main__`` modules)."""
    names = []
    for path in sorted((ROOT / "mhe").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if len(parts) > 1 and parts[1] == "lab" or any(p.startswith("_") or "-" in p for p in parts) \
                or not all((ROOT / Path(*parts[:i])).joinpath("__init__.py").is_file() for i in range(1, len(parts))):
            continue
        names.append(".".join(parts))
    return names


def api_pages(modules: list[str]) -> dict[str, str]:
    """One page per core module (autodoc of its docstrings) and an index page."""
    pages = {}
    for name in modules:
        package = (ROOT / Path(*name.split("."))).is_dir()
        # A package page shows its docstring only: its members are documented on their modules' pages (a
        # package's __all__ re-exports them, and documenting them twice makes ambiguous cross-references).
        options = "" if package else "   :members:\n   :show-inheritance:\n"
        pages[f"api/{name}.md"] = f"# `{name}`\n\n```{{eval-rst}}\n.. automodule:: {name}\n{options}```\n"
    toc = "\n".join(f"{name}" for name in modules)
    pages["api/index.md"] = (
        "# API reference: the method core\n\n"
        "Every module of the package except the lab (`mhe.lab`: experiments, training runs, the command line, "
        "the report), from its docstrings. Shapes use the letters B batch, S hypotheses, J joints, V vertices, "
        "D dimension, K observed keypoints, C context features.\n\n"
        f"```{{toctree}}\n:maxdepth: 1\n\n{toc}\n```\n")
    return pages


def stage(paths: Paths, executed: list[Path]) -> Path:
    """Write the Sphinx source tree; return its folder."""
    src = paths.source
    written: set[Path] = set()
    docs = sorted(DOCS.glob("*.md"))
    names = [f"docs/{d.stem}" for d in docs]
    reference = [r for r in REFERENCE if not r.startswith("docs/") or r in names]
    extra = [n for n in names if n not in reference]  # other docs pages: after the listed ones
    at = reference.index("gallery")
    reference = reference[:at] + extra + reference[at:]
    index = (BOOK / "index.md").read_text(encoding="utf-8")
    notebook_toc = "\n".join(f"notebooks/{p.stem}" for p in executed)
    index = index.replace("{{ notebooks }}", notebook_toc).replace("{{ reference }}", "\n".join(reference))
    _write(src / "index.md", index, written)
    for doc in docs:
        _write(src / "docs" / doc.name, _rewrite_links(doc.read_text(encoding="utf-8")), written)
    _write(src / "CONTRIBUTING.md", _rewrite_links((ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")), written)
    _write(src / "gallery.md", gallery_page(), written)
    for rel, text in api_pages(core_modules()).items():
        _write(src / rel, text, written)
    for ex in executed:
        nb = stage_notebook(ex, NOTEBOOKS / ex.name)
        _write(src / "notebooks" / ex.name, json.dumps(nb, ensure_ascii=False, indent=1) + "\n", written)
    link = src / "figures"
    if not link.is_symlink():
        if link.exists():
            shutil.rmtree(link)
        link.symlink_to(FIGURES, target_is_directory=True)
    for path in src.rglob("*"):
        if path.is_file() and path not in written and "figures" not in path.relative_to(src).parts:
            # a page whose source went away
            path.unlink()
    return src


def render(paths: Paths, jobs: int = 1, in_process: bool = False) -> None:
    """Run Sphinx on the staged tree (incremental: only changed pages are read again), in ``jobs`` processes.

    One process is the cheapest: Sphinx's parallel reading forks workers that each import the package (and
    torch) again for the API pages, and its parallel writing pickles every page's doctree to a worker, so on
    two cores ``-j 2`` costs a third more CPU time (44 against 33 CPU-seconds for the smoke book from scratch)
    and is no quicker when the other core is busy. ``in_process``: run Sphinx in this Python process rather
    than a new one (one process only), so that the API pages' autodoc finds the package and torch already
    imported (6 CPU-seconds less in a test process that imported them)."""
    args = ["-b", "html", "-c", str(BOOK), "-d", str(paths.doctrees), "-q", "-j", str(max(1, jobs)),
            str(paths.source), str(paths.html)]
    smoke = "1" if paths.smoke else "0"
    if in_process:
        if jobs > 1:
            raise ValueError(f"render: in_process=True runs Sphinx as one process, so jobs must be 1, not {jobs} "
                             "(pass in_process=False for Sphinx's parallel build)")
        from sphinx.cmd.build import build_main

        before = os.environ.get("MHE_BOOK_SMOKE")
        os.environ["MHE_BOOK_SMOKE"] = smoke  # read by book/conf.py
        try:
            with warnings.catch_warnings():  # as in a process of its own: the extensions' use of APIs that
                # Sphinx deprecates is no news to this build (a thousand warnings in a test's summary)
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", PendingDeprecationWarning)
                status = build_main(args)
        finally:
            if before is None:
                os.environ.pop("MHE_BOOK_SMOKE", None)
            else:
                os.environ["MHE_BOOK_SMOKE"] = before
        if status:
            raise RuntimeError(f"book: Sphinx stopped with status {status} (its messages are above)")
    else:
        env = dict(os.environ, MHE_BOOK_SMOKE=smoke)
        env.setdefault("OMP_NUM_THREADS", "1")
        subprocess.run([sys.executable, "-m", "sphinx", *args], check=True, env=env, cwd=ROOT)
    remove_orphans(paths.html, paths.source)


def remove_orphans(html: Path, source: Path) -> list[Path]:
    """Delete the pages of ``html`` whose source in ``source`` went away (Sphinx leaves them behind); return them.
    Sphinx's own pages (index, search, module index) and its folders (``_static`` ...) have no source."""
    own = {"genindex", "search", "py-modindex"}
    removed = []
    for page in html.rglob("*.html"):
        rel = page.relative_to(html).with_suffix("")
        if rel.parts[0].startswith("_") or str(rel) in own:
            continue
        if not any((source / f"{rel}{ext}").is_file() for ext in (".md", ".ipynb")):  # names hold dots
            page.unlink()
            removed.append(page)
    return removed


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args: Any, cache_seconds: int = 0, **kwargs: Any) -> None:
        self.cache_seconds = cache_seconds  # before the base class's __init__, which handles the request
        super().__init__(*args, **kwargs)

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        if self.cache_seconds and code < 400:  # an error is never kept: every page that asks meets it again
            self.send_header("Cache-Control", f"max-age={self.cache_seconds}")


@contextlib.contextmanager
def serve(folder: Path, cache_seconds: int = 0) -> Iterator[str]:
    """``folder`` over HTTP on 127.0.0.1 (a free port), as ``python -m http.server`` serves it; yields its URL.

    ``cache_seconds`` > 0 lets a browser keep what it fetched that long without asking again (for a site that
    does not change while it is served, such as the browser tests' smoke book: each page's stylesheets and
    scripts are then fetched once, not revalidated on every page)."""
    handler = functools.partial(_QuietHandler, directory=str(folder), cache_seconds=max(0, cache_seconds))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def build(smoke: bool = False, jobs: int = 2, allow_stale: bool = False, sphinx_jobs: int = 1,
          in_process: bool = False) -> Path:
    """Execute what is stale (``jobs`` notebooks at once), stage, render (``sphinx_jobs`` Sphinx processes, in
    this process if ``in_process``: see ``render``); return the site's folder."""
    paths = Paths(smoke)
    start = time.perf_counter()
    executed = execute(paths, jobs, allow_stale)
    stage(paths, executed)
    render(paths, sphinx_jobs, in_process)
    print(f"[book] built in {time.perf_counter() - start:.0f} s: open {paths.html / 'index.html'} "
          f"(or `python -m http.server -d {paths.html.relative_to(ROOT)}` and http://localhost:8000)", flush=True)
    return paths.html


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python book/build.py", allow_abbrev=False,
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", default=os.environ.get("SMOKE", "") not in ("", "0"),
                        help="build from smoke runs (quick; also set by SMOKE=1)")
    parser.add_argument("--jobs", type=int, default=2, help="notebooks executed at once")
    parser.add_argument("--sphinx-jobs", type=int, default=1,
                        help="Sphinx's processes (one costs the least CPU time: see render() in this file)")
    parser.add_argument("--allow-stale", action="store_true",
                        help="show an executed copy whose code cells changed since it ran instead of running it again "
                             "(for a quick look at prose edits; the outputs may be those of older code)")
    args = parser.parse_args(argv)
    for name in ("jobs", "sphinx_jobs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, not {getattr(args, name)}")
    build(args.smoke, args.jobs, args.allow_stale, args.sphinx_jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
