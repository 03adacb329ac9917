"""tools/calibration_temperature.py: the temperature chosen on validation, and a tiny run of both tables."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pandas as pd
import pytest

warnings.filterwarnings("ignore", category=UserWarning)
ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("calibration_temperature",
                                                  ROOT / "tools" / "calibration_temperature.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_chosen_temperature_is_the_lowest_occluded_score_ties_nearest_one():
    tool = _tool()
    rows = pd.DataFrame({"temperature": [0.8, 1.0, 2.0, 3.0], "score_occ": [0.4, 0.3, 0.1, 0.2]})
    assert tool.chosen_temperature(rows) == 2.0
    tied = pd.DataFrame({"temperature": [0.8, 1.5, 3.0], "score_occ": [0.2, 0.2, 0.2]})
    assert tool.chosen_temperature(tied) == 0.8  # |0.8 - 1| < |1.5 - 1|


def test_the_tool_scores_validation_then_the_test_split_at_one_and_at_the_choice(tmp_path):
    tool = _tool()
    val, test = tmp_path / "val.csv", tmp_path / "test.csv"
    tiny = ["hand_mhentropy", "hand_deterministic", "--items", "6", "--test-items", "6", "--samples", "20",
            "--temperatures", "0.5", "2.0", "--val-out", str(val), "--test-out", str(test)]
    assert tool.main(tiny) == 0
    v, t = pd.read_csv(val), pd.read_csv(test)
    assert v["model"].tolist() == ["hand_mhentropy"] * 2  # the deterministic model is skipped
    assert v["temperature"].tolist() == [0.5, 2.0] and (v["n_items"] == 6).all()
    assert v["score_occ"].between(0, 0.5).all() and v["inside_90_occ"].between(0, 1).all()
    # twice the noise, a wider spread
    assert v["spread_mm_occ"].iloc[1] > 2 * v["spread_mm_occ"].iloc[0]
    choice = tool.chosen_temperature(v)
    assert t["sampling"].tolist() == ["T = 1", "chosen on validation"]
    assert t["temperature"].tolist() == [1.0, choice] and (t["n_items"] == 6).all()
    # --validation-only --append: a fix attempt's rows join the table and the test split is not read
    attempt = ["hand_nll", "--items", "6", "--samples", "20", "--temperatures", "1.0", "--validation-only", "--append",
               "--note", "a note", "--val-out", str(val), "--test-out", str(tmp_path / "no.csv"), "--protocol",
               "--protocol-out", str(tmp_path / "protocol.csv")]
    assert tool.main(attempt) == 0
    protocol = pd.read_csv(tmp_path / "protocol.csv")  # the hand protocol's BH-MPJPE of 200 on the same items
    assert protocol["model"].tolist() == ["hand_nll"] and protocol["n_items"].tolist() == [6]
    assert protocol["measure"].iloc[0].startswith("BH-MPJPE of 200") and 0 < protocol["value_mm"].iloc[0] < 200
    v2 = pd.read_csv(val)
    assert v2["model"].tolist() == ["hand_mhentropy", "hand_mhentropy", "hand_nll"]
    assert v2["note"].fillna("").tolist() == ["", "", "a note"] and not (tmp_path / "no.csv").exists()
    with pytest.raises(SystemExit):
        tool.main(["--temperatures"])
