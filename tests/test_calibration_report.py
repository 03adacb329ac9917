"""The calibration tables (mhe.lab.calibration_report) and figure (mhe.viz.calibration) on hand-made frames."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mhe.lab.calibration_report import calibration_results, fix_results  # noqa: E402
from mhe.viz.calibration import calibration_takeaways, plot_temperature_calibration  # noqa: E402


def _test_frame():
    rows = []
    for model, body, (s1, t, s2) in (("hand_mhentropy_rot", "hand", (0.31, 2.5, 0.02)),
                                     ("hand_nll", "hand", (0.38, 4.0, 0.20)),
                                     ("hand_no_entropy", "hand", (0.50, 1.0, 0.50)),
                                     ("body_mhentropy", "body", (0.42, 4.0, 0.03))):
        for sampling, temp, score in (("T = 1", 1.0, s1), ("chosen on validation", t, s2)):
            rows.append({"model": model, "body": body, "sampling": sampling, "temperature": temp, "n_items": 500,
                         "score_occ": score, "inside_90_occ": 0.9 - score, "mpjpe_bh": 10 + temp})
    return pd.DataFrame(rows)


def _val_frame():
    temps = [0.8, 1.0, 2.0, 4.0]
    rows = []
    for model, body, note, scores in (("hand_mhentropy_rot", "hand", "", [0.35, 0.3, 0.05, 0.2]),
                                      ("runs/29ft/x", "hand", "w_ent = 6", [0.2, 0.04, 0.2, 0.3]),
                                      ("hand_nll", "hand", "", [0.4, 0.38, 0.3, 0.2]),
                                      ("body_mhentropy", "body", "", [0.45, 0.42, 0.2, 0.03])):
        for t, s in zip(temps, scores, strict=True):
            rows.append({"model": model, "body": body, "steps": 1500, "note": note, "temperature": t, "n_items": 8,
                         "score_occ": s, "inside_90_occ": 0.5, "score_vis": s, "spread_mm_occ": 9.0, "mpjpe_bh": 14.0})
    return pd.DataFrame(rows)


def test_the_calibration_table_has_one_row_per_model_with_both_temperatures():
    text = calibration_results(_test_frame())
    lines = text.splitlines()
    assert lines[0].startswith("| body | model | score at T = 1") and len([x for x in lines if x.startswith("| ")]) == 5
    assert "| hands | MHEntropy (rotation in the flow) | 0.31 | 59% | 2.5 | 0.02 | 88% | 11.0 → 12.5 |" in text
    assert "| bodies | MHEntropy | 0.42 |" in text
    assert "At T = 1, 0 of 4 models reach the goal of 0.10. At the temperature chosen on validation, 2 do." in text
    one = _test_frame()
    one.loc[(one["model"] == "body_mhentropy") & (one["sampling"] == "T = 1"), "score_occ"] = 0.05
    assert "1 of 4 models reach the goal of 0.10: MHEntropy (bodys, 0.05)" not in calibration_results(one)
    assert "1 of 4 models reach the goal of 0.10: MHEntropy (bodies, 0.05)" in calibration_results(one)


def test_the_fixes_table_keeps_the_attempts_and_the_mhentropy_rows_at_t1():
    protocol = pd.DataFrame({"model": ["runs/29ft/x", "body_mhentropy"], "body": ["hand", "body"],
                             "measure": ["BH of 200", "PA of 25"], "value_mm": [13.25, 80.5]})
    text = fix_results(_val_frame(), protocol)
    assert "| `runs/29ft/x` | w_ent = 6 | 1500 | 0.040 | 50% | 0.040 | 9.0 | 14.0 | 13.2 |" in text
    assert "| `hand_mhentropy_rot` | shipped | 1500 | 0.300 | 50% | 0.300 | 9.0 | 14.0 | — |" in text
    assert "| `body_mhentropy` | shipped | 1500 | 0.420 | 50% | 0.420 | 9.0 | 14.0 | 80.5 |" in text
    assert "hand_nll" not in text  # only MHEntropy models are the attempts' baselines
    assert "Accuracy of record: hands, BH of 200; bodies, PA of 25." in text
    bare = fix_results(_val_frame())  # without the protocol table every row's accuracy of record is a dash
    assert bare.count("| — |") == 3 and "Accuracy of record" not in bare


def test_the_takeaways_name_the_best_the_calibrated_the_stuck_and_the_flat():
    text = calibration_takeaways(_test_frame())
    assert "**Hands.** At T = 1 the best calibrated is MHEntropy (rotation in the flow): 0.31" in text
    assert "brings MHEntropy (rotation in the flow) to 0.02 (T = 2.5)" in text
    assert "It cannot calibrate NLL (ProHMR-style) (0.20 at T = 4)" in text
    assert "No entropy has no spread on occluded joints to widen" in text
    assert "**Bodies.** At T = 1 the best calibrated is MHEntropy: 0.42" in text


def test_the_temperature_figure_draws_each_shipped_model_and_rings_its_lowest_score():
    fig = plot_temperature_calibration(_val_frame())
    hands, bodies = fig.axes
    assert hands.get_xscale() == "log" and "hands" in hands.get_title() and "bodies" in bodies.get_title()
    labels = [line.get_label() for line in hands.get_lines()]
    assert "MHEntropy (rotation in the flow)" in labels and "NLL (ProHMR-style)" in labels
    assert not any("29ft" in label for label in labels)  # attempts (rows with a note) are left out by default
    rings = [line for line in hands.get_lines() if line.get_markersize() == 11]
    assert sorted((float(r.get_xdata()[0]), float(r.get_ydata()[0])) for r in rings) == [(2.0, 0.05), (4.0, 0.2)]
    goal = [line for line in hands.get_lines() if line.get_label().startswith("goal")]
    assert len(goal) == 1 and np.allclose(goal[0].get_ydata(), 0.10)
