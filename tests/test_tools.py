"""The result tools: the seed study and the validation collector, on tiny runs."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pandas as pd
import pytest

warnings.filterwarnings("ignore", category=UserWarning)
ROOT = Path(__file__).resolve().parents[1]


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed_study_trains_extra_seeds_and_evaluates_every_one(tmp_path):
    out = tmp_path / "seeds.csv"
    tiny = ["train.steps=2", "data.train_size=8", "data.val_size=4", "train.batch_size=4", "train.eval_every=0"]
    assert _tool("hand_seed_study").main(["--objectives", "deterministic", "--seeds", "0", "1", "--out", str(out),
                                          "--runs", str(tmp_path / "runs"), "--max-items", "3", "--samples", "2",
                                          "--set", *tiny]) == 0
    frame = pd.read_csv(out)
    assert frame["seed"].tolist() == [0, 1] and (frame["objective"] == "deterministic").all()
    assert (tmp_path / "runs" / "deterministic_s1" / "last.pt").exists()
    assert frame["mpjpe_bh"].notna().all() and frame.loc[0, "mpjpe_bh"] != frame.loc[1, "mpjpe_bh"]
    # a finished run is not trained again
    stamp = (tmp_path / "runs" / "deterministic_s1" / "last.pt").stat().st_mtime_ns
    _tool("hand_seed_study").main(["--objectives", "deterministic", "--seeds", "1", "--out", str(out), "--runs",
                                   str(tmp_path / "runs"), "--max-items", "3", "--set", *tiny])
    assert (tmp_path / "runs" / "deterministic_s1" / "last.pt").stat().st_mtime_ns == stamp


def test_collect_validation_reads_the_last_validation_of_each_run(tmp_path):
    from mhe.errors import ConfigError
    from mhe.lab.config_io import dump_config, load_config

    run = tmp_path / "cand"
    run.mkdir()
    cfg = load_config("hand_mhentropy_rot")
    dump_config(cfg, run / "config.yaml")
    pd.DataFrame({"step": [10, 20], "mpjpe_bh": [30.0, 25.0], "plausible": [0.9, 0.95]}).to_csv(run / "val_log.csv")
    out = tmp_path / "v.csv"
    assert _tool("collect_validation").main([str(run), "--out", str(out)]) == 0
    row = pd.read_csv(out).iloc[0]
    assert row["run"] == "cand" and row["step"] == 20 and row["mpjpe_bh"] == 25.0
    assert row["rotation"] == "flow + flip mixture (conditional)" and row["prior"] == "joint_limits (weight 1000)"
    # a run of a variant that was removed (docs/variants.md) is refused with a message saying so
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("  flip_mixture: true",
                                                  "  flip_mixture: true\n  flip_branches: tilt"))
    with pytest.raises(ConfigError, match=r"model.flip_branches='tilt'.*not adopted.*docs/variants.md"):
        _tool("collect_validation").main([str(run), "--out", str(out)])


def test_collect_validation_appends_body_rows_and_names_prohmrs_prior(tmp_path):
    from mhe.lab.config_io import dump_config, load_config

    out = tmp_path / "v.csv"
    pd.DataFrame({"run": ["old", "p2d"], "objective": ["mhentropy", "prohmr"], "step": [5, 5]}).to_csv(out, index=False)
    run = tmp_path / "p2d"
    run.mkdir()
    cfg = load_config("body_prohmr_2d")
    dump_config(cfg, run / "config.yaml")
    pd.DataFrame({"step": [7], "pa_mpjpe_bh": [99.0], "rd_mm_ambiguous": [0.5]}).to_csv(run / "val_log.csv")
    assert _tool("collect_validation").main([str(run), "--out", str(out), "--append"]) == 0
    frame = pd.read_csv(out)
    assert frame["run"].tolist() == ["old", "p2d"]  # kept, and the rerun replaced
    assert frame.loc[1, "step"] == 7 and frame.loc[1, "pa_mpjpe_bh"] == 99.0
    w_prior = cfg.objective.w_prior
    assert frame.loc[1, "prior"] == f"learned (limits weight 1000) × {w_prior:g} (ProHMR's objective)"
    assert frame.loc[1, "flow"] == "6 × realnvp" and frame.loc[0, "flow"] == "6 × realnvp"
    assert frame.loc[1, "temper_steps"] == 0


def test_diagnostics_tool_writes_all_and_ambiguous_rows_per_model(tmp_path):
    out = tmp_path / "d.csv"
    assert _tool("diagnostics").main(["--body", "hand", "--smoke", "--items", "6", "--models", "mhentropy",
                                      "deterministic", "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert frame[["model", "subset"]].values.tolist() == [["mhentropy", "all"], ["mhentropy", "occluded"],
                                                          ["deterministic", "all"], ["deterministic", "occluded"]]
    assert frame.loc[0, "n_items"] == 6 and frame.loc[0, "ess"] > 0 and pd.isna(frame.loc[2, "ess"])
    assert (frame["oracle"] <= frame["selected_side_view"] + 1e-6).all()


def test_browser_mutants_match_the_current_explorer_code():
    """Each mutant of tools/check_browser_test.py replaces code that is in the source once, by different code."""
    tool = _tool("check_browser_test")
    assert len(tool.MUTANTS) == 3
    for name, (path, current, defect) in tool.MUTANTS.items():
        assert (ROOT / path).read_text().count(current) == 1, name
        assert defect != current, name


def test_selection_validation_reads_the_validation_split_at_each_temperature(tmp_path):
    out = tmp_path / "sel.csv"
    assert _tool("selection_validation").main(["hand_mhentropy", "--items", "6", "--samples", "4",
                                               "--temperatures", "0.8", "1.0", "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert frame[["temperature", "subset"]].values.tolist() == [[0.8, "all"], [0.8, "occluded"], [1.0, "all"],
                                                                [1.0, "occluded"]]
    from mhe.lab.config_io import load_config

    assert (frame["model"] == "hand_mhentropy").all()
    assert (frame["steps"] == load_config("hand_mhentropy").train.steps).all()
    assert (frame.loc[frame["subset"] == "all", "n_items"] == 6).all()
    assert (frame["oracle"] <= frame["selected_side_view"] + 1e-6).all()
    gain = 100 * (frame["selected_side_view"] / frame["mode"] - 1)
    assert frame["side_view_vs_mode_pct"].to_numpy() == pytest.approx(gain.to_numpy(), rel=1e-3)
    # --append adds temperatures and replaces the rows it measures again
    assert _tool("selection_validation").main(["hand_mhentropy", "--items", "6", "--samples", "4", "--temperatures",
                                               "1.0", "1.2", "--out", str(out), "--append"]) == 0
    again = pd.read_csv(out)
    assert again["temperature"].tolist() == [0.8, 0.8, 1.0, 1.0, 1.2, 1.2]
    assert again.iloc[:4].equals(frame)  # the same sampling, seeded: the same numbers


def test_flip_calibration_scores_the_validation_split_and_stores_the_choice(tmp_path):
    import shutil

    import torch

    from mhe.lab.checkpoint import resolve_checkpoint_path
    from mhe.lab.diagnostics_runs import flip_temperature_choice
    from mhe.lab.experiments import load_model

    ckpt = tmp_path / "rot.pt"
    shutil.copy(resolve_checkpoint_path("hand_mhentropy_rot"), ckpt)
    out = tmp_path / "flip.csv"
    assert _tool("flip_calibration").main([str(ckpt), "--items", "6", "--samples", "4", "--temperatures", "1", "3",
                                           "--out", str(out), "--write"]) == 0
    frame = pd.read_csv(out)
    assert frame["flip_temperature"].tolist() == [1.0, 3.0] and (frame["n_items"] == 6).all()
    assert (frame["model"] == str(ckpt)).all() and {"mpjpe_bh", "flip_gap", "gt_log_lik"} <= set(frame.columns)
    chosen = flip_temperature_choice(str(ckpt), out)
    assert chosen == frame.loc[frame["gt_log_lik"].idxmax(), "flip_temperature"]
    model, cfg = load_model(ckpt, device="cpu")
    assert cfg.model.flip_temperature == chosen == model.flip_temperature
    shipped, _ = load_model("hand_mhentropy_rot", device="cpu")
    for a, b in zip(model.state_dict().values(), shipped.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the weights are untouched
    # --no-metrics: the log-likelihood only; --append replaces the model's rows
    assert _tool("flip_calibration").main([str(ckpt), "--items", "6", "--temperatures", "2", "--no-metrics",
                                           "--out", str(out), "--append"]) == 0
    again = pd.read_csv(out)
    assert again["flip_temperature"].tolist() == [2.0] and again["mpjpe_bh"].isna().all()
