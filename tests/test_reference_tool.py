"""tools/reference_posterior.py on a tiny run: replica exchange on 2 body items, the per-item cache that
makes a stopped run resumable, --cached-only, and the calibration and decomposition tables; the convergence
verdict, the depth bones, and tools/reference_diagnosis.py --compare on constructed runs."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

warnings.filterwarnings("ignore", category=UserWarning)
ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("reference_posterior", ROOT / "tools" / "reference_posterior.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_tool_samples_caches_resumes_and_writes_its_tables(tmp_path):
    tool = _tool()
    tiny = ["--models", "body_mhentropy", "--items", "2", "--chunk", "2", "--warmup", "20", "--samples", "8",
            "--steps", "2", "--rungs", "2", "--chains", "2", "--keep", "8", "--splits", "val",
            "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--status", "tiny"]
    assert tool.main([*tiny, "--references", "1", "2", "--csv", str(tmp_path / "diag.csv")]) == 0
    diag = pd.read_csv(tmp_path / "diag.csv")
    assert len(diag) == 4 and (diag["status"] == "tiny").all()
    assert diag["swap_accept"].between(0, 1).all() and diag["rhat_occluded"].notna().all()
    saved = np.load(tmp_path / "out" / "body_mhentropy_ref1.npz")
    assert saved["joints_mm"].shape == (2, 8, 17, 3) and saved["joints_mm"].dtype == np.float16
    assert saved["index"].tolist() == [0, 1] and saved["split"].tolist() == ["val", "val"]
    # a second run with the same settings samples nothing: every item comes from the cache
    cached = sorted((tmp_path / "cache").rglob("*.npz"))
    assert len(cached) == 4
    stamps = [f.stat().st_mtime_ns for f in cached]
    assert tool.main([*tiny, "--references", "1", "--csv", str(tmp_path / "again.csv"), "--cached-only"]) == 0
    assert [f.stat().st_mtime_ns for f in cached] == stamps
    again = pd.read_csv(tmp_path / "again.csv")
    pd.testing.assert_frame_equal(again, diag[diag["reference"] == 1].reset_index(drop=True), check_dtype=False)
    # the tables, written where --table says
    out = ["--models", "body_mhentropy", "--out", str(tmp_path / "out")]
    assert tool.main([*out, "--calibration", "--table", str(tmp_path / "cal.csv")]) == 0
    cal = pd.read_csv(tmp_path / "cal.csv")
    assert set(cal["source"]) == {"flow, T = 1", "reference 1", "reference 2"}
    assert cal["score_occluded"].between(0, 0.95).all()
    assert tool.main([*out, "--decomposition", "body_mhentropy", "--label", " (tiny)",
                      "--table", str(tmp_path / "dec.csv")]) == 0
    dec = pd.read_csv(tmp_path / "dec.csv")
    assert set(dec["against"]) == {"truth", "reference 1 (tiny)", "reference 2 (tiny)"}
    model_rows = dec[dec["against"] != "truth"]
    assert (model_rows["spread_ratio_occluded"] > 0).all() and model_rows["flip_tv"].between(0, 1).all()


def test_best_of_groups_takes_the_best_of_each_consecutive_set():
    import torch

    tool = _tool()
    errors = torch.tensor([[5.0, 2.0, 7.0, 1.0, 9.0, 3.0]])
    assert tool.best_of_groups(errors, 3).tolist() == [[2.0, 1.0]]
    assert tool.best_of_groups(errors, 2).tolist() == [[2.0, 1.0, 3.0]]
    with pytest.raises(ValueError, match="do not split into groups of 4"):
        tool.best_of_groups(errors, 4)


def test_accuracy_table_scores_references_and_models_on_the_references_items(tmp_path):
    """References whose 25 draws are all the truth itself: their best-of-25 PA-MPJPE is 0 and every true joint lies in
    every central region (score |1 - q| averaged over q = 0.05 ... 0.95, i.e. 0.5); the model's error is positive."""
    import torch
    from torch.utils.data import default_collate

    tool = _tool()
    _, _, exp = tool.load("body_mhentropy")
    val = exp.split("val")
    index = [i for i in range(40) if bool(val[i]["ambiguous"])][:3]
    batch = default_collate([val[i] for i in index])
    truth = batch["joints_3d_mm"].numpy().astype(np.float16)
    out = tmp_path / "refs"
    out.mkdir()
    np.savez(out / "body_mhentropy_ref1.npz", joints_mm=np.repeat(truth[:, None], 25, 1), truth_mm=truth,
             visible=batch["visible"].numpy(), split=np.array(["val"] * len(index)), index=np.array(index))
    table = tmp_path / "acc.csv"
    assert tool.main(["--models", "body_mhentropy", "--out", str(out), "--accuracy", "body_mhentropy",
                      "--table", str(table)]) == 0
    acc = pd.read_csv(table).set_index("source")
    assert list(acc.index) == ["reference 1", "body_mhentropy, T = 0.8", "body_mhentropy, T = 1"]
    assert (acc["items"] == len(index)).all() and (acc["sets"] == 1).all()
    assert acc.loc["reference 1", "value_mm"] < 0.5 and acc.loc["reference 1", "score_occluded"] == pytest.approx(0.5)
    assert (acc.loc[["body_mhentropy, T = 0.8", "body_mhentropy, T = 1"], "value_mm"] > 5).all()
    assert torch.isfinite(torch.tensor(acc["value_mm"].to_numpy())).all()
    np.savez(out / "body_mhentropy_ref1.npz", joints_mm=np.repeat(truth[:, None], 8, 1), truth_mm=truth,
             visible=batch["visible"].numpy(), split=np.array(["val"] * len(index)), index=np.array(index))
    with pytest.raises(SystemExit, match="not a multiple of the protocol's 25"):
        tool.main(["--models", "body_mhentropy", "--out", str(out), "--accuracy", "body_mhentropy",
                   "--table", str(table)])


