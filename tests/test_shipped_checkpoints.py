"""Every shipped checkpoint loads and still computes what it computed when its CSV row was written.

``tools/shipped_reference.py`` wrote ``tests/data/shipped_reference.json``: each checkpoint's metrics on the first
test items of the tables' split (data seed 1) under the tables' protocol (S hypotheses at T = 0.8, generators
seeded with 0). Here each checkpoint is loaded by name, as users do, and evaluated again: the metrics must agree
to 1e-5 (relative or absolute), far below the CSVs' 4 decimals and far above the round-off of reordered float
operations. The full check against ``figures/04_hand_metrics.csv`` and ``05_body_metrics.csv``
(500 items per model, minutes each) is ``python tools/shipped_reference.py --check-csv``; its comparison is tested
here on the committed rows."""

from __future__ import annotations

import importlib.util
import json
import math
import warnings
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = json.loads((ROOT / "tests" / "data" / "shipped_reference.json").read_text())

warnings.filterwarnings("ignore", category=UserWarning)


def _tool():
    spec = importlib.util.spec_from_file_location("shipped_reference", ROOT / "tools" / "shipped_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOL = _tool()


def test_every_shipped_checkpoint_has_a_reference():
    assert sorted(REFERENCE["checkpoints"]) == TOOL.shipped_names(), (
        "a checkpoint was added or removed: regenerate the reference with `python tools/shipped_reference.py`")
    assert REFERENCE["data_seed"] == 1 and REFERENCE["items"] >= 4


@pytest.mark.parametrize("name", sorted(REFERENCE["checkpoints"]))
def test_shipped_checkpoint_loads_and_reproduces_its_reference(name):
    want = REFERENCE["checkpoints"][name]
    got = TOOL.evaluate(name, REFERENCE["items"])
    assert got["items"] == REFERENCE["items"] and got["data_seed"] == 1
    assert (got["num_samples"], got["temperature"]) == (want["num_samples"], want["temperature"])
    assert set(got["metrics"]) == set(want["metrics"])
    differ = {k: (v, got["metrics"][k]) for k, v in want["metrics"].items()
              if not (v is None and got["metrics"][k] is None)
              and (v is None or got["metrics"][k] is None
                   or not math.isclose(got["metrics"][k], v, rel_tol=1e-5, abs_tol=1e-5))}
    assert not differ, f"{name} no longer computes its reference metrics (reference, now): {differ}"


@pytest.mark.parametrize("body, csv", [("hand", "04_hand_metrics.csv"), ("body", "05_body_metrics.csv")])
def test_the_csv_check_compares_every_metric_of_a_committed_row(body, csv):
    table = pd.read_csv(ROOT / "figures" / csv).set_index("objective")
    objective = table.index[0]
    row = {k: (None if v != v else float(v)) for k, v in table.loc[objective].items() if not isinstance(v, str)}
    assert TOOL.csv_differences(f"{body}_{objective}", row) == []
    column = next(iter(row))
    moved = {**row, column: row[column] + 0.01}
    assert TOOL.csv_differences(f"{body}_{objective}", moved) == [
        f"{body}_{objective}.{column}: CSV {table.loc[objective, column]} vs now {moved[column]}"]
    assert TOOL.csv_differences(f"{body}_nonexistent", row) == [f"{csv} has no row 'nonexistent'"]
