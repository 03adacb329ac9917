"""Generated results text (mhe.lab.report): every number it writes is the CSV's, and the README's generated
blocks are what the committed CSVs give."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from mhe.lab import gallery, report

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
        "README.md's generated results differ from figures/*.csv: run `python -m mhe.lab.report`")


def test_results_page_blocks_match_the_committed_csvs():
    """The book's results page holds every results table (all blocks but the gallery), as the CSVs give them."""
    text = (ROOT / "docs" / "results.md").read_text()
    for name in report.BLOCKS:
        if name != "gallery":
            assert f"<!-- generated: {name} -->" in text and f"<!-- end: {name} -->" in text, name
    assert report.render_readme(text, ROOT / "figures") == text, (
        "docs/results.md's generated results differ from figures/*.csv: run `python -m mhe.lab.report`")


def test_the_report_rewrites_the_results_page_beside_the_readme(tmp_path, capsys):
    figures = tmp_path / "figures"
    figures.mkdir()
    _table().to_csv(figures / "04_hand_metrics.csv")
    block = "<!-- generated: hand-results -->\nold 1.23\n<!-- end: hand-results -->\n"
    (tmp_path / "README.md").write_text("readme\n" + block)
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "results.md"
    page.write_text("results\n" + block)
    args = ["--readme", str(tmp_path / "README.md"), "--figures", str(figures)]
    assert report.main([*args, "--check"]) == 1
    assert "README.md" in capsys.readouterr().err
    assert report.main(args) == 0
    for path in (tmp_path / "README.md", page):
        assert "old 1.23" not in path.read_text() and "| MHEntropy (PCA flow) | 20.0 |" in path.read_text()
    assert report.main([*args, "--check"]) == 0
    page.write_text("results\n" + block)  # only the page stale: --check still fails, naming it
    assert report.main([*args, "--check"]) == 1 and "results.md" in capsys.readouterr().err


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
    assert full.index("| MHEntropy |") < full.index("| ProHMR's objective + pose prior, no pose labels |") \
        < full.index("| NLL")


# -- notebook 07's tables and the README's gallery ------------------------------------------------------

def _diag_frame() -> pd.DataFrame:
    rows = []
    for model, mode, side, oracle, gap in (("mhentropy", 30.0, 24.0, 20.0, 0.4), ("nll", 40.0, 36.0, 30.0, 0.3),
                                           ("deterministic", 35.0, 35.0, 35.0, math.nan)):
        for subset, shift in (("all", 0.0), ("occluded", 2.0)):
            rows.append({"model": model, "subset": subset, "n_items": 10 if subset == "all" else 6, "ess": 0.01,
                         "gt_loglik_per_dim": -1.0, "calibration_gap_occ": gap, "calibration_gap_vis": gap,
                         "calib_occ_0.5": 0.5 - gap, "calib_occ_0.1": 0.05,
                         "mode": mode + shift, "mean": mode + 1 + shift, "oracle": oracle + shift,
                         "selected_side_view": side + shift, "selected_side_view_noisy": side + 1 + shift,
                         "selected_depths": mode + shift})
    return pd.DataFrame(rows)


def test_selection_and_diagnostics_summaries_by_hand():
    frame = _diag_frame()
    t = report.selection_summary(frame, "occluded")
    assert t.loc["mhentropy", "mode"] == 32.0 and t.loc["mhentropy", "selected_side_view"] == 26.0
    assert t.loc["mhentropy", "selected_side_view_vs_mode_pct"] == pytest.approx(100 * (26 / 32 - 1))  # -18.75 %
    assert t.loc["nll", "oracle_vs_mode_pct"] == pytest.approx(100 * (32 / 42 - 1))
    assert t.loc["deterministic", "selected_depths_vs_mode_pct"] == 0.0
    d = report.diagnostics_summary(frame, "all")
    assert list(d.index) == ["mhentropy", "nll", "deterministic"] and d.loc["nll", "calibration_gap_occ"] == 0.3
    text = report.diagnostics_takeaways(frame, frame.replace("occluded", "ambiguous"), samples=100)
    assert "best NLL (ProHMR-style) 0.300, MHEntropy 0.400 (+0.100)" in text and "1/S = 0.010" in text
    assert "2 of the 2 sampled models' curves lie below the diagonal" in text
    sel = report.selection_takeaways(frame, frame.replace("occluded", "ambiguous"))
    assert "MHEntropy 26.0 against 32.0 mm (-18.8 %; oracle -31.2 %)" in sel
    assert "deterministic" not in sel  # no choice to make: not listed
    frame["temperature"] = [1.2, 1.2, 0.8, 0.8, 0.8, 0.8]  # tables that say each model's sampling temperature
    assert report.selection_summary(frame, "occluded").loc["mhentropy", "temperature"] == 1.2
    sel = report.selection_takeaways(frame, frame.replace("occluded", "ambiguous"))
    assert "MHEntropy 26.0 against 32.0 mm (-18.8 %; oracle -31.2 %; T = 1.2)" in sel
    assert "NLL (ProHMR-style) 38.0 against 42.0 mm (-9.5 %; oracle -23.8 %; T = 0.8)" in sel