def test_converged_needs_both_rhat_and_ess_and_depth_bones_run_down_the_skeleton():
    tool = _tool()
    good = {"rhat_occluded": "1.005", "rhat_log_p": "1.002", "ess_occluded": "450", "ess_log_p": "900"}
    assert tool.converged(good) == "yes"
    assert tool.converged({**good, "rhat_log_p": "1.02"}) == "no"
    assert tool.converged({**good, "ess_occluded": "390"}) == "no"
    # an item with no occluded joint is judged on all joints
    none_hidden = {**good, "rhat_occluded": "", "ess_occluded": "", "ess_bulk_min": "500"}
    assert tool.converged({**none_hidden, "rhat_max": "1.3"}) == "no"
    assert tool.converged({**none_hidden, "rhat_max": "1.0"}) == "yes"
    from mhe.body import BODY_PARENTS, HAND_PARENTS

    for parents, bones in ((HAND_PARENTS, tool.HAND_DEPTH_BONES), (BODY_PARENTS, tool.LIMB_BONES)):
        for top, joint in bones:  # each pair is an ancestor and its descendant
            chain = [joint]
            while chain[-1] >= 0 and chain[-1] != top:
                chain.append(int(parents[chain[-1]]))
            assert chain[-1] == top, (top, joint)
    assert set(tool.DEPTH_BONES) == {17, 21}


def test_compare_runs_scores_each_run_on_the_items_they_share(tmp_path):
    """tools/reference_diagnosis.py --compare: a run whose draws share the truth's distribution scores near 0,
    one with half that spread far from it, on the items both hold, with each run's diagnostics' medians."""
    spec = importlib.util.spec_from_file_location("reference_diagnosis", ROOT / "tools" / "reference_diagnosis.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    rng = np.random.default_rng(0)
    B, R, J = 60, 200, 5
    centre = rng.normal(0, 30, (B, 1, J, 3))
    truth = (centre[:, 0] + rng.normal(0, 10, (B, J, 3))).astype(np.float16)
    truth[:, 0] = 0  # root-relative: joint 0 is the root
    visible = rng.random((B, J)) < 0.5
    for name, sd, items in (("wide", 10.0, range(B)), ("narrow", 5.0, range(10, B + 10))):
        draws = centre + rng.normal(0, sd, (B, R, J, 3))
        draws[:, :, 0] = 0
        keep = [i for i in range(B) if i in items]
        folder = tmp_path / name
        folder.mkdir()
        np.savez(folder / "hand_mhentropy_ref2.npz", joints_mm=draws.astype(np.float16), truth_mm=truth,
                 visible=visible, split=np.array(["val"] * B), index=np.array([i if i in items else B + i
                                                                               for i in range(B)]))
        pd.DataFrame({"model": "hand_mhentropy", "reference": 2, "split": "val", "item": keep,
                      "rhat_occluded": 1.0 + sd / 100, "ess_occluded": 40 * sd}).to_csv(folder / "diag.csv",
                                                                                           index=False)
    out = tmp_path / "compared.csv"
    runs = [f"{n}={tmp_path / n / 'hand_mhentropy_ref2.npz'}:{tmp_path / n / 'diag.csv'}" for n in ("wide", "narrow")]
    assert tool.main(["--compare", *runs, "--csv", str(out)]) == 0
    rows = pd.read_csv(out).set_index("run")
    assert (rows["items"] == B - 10).all()  # items 10-59 are in both
    assert rows.loc["wide", "score_occluded"] < 0.05 < 0.2 < rows.loc["narrow", "score_occluded"]
    assert rows.loc["narrow", "spread_mm_occluded"] / rows.loc["wide", "spread_mm_occluded"] == pytest.approx(0.5, 0.05)
    assert rows.loc["narrow", "rhat_occluded_median"] == pytest.approx(1.05)
    assert rows.loc["wide", "ess_occluded_median"] == pytest.approx(400)
