"""Generated results text (mhe.report): every number it writes is the CSV's, and the README's generated
blocks are what the committed CSVs give."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from mhe import report

ROOT = Path(__file__).resolve().parents[1]


def _table() -> pd.DataFrame:
    cols = ["mpjpe_bh", "pa_mpjpe_bh", "mpjpe_mean", "mpjpe_mode", "ah", "pjd_2d_vis", "pjd_3d_occ", "rd",
            "pjd_2d_vis_mm", "rd_mm", "px_per_mm", "plausible", "flip_rate", "mpjpe_bh_flip", "mpjpe_bh_noflip"]
    rows = {
        "mhentropy": [20.0, 9.0, 26.0, 25.0, 18.0, 4.0, 8.0, 0.5, 2.5, 0.3125, 1.6, 0.97, 0.1, 45.0, 17.0],
        "mhentropy_rot": [19.0, 9.0, 27.0, 26.0, 18.5, 4.2, 8.5, 0.49, 2.6, 0.3059, 1.6, 0.96, 0.2, 30.0, 16.0],
        "no_entropy": [30.0, 15.0, 30.0, 30.0, 14.0, 0.04, 0.04, 1.0, 0.025, 0.625, 1.6, 0.99, 0.2, 50.0, 25.0],
        "nll": [26.0, 7.5, 38.0, 30.0, 50.0, 16.0, 15.0, 1.07, 10.0, 0.6667, 1.6, 0.8, 0.1, 40.0, 24.0],
        "min_of_n": [28.0, 12.0, 31.0, 30.0, 23.0, 4.0, 3.6, 1.11, 2.5, 0.6944, 1.6, 0.9, 0.1, 40.0, 26.0],
        "deterministic": [32.0, 17.0, 32.0, 32.0, 14.0, 0.0, 0.0, math.nan, 0.0, math.nan, 1.6, 0.95, 0.25, 50, 26],
    }
    return pd.DataFrame(rows, index=cols).T


def _numbers(text: str) -> set[str]:
    return set(re.findall(r"\d+\.\d+", text))


def test_takeaways_quote_only_the_table():
    table = _table()
    text = report.hand_takeaways(table)
    # the numbers the sentences need, computed here independently
    assert "200 × less" in text  # 8.0 / 0.04
    assert f"MHEntropy (PCA flow) 0.312 ({0.3125 / 0.6667:.2f} × NLL's, {0.3125 / 0.6944:.2f} × min-of-N's)" in text
    assert f"({0.3059 / 0.6667:.2f} × NLL's, {0.3059 / 0.6944:.2f} × min-of-N's)" in text
    assert f"{26.0 / 32.0:.2f} × the deterministic error" in text
    assert "29 % more" in text  # AH 18 vs 14
    assert f"{(30.0 - 16.0) / (45.0 - 17.0):.2f} × the first" in text
    allowed = {f"{v:.{d}f}" for v in table.to_numpy().ravel() if math.isfinite(v) for d in (1, 2, 3)}
    allowed |= {f"{100 * v:.1f}" for v in table[["plausible", "flip_rate"]].to_numpy().ravel()}
    derived = {f"{0.3125 / 0.6667:.2f}", f"{0.3125 / 0.6944:.2f}", f"{0.3059 / 0.6667:.2f}", f"{0.3059 / 0.6944:.2f}",
               f"{26.0 / 32.0:.2f}", f"{14 / 28:.2f}", "28.0", "14.0"}
    assert _numbers(text) <= allowed | derived, _numbers(text) - allowed - derived


def test_results_table_rows_and_seed_summary():
    table = _table()
    seeds = pd.DataFrame({"objective": ["mhentropy"] * 3 + ["nll"] * 3, "seed": [0, 1, 2] * 2,
                          "mpjpe_bh": [20.0, 21.0, 22.0, 26, 26, 26], "mpjpe_mean": [1.0] * 6, "ah": [1.0] * 6,
                          "pjd_3d_occ": [1.0] * 6, "rd_mm": [0.3, 0.3, 0.3, 0.6, 0.7, 0.8], "plausible": [1.0] * 6})
    summary = report.seed_summary(seeds)
    assert summary.loc["mhentropy", "mpjpe_bh_mean"] == pytest.approx(21.0)
    assert summary.loc["mhentropy", "mpjpe_bh_sd"] == pytest.approx(1.0)
    assert summary.loc["nll", "rd_mm_sd"] == pytest.approx(0.1)
    text = report.hand_results(table, seeds)
    assert "| MHEntropy (PCA flow) | 20.0 | 26.0 | 25.0 |" in text
    assert "| deterministic | 32.0 |" in text and "| — |" in text  # undefined RD shown as a dash
    assert "21.0 ± 1.0" in text and "0.700 ± 0.100" in text


def test_render_replaces_only_the_marked_blocks(tmp_path):
    _table().to_csv(tmp_path / "04_hand_metrics.csv")
    text = "intro\n<!-- generated: hand-results -->\nold 1.23\n<!-- end: hand-results -->\noutro 4.56\n"
    new = report.render_readme(text, tmp_path)
    assert new.startswith("intro\n<!-- generated: hand-results -->\nThe test hands' camera gives 1.60 px per mm")
    assert "\n| model |" in new
    assert new.endswith("\n<!-- end: hand-results -->\noutro 4.56\n") and "old 1.23" not in new
    assert report.render_readme(new, tmp_path) == new


def test_readme_blocks_match_the_committed_csvs():
    text = (ROOT / "README.md").read_text()
    for name in report.BLOCKS:
        if f"<!-- generated: {name} -->" in text:
            assert f"<!-- end: {name} -->" in text
    assert "<!-- generated: hand-results -->" in text
    assert report.render_readme(text, ROOT / "figures") == text, (
        "README.md's generated results differ from figures/*.csv: run `python -m mhe.report`")


def _body_table() -> pd.DataFrame:
    cols = ["pa_mpjpe_bh", "pa_mpjpe_bh_ambiguous", "mpjpe_bh", "mpjpe_mode", "mpjpe_mean", "ah_ambiguous",
            "pjd_2d_vis_ambiguous", "pjd_3d_occ_ambiguous", "rd_ambiguous", "rd_mm_ambiguous", "plausible",
            "px_per_mm", "n_images", "n_ambiguous"]
    rows = {
        "mhentropy": [70.0, 80.0, 110.0, 125.0, 130.0, 9.0, 2.0, 40.0, 0.05, 0.36, 0.99, 0.14, 500, 230],
        "prohmr_2d": [160.0, 170.0, 250.0, 250.0, 250.0, 12.0, 0.1, 0.8, 0.125, 0.9, 0.02, 0.14, 500, 230],
        "nll": [65.0, 72.0, 100.0, 130.0, 170.0, 25.0, 10.0, 120.0, 0.083, 0.6, 0.9, 0.14, 500, 230],
        "deterministic": [90.0, 99.0, 140.0, 140.0, 140.0, 6.0, 0.0, 0.0, math.nan, math.nan, 0.98, 0.14, 500, 230],
    }
    return pd.DataFrame(rows, index=cols).T


def test_body_takeaways_quote_only_the_table():
    table = _body_table()
    text = report.body_takeaways(table)
    assert f"({0.36 / 0.6:.2f} ×)" in text and "MHEntropy 0.360 against NLL's 0.600" in text
    assert "deterministic regressor is 140.0 mm off" in text
    allowed = {f"{v:.{d}f}" for v in table.to_numpy().ravel() if math.isfinite(v) for d in (1, 2, 3)}
    allowed |= {f"{100 * v:.1f}" for v in table["plausible"]}
    assert _numbers(text) <= allowed | {f"{0.36 / 0.6:.2f}"}, _numbers(text) - allowed
    full = report.body_results(table)
    assert "| MHEntropy | 2D visible | 70.0 | 80.0 |" in full and "500 test bodies, 230 of them ambiguous" in full
    # rows in the table's order: MHEntropy, ProHMR without labels, NLL, ..., deterministic
    assert full.index("| MHEntropy |") < full.index("| ProHMR's objective, no pose labels |") < full.index("| NLL")