def test_beside_the_paper_sets_our_rows_beside_the_papers():
    from mhe.lab.paper import PAPER_BODY_ACCURACY, PAPER_HAND, beside_the_paper

    hand = _table()
    body = _body_table()
    t = beside_the_paper(hand, body)
    row = t[(t.setting == "hands") & (t.metric == "mpjpe_bh")].iloc[0]
    assert row.ours == 20.0 and row.paper == PAPER_HAND["mpjpe_bh"]
    row = t[(t.paper_row == "MHEntropy (2D visible)") & (t.metric == "pa_mpjpe_bh_ambiguous")].iloc[0]
    assert row.ours == 80.0 and row.paper == PAPER_BODY_ACCURACY[("MHEntropy", "2D visible")][1]
    row = t[(t.paper_row == "HMR (2D visible)")].iloc[0]  # no counterpart of ours
    assert math.isnan(row.ours) and row.our_model == "—"


def _notebook(path, cells):
    import json

    nb = {"cells": [{"cell_type": kind, "metadata": {}, "source": src, **({"outputs": [], "execution_count": None}
                                                                        if kind == "code" else {})}
                    for kind, src in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))


def test_gallery_takes_each_caption_from_the_notebook_that_saves_the_figure(tmp_path):
    notebooks, figures = tmp_path / "notebooks", tmp_path / "figures"
    notebooks.mkdir(), figures.mkdir()
    _notebook(notebooks / "02_demo.ipynb", [
        ("markdown", "## 2 · A title\n\nThe first sentence. The second one."),
        ("code", 'fig = f()\nsave_figure(fig, "02_a")'),
        ("code", '# caption: Cap B.\nsave_figure(fig, "02_b")\nsave_figure(fig, "02_b2")'),
        ("code", 'for k in range(2):\n    # caption: Cap C.\n    save_figure(fig, f"02_c_{k}")'),
        ("code", '# caption 02_d_x: Cap D.\nfor n in names:\n    save_figure(fig, f"02_d_{n}")'),
    ])
    _notebook(notebooks / "notes.ipynb",
              [("code", '# caption: not a numbered notebook\nsave_figure(fig, "99_orphan")')])
    for name in ("02_a", "02_b", "02_b2", "02_c_0", "02_c_1", "02_d_x", "99_orphan"):
        (figures / f"{name}.png").write_bytes(b"")
    (figures / "02_e.html").write_text("")  # not a PNG: not in the gallery
    captions = gallery.figure_captions(notebooks)
    assert captions["02_a"] == ("02_demo", "A title: The first sentence.")
    assert captions["02_b"][1] == "Cap B." and captions["02_b2"][1] == "A title: The first sentence."
    assert captions["02_c_*"][1] == "Cap C." and captions["02_d_x"][1] == "Cap D."
    text = gallery.gallery(figures, notebooks)
    assert "| `02_c_1.png`: Cap C. |" in text and "`02_d_x.png`: Cap D." in text
    assert '<img src="figures/02_a.png" width="240">' in text and "02_e" not in text
    assert "**`notebooks/02_demo.ipynb`**" in text
    assert "`99_orphan.png`: (no notebook saves this figure)" in text


