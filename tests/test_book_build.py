"""The book's builder (``book/build.py``) without a browser: the content cache, the page version of a notebook
(solutions folded, plotly made interactive, the widget replaced) and the API reference's module list."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("book_build", ROOT / "book" / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

PLOTLY = {"data": [{"type": "scatter", "x": [1, 2], "y": [3, 4]}], "layout": {"title": {"text": "t"}}}
WIDGET = {"model_id": "abc", "version_major": 2, "version_minor": 0}


def _cell(kind: str, source: str, tags: list[str] | None = None, outputs: list | None = None) -> dict:
    cell = {"cell_type": kind, "metadata": {"tags": tags} if tags else {}, "source": source}
    if kind == "code":
        cell.update(outputs=outputs or [], execution_count=None)
    return cell


def _notebook(cells: list[dict], parameters: dict | None = None, error: bool = False) -> dict:
    meta: dict = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    if parameters is not None:
        meta["papermill"] = {"parameters": parameters, "exception": error}
    return {"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}


def _source() -> dict:
    return _notebook([
        _cell("markdown", "# 01 · A title\n\nSee the [README](../README.md)."),
        _cell("code", "SMOKE = False\nSEED = 0", ["parameters"]),
        _cell("code", "# your answer here", ["exercise"]),
        _cell("code", "answer = 42\nprint(answer)", ["solution"]),
        _cell("code", "fig"),
    ])


def _executed(source: dict, params: dict, *, code_edit: str = "", error: bool = False) -> dict:
    """``source`` as papermill would have run it with ``params``: an injected cell, outputs on every code cell."""
    cells = [dict(c) for c in source["cells"]]
    cells.insert(2, _cell("code", "SMOKE = True\nSEED = 0\n", ["injected-parameters"]))
    for c in cells:
        if c["cell_type"] == "code":
            c["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "ok\n"}]
            c["source"] = c["source"] + code_edit
    cells[-1]["outputs"] = [
        {"output_type": "display_data", "metadata": {}, "data": {"application/vnd.plotly.v1+json": PLOTLY,
                                                                "text/plain": "Figure"}},
        {"output_type": "display_data", "metadata": {}, "data": {"application/vnd.jupyter.widget-view+json": WIDGET,
                                                                "text/plain": "VBox()"}},
    ]
    return _notebook(cells, params, error)


@pytest.fixture
def files(tmp_path):
    source = tmp_path / "01_demo.ipynb"
    source.write_text(json.dumps(_source()))
    return source, tmp_path / "executed.ipynb"


def test_an_executed_copy_is_reused_only_for_the_same_code_and_parameters(files):
    source, executed = files
    smoke = build.parameters(True)
    assert build.why_stale(source, executed, smoke) == "not executed yet"
    executed.write_text(json.dumps(_executed(_source(), smoke)))
    assert build.why_stale(source, executed, smoke) is None
    assert "ran with" in build.why_stale(source, executed, build.parameters(False))
    # a prose edit does not invalidate the run ...
    edited = _source()
    edited["cells"][0]["source"] = "# 01 · A better title"
    source.write_text(json.dumps(edited))
    assert build.why_stale(source, executed, smoke) is None
    # ... a code edit does, and so does a run that stopped on an error
    executed.write_text(json.dumps(_executed(_source(), smoke, code_edit="\nx = 1")))
    assert build.why_stale(source, executed, smoke) == "its code changed since it ran"
    executed.write_text(json.dumps(_executed(_source(), smoke, error=True)))
    assert build.why_stale(source, executed, smoke) == "its last run stopped on an error"


def test_the_page_folds_solutions_draws_plotly_and_replaces_the_widget(files):
    source, executed = files
    edited = _source()
    edited["cells"][0]["source"] = "# 01 · Newer prose\n\nSee the [README](../README.md)."
    source.write_text(json.dumps(edited))
    executed.write_text(json.dumps(_executed(_source(), build.parameters(True))))
    page = build.stage_notebook(executed, source)
    cells = page["cells"]
    assert len(cells) == len(edited["cells"])  # the injected cell is gone
    assert not any("injected-parameters" in c["metadata"].get("tags", []) for c in cells)
    assert cells[0]["source"].startswith("# 01 · Newer prose") and "](../index.md)" in cells[0]["source"]
    tags = {c["source"].splitlines()[0]: c["metadata"].get("tags", []) for c in cells}
    assert tags["answer = 42"] == ["solution", "hide-cell"]
    assert "hide-cell" not in tags["# your answer here"]
    assert cells[3]["outputs"][0]["text"] == "ok\n"  # the run's outputs on the notebook's own cells
    plot, widget = cells[-1]["outputs"]
    html = plot["data"]["text/html"]
    assert 'class="plotly-graph-div"' in html and "Plotly.newPlot" in html and '"x":[1,2]' in html.replace(" ", "")
    assert "<script src=" not in html  # plotly.js comes from the page, once, not from a CDN
    assert "full-width" in cells[-1]["metadata"]["tags"]  # the theme lets a plotly cell span the margin
    assert set(widget["data"]) == {"text/markdown"} and "make lab" in widget["data"]["text/markdown"]
    assert "widgets" not in page["metadata"] and "papermill" not in page["metadata"]


def test_the_api_reference_is_the_core_without_the_lab():
    modules = build.core_modules()
    assert {"mhe", "mhe.flows", "mhe.metrics", "mhe.objectives", "mhe.body"} <= set(modules)
    assert not [m for m in modules if m == "mhe.lab" or m.startswith("mhe.lab.")]
    pages = build.api_pages(["mhe.flows", "mhe.body"])
    assert ".. automodule:: mhe.flows\n   :members:" in pages["api/mhe.flows.md"]
    assert ":members:" not in pages["api/mhe.body.md"]  # a package: its members are on their modules' pages
    assert "mhe.flows\nmhe.body" in pages["api/index.md"]


def test_pages_whose_source_went_away_are_removed(tmp_path):
    html, source = tmp_path / "html", tmp_path / "source"
    for rel in ("index.md", "api/mhe.flows.md", "notebooks/01_a.ipynb"):
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_text("")
    kept = ["index.html", "search.html", "genindex.html", "api/mhe.flows.html", "notebooks/01_a.html",
            "_static/x.html"]
    gone = ["api/mhe.gone.html", "old.html"]
    for rel in kept + gone:
        (html / rel).parent.mkdir(parents=True, exist_ok=True)
        (html / rel).write_text("")
    removed = build.remove_orphans(html, source)
    assert sorted(str(p.relative_to(html)) for p in removed) == sorted(gone)
    assert all((html / rel).is_file() for rel in kept)


def test_the_server_lets_a_browser_cache_only_when_asked(tmp_path):
    import urllib.error
    import urllib.request

    (tmp_path / "page.html").write_text("<p>hi</p>")
    for seconds, expected in ((0, None), (3600, "max-age=3600")):
        with build.serve(tmp_path, cache_seconds=seconds) as url:
            with urllib.request.urlopen(f"{url}/page.html") as response:
                assert response.read() == b"<p>hi</p>"
                assert response.headers.get("Cache-Control") == expected, (seconds, dict(response.headers))
            with pytest.raises(urllib.error.HTTPError) as missing:  # an error is never to be cached
                urllib.request.urlopen(f"{url}/missing.css")
            assert missing.value.code == 404 and missing.value.headers.get("Cache-Control") is None


def test_sphinx_in_this_process_runs_alone_and_bad_job_counts_are_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="jobs must be 1, not 2"):
        build.render(build.Paths(smoke=True), jobs=2, in_process=True)
    for flag in ("--jobs", "--sphinx-jobs"):
        with pytest.raises(SystemExit):
            build.main([flag, "0"])
        assert f"{flag} must be at least 1, not 0" in capsys.readouterr().err
