"""Every notebook in notebooks/ runs end to end in smoke mode, and is committed stripped."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from mhe.lab.notebooks import list_notebooks, run_notebook
from mhe.utils import REPO_ROOT

NOTEBOOKS = list_notebooks()


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no NN_*.ipynb tutorials"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stripped_and_parameterised(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), (
        f"{path.name} has stored outputs: run `make strip` before committing"
    )
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    src = "".join(tagged[0]["source"])
    assert "SMOKE" in src and "SEED" in src


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_mode(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MHE_FIGURES_DIR", str(tmp_path / "figures"))
    monkeypatch.setenv("MHE_SMOKE", "1")
    out = run_notebook(path, {"SMOKE": True, "SEED": 0}, out_dir=tmp_path)
    assert out.exists()
    # Notebooks save their figures through mhe.viz.save_figure: smoke runs must produce some.
    written = list((tmp_path / "figures").glob("*"))
    assert written, f"{path.name} wrote no figures in smoke mode"
    # ... and every cell that saves a figure shows it inline (a PNG, or plotly's own output).
    executed = json.loads(out.read_text())
    for cell in executed["cells"]:
        src = "".join(cell.get("source", []))
        if cell["cell_type"] != "code" or "save_figure(" not in src:
            continue
        shown = [o for o in cell.get("outputs", []) if o.get("output_type") in ("display_data", "execute_result")
                 and ({"image/png", "application/vnd.plotly.v1+json", "text/html"} & set(o.get("data", {})))]
        assert shown, f"{path.name}: this cell saves a figure but shows none inline:\n{src[:300]}"
    # The smoke book (`SMOKE=1 make book`, tests/test_book.py) shows this very run: keep the executed copy where
    # book/build.py looks for it, so that the book does not run the notebook again.
    cache = REPO_ROOT / "build" / "notebooks-smoke"
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f".{out.name}.{os.getpid()}"
    shutil.copyfile(out, partial)
    os.replace(partial, cache / out.name)