def test_gallery_lists_every_committed_figure_with_its_notebooks_caption():
    """The book's figure gallery (book/build.py renders this block): every PNG in figures/, each with a caption
    from the notebook or tool that writes it."""
    block = gallery.gallery(ROOT / "figures", ROOT / "notebooks")
    pngs = sorted((ROOT / "figures").glob("*.png"))
    assert pngs
    for png in pngs:
        assert f'<img src="figures/{png.name}"' in block and f"`{png.name}`:" in block, png.name
    assert "no notebook saves this figure" not in block, "a committed figure that no notebook or tool writes"


def _table_with_images() -> pd.DataFrame:
    table = _table()
    image = pd.DataFrame({
        "mhentropy_image": [44.0, 15.0, 50.0, 49.0, 45.0, 5.2, 6.7, 0.78, 3.5, 0.52, 1.6, 0.999, 0.4, 57.0, 37.0],
        "nll_image": [49.0, 14.0, 66.0, 59.0, 67.0, 16.0, 21.6, 0.74, 11.3, 0.50, 1.6, 0.85, 0.4, 60.0, 40.0],
        "deterministic_image": [57.0, 20.0, 57.0, 57.0, 40.0, 0.0, 0.0, math.nan, 0.0, math.nan, 1.6, 0.99, 0.5,
                                70, 45],
    }, index=table.columns).T
    out = pd.concat([table, image])
    out.insert(0, "input", ["visible 2D keypoints"] * len(table) + ["image (64 px crop)"] * len(image))
    return out


def test_image_rows_get_an_input_column_and_their_own_takeaway(tmp_path):
    table = _table_with_images()
    text = report.hand_results(table)
    assert "| model | input | BH-MPJPE |" in text
    assert "| MHEntropy, from the image | image (64 px crop) | 44.0 |" in text
    assert "| MHEntropy (PCA flow) | visible 2D keypoints | 20.0 |" in text
    take = report.hand_takeaways(table)
    line = next(s for s in take.splitlines() if "From pixels" in s)
    assert "44.0 mm off (from the keypoints: 20.0 mm), against 57.0 mm" in line
    assert f"0.520 against 0.500 for NLL on the same crops ({0.52 / 0.50:.2f} ×)" in line
    assert "99.9 % of its hypotheses plausible (NLL 85.0 %)" in line
    assert ("40.0 % of the hands get a depth-mirrored palm (BH-MPJPE 57.0 mm on them, 37.0 mm on the rest), "
            "against 10.0 %") in line
    # the CSV round trip the README takes (a string column among the numbers)
    table.to_csv(tmp_path / "04_hand_metrics.csv", float_format="%.4f")
    assert report.hand_results(pd.read_csv(tmp_path / "04_hand_metrics.csv", index_col=0)) == text


def test_metrics_table_input_column():
    from mhe.viz.hands import metrics_table

    results = {"a": {"mpjpe_bh": 1.0}, "b": {"mpjpe_bh": 2.0}}
    table = metrics_table(results, inputs={"a": "visible 2D keypoints", "b": "image (64 px crop)"})
    assert list(table.columns[:2]) == ["input", "mpjpe_bh"] and table.loc["b", "input"] == "image (64 px crop)"
    assert math.isnan(table.loc["a", "rd_mm"])
    with pytest.raises(ValueError, match="no input for \\['b'\\]"):
        metrics_table(results, inputs={"a": "x"})


def test_validation_table_shows_objective_b_and_rd_mm():
    table = pd.DataFrame([
        {"run": "long", "objective": "mhentropy", "pose": "pca", "prior": "joint_limits (weight 1000)",
         "rotation": "head",
         "b": 0.015, "step": 9000.0, "mpjpe_bh": 17.18, "mpjpe_mean": 21.36, "ah": 16.0, "rd": 0.522, "rd_mm": 0.3458,
         "plausible": 0.9991, "flip_rate": 0.0977, "mpjpe_bh_flip": 27.9, "mpjpe_bh_noflip": 16.0},
        {"run": "old", "objective": "nll", "pose": "pca", "prior": "none (NLL)", "rotation": "head", "b": 0.03,
         "step": 3000.0, "mpjpe_bh": 25.0, "mpjpe_mean": 37.0, "ah": 50.0, "rd": 1.0, "rd_mm": math.nan,
         "plausible": 0.9, "flip_rate": 0.3, "mpjpe_bh_flip": 45.0, "mpjpe_bh_noflip": 18.0}])
    text = report.validation_results(table)
    assert text.splitlines()[0].startswith("| run | objective | pose | prior | rotation | b | steps |")
    assert ("| `long` | mhentropy | pca | joint_limits (weight 1000) | head | 0.015 | 9000 | 17.2 | 21.4 | 16.0 "
            "| 0.522 | 0.346 |") in text
    assert "| `old` | nll | pca | none (NLL) | head | 0.03 | 3000 |" in text and "| 1.000 | — |" in text
    # an older table without the objective and b columns still renders
    older = table.drop(columns=["objective", "b"])
    assert "| run | pose | prior | rotation | steps |" in report.validation_results(older)


def test_flip_calibration_block_marks_the_highest_log_likelihood():
    table = pd.DataFrame({"model": ["hand_mhentropy_rot"] * 3, "flip_temperature": [4.0, 1.0, 8.0],
                          "gt_log_lik": [-1.93, -1.95, -1.94], "both_tilts": [0.5, 0.2, 0.6],
                          "mpjpe_bh": [14.9, 15.4, 14.8], "mpjpe_mean": [22.7, 22.1, 24.4], "ah": [30.0, 18.0, 40.0],
                          "rd_mm": [0.448, 0.405, 0.53],
                          "mpjpe_bh_flip": [22.3, 29.8, 21.9], "mpjpe_bh_noflip": [14.3, 14.5, 14.3]})
    lines = report.flip_calibration_results(table).splitlines()
    assert len(lines) == 5
    assert lines[2].startswith(
        f"| {report.model_label('mhentropy_rot')} | 1 | -1.9500 | 20.0 % | 15.4 | 22.1 | 18.0 | 0.405 |")
    assert "| **4** | -1.9300 | 50.0 % |" in lines[3] and lines[3].endswith("| 22.3 / 14.3 |")
    assert "**" not in lines[2] + lines[4]
    # a candidate run shows only its chosen τ
    candidate = table.assign(model="runs/rot_tilt", gt_log_lik=[-2.6, -2.5, -2.7])
    lines = report.flip_calibration_results(pd.concat([table, candidate])).splitlines()
    assert len(lines) == 6 and lines[5].startswith("| runs/rot_tilt | **1** | -2.5000 |")


def _readme_bullet(text: str, title: str) -> str:
    """The results page's bullet ``- **<title>...`` up to the next bullet or blank line, on one line."""
    start = text.index(f"- **{title}")
    ends = [i for i in (text.find("\n- ", start + 1), text.find("\n\n", start)) if i != -1]
    return " ".join(text[start:min(ends)].split())


def test_results_page_validation_bullets_quote_the_committed_csvs():
    """The hand-written numbers of the "Chosen on validation" bullets of the results page (docs/results.md, in the
    book), recomputed from the CSVs."""
    from mhe.lab.diagnostics_runs import flip_temperature_choice

    text = (ROOT / "docs" / "results.md").read_text()
    runs = pd.read_csv(ROOT / "figures" / "04_validation_choices.csv").set_index("run")

    def v(run: str, col: str, digits: int = 1) -> str:
        return f"{runs.loc[run, col]:.{digits}f}"

    def gap(run: str) -> float:
        return runs.loc[run, "mpjpe_bh_flip"] - runs.loc[run, "mpjpe_bh_noflip"]

    quoted = {
        "Training length": [f"MHEntropy {v('pca_9k', 'mpjpe_bh')} → {v('pca_18k', 'mpjpe_bh')} mm (its `rd_mm` "
                            f"{v('pca_9k', 'rd_mm', 3)} → {v('pca_18k', 'rd_mm', 3)})",
                            f"the axis-angle flow {v('jl_aa_w1000', 'mpjpe_bh')} → {v('aa_18k', 'mpjpe_bh')} mm "
                            f"(`rd_mm` {v('jl_aa_w1000', 'rd_mm', 3)} → {v('aa_18k', 'rd_mm', 3)})",
                            f"model {v('rot_cond', 'mpjpe_bh')} → {v('rot_18k', 'mpjpe_bh')} mm",
                            f"rises, {v('rot_cond', 'rd_mm', 3)} → {v('rot_18k', 'rd_mm', 3)}",
                            f"min-of-N {v('mon_9k', 'mpjpe_bh')} → {v('mon_18k', 'mpjpe_bh')} mm",
                            f"NLL {v('nll_9k', 'mpjpe_bh')} → {v('nll_18k', 'mpjpe_bh')} mm",
                            f"no-entropy {v('noent_9k', 'mpjpe_bh')} → {v('noent_18k', 'mpjpe_bh')} mm",
                            f"deterministic model {v('det_9k', 'mpjpe_bh')} → {v('det_18k', 'mpjpe_bh')} mm"],
        "Conditional flip branches": [
            f"BH-MPJPE {v('rot_cond', 'mpjpe_bh')} against {v('rot_9k', 'mpjpe_bh')} mm",
            f"`rd_mm` {v('rot_cond', 'rd_mm', 3)} against {v('rot_9k', 'rd_mm', 3)}",
            f"BH {v('rot_cond', 'mpjpe_bh_flip')} / rest {v('rot_cond', 'mpjpe_bh_noflip')} against "
            f"{v('rot_9k', 'mpjpe_bh_flip')} / {v('rot_9k', 'mpjpe_bh_noflip')} mm"],
        "Tempering": [f"gap {gap('rot_temper'):.1f} mm at the end"],
    }
    temper = pd.read_csv(ROOT / "figures" / "04_tempering_validation.csv")
    quoted["Tempering"] += [f"flip rate {temper.flip_rate[0]:.2f} and {temper.flip_rate[1]:.2f}",
                            f"flip gap of {temper.flip_gap[0]:.1f} and {temper.flip_gap[1]:.1f} mm"]
    flips = pd.read_csv(ROOT / "figures" / "04_flip_calibration.csv")

    def at_choice(model: str) -> pd.Series:
        rows = flips[flips["model"] == model]
        return rows[rows["flip_temperature"] == flip_temperature_choice(model)].iloc[0]

    # the variants are compared with rot_cond, the 9000-step model shipped when they were tried
    b, s = at_choice("runs/rot_branch"), at_choice("runs/rot_cond")
    quoted["Each branch's own KL"] = [
        f"AH {b.ah:.1f} at its chosen τ, against {s.ah:.1f}",
        f"{b.mpjpe_bh_flip:.1f} / {b.mpjpe_bh_noflip:.1f} mm at its chosen τ, against "
        f"{s.mpjpe_bh_flip:.1f} / {s.mpjpe_bh_noflip:.1f}",
        f"{b.gt_log_lik:.3f} against {s.gt_log_lik:.3f} nats".replace("-", "−")]
    tilt = at_choice("runs/rot_tilt")
    quoted["One palm tilt per branch"] = [
        f"BH-MPJPE {v('rot_tilt', 'mpjpe_bh')} and {v('rot_tilt_w1', 'mpjpe_bh')} against "
        f"{v('rot_cond', 'mpjpe_bh')} mm",
        f"BH {v('rot_tilt', 'mpjpe_bh_flip')} / rest {v('rot_tilt', 'mpjpe_bh_noflip')} and "
        f"{v('rot_tilt_w1', 'mpjpe_bh_flip')} / {v('rot_tilt_w1', 'mpjpe_bh_noflip')} against "
        f"{v('rot_cond', 'mpjpe_bh_flip')} / {v('rot_cond', 'mpjpe_bh_noflip')} mm",
        f"chosen τ = {tilt.flip_temperature:g}",
        f"({tilt.gt_log_lik:.3f} against {s.gt_log_lik:.3f} nats".replace("-", "−"),
        f"({tilt.mpjpe_bh_flip:.1f} / {tilt.mpjpe_bh_noflip:.1f} against "
        f"{s.mpjpe_bh_flip:.1f} / {s.mpjpe_bh_noflip:.1f} mm)"]
    for title, phrases in quoted.items():
        bullet = _readme_bullet(text, title)
        for phrase in phrases:
            assert phrase in bullet, f"docs/results.md's bullet {title!r} should quote {phrase!r} (from the CSVs)"
