"""Posterior diagnostics (mhe.diagnostics) against closed forms: the ESS of Gaussian importance weights,
calibration of samples drawn from the truth's own distribution, and a too-narrow q."""

from __future__ import annotations

import math
import warnings

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from mhe import diagnostics as dg
from mhe.lab import diagnostics_runs as runs

warnings.filterwarnings("ignore", category=UserWarning)


def test_ess_of_exact_and_degenerate_weights():
    log_q = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(dg.importance_ess(log_q + 7.0, log_q), torch.ones(3, dtype=torch.float64))
    one = torch.full((2, 50), -1e4)
    one[:, 0] = 0.0  # one sample carries all the weight
    assert torch.allclose(dg.importance_ess(one, torch.zeros(2, 50)), torch.full((2,), 1 / 50, dtype=torch.float64))
    with pytest.raises(ValueError, match="both be"):
        dg.importance_ess(torch.zeros(2, 3), torch.zeros(2, 4))


def test_ess_of_a_shifted_gaussian_matches_the_closed_form():
    # q = N(0, 1), p = N(mu, 1): E_q[w^2] / E_q[w]^2 = exp(mu^2), so ESS / S -> exp(-mu^2)
    g = torch.Generator().manual_seed(1)
    mu = torch.tensor([0.0, 0.3, 0.6])[:, None]
    x = torch.randn(3, 40000, generator=g, dtype=torch.float64)
    log_q = -0.5 * x**2
    log_p = -0.5 * (x - mu) ** 2 + 3.0  # any constant
    ess = dg.importance_ess(log_p, log_q)
    torch.testing.assert_close(ess, torch.exp(-mu[:, 0].double() ** 2), atol=0.03, rtol=0)


def test_calibration_of_samples_from_the_truths_distribution_is_the_diagonal():
    g = torch.Generator().manual_seed(2)
    hyp = torch.randn(500, 200, 3, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5])
    truth = torch.randn(500, 3, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5])
    curve = dg.calibration_curve(hyp, truth)
    alphas = torch.tensor(dg.DEFAULT_ALPHAS, dtype=torch.float64)
    assert (curve - alphas).abs().max() < 0.05
    assert dg.calibration_gap(curve) < 0.03
    # a q half as wide as the truth's spread puts too few truths inside every region
    narrow = dg.calibration_curve(0.5 * hyp, truth)
    assert (narrow < alphas).all() and (narrow[1:] < alphas[1:] - 0.05).all() and dg.calibration_gap(narrow) > 0.2
    # and a mask keeps only the pairs asked for
    mask = torch.zeros(500, 3, dtype=torch.bool)
    mask[:, 1] = True
    torch.testing.assert_close(dg.calibration_curve(hyp, truth, mask),
                               dg.calibration_curve(hyp[:, :, 1:2], truth[:, 1:2]))


def test_calibration_by_hand():
    # one item, one joint in 1D: hypotheses at -2, -1, 1, 2 (mean 0); radii 1, 1, 2, 2 after sorting
    hyp = torch.tensor([-2.0, -1.0, 1.0, 2.0]).reshape(1, 4, 1, 1)
    curve = dg.calibration_curve(hyp, torch.tensor([[[1.5]]]), alphas=[0.25, 0.5, 0.75, 0.99])
    assert curve.tolist() == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="alphas"):
        dg.calibration_curve(hyp, torch.tensor([[[1.5]]]), alphas=[0.0, 0.5])
    with pytest.raises(ValueError, match="centre"):
        dg.calibration_curve(hyp, torch.tensor([[[1.5]]]), centre="mode")  # type: ignore[arg-type]


def test_calibration_centres_on_the_median_by_hand():
    # hypotheses 0, 0, 1, 10: median 0.5 (the mean of the middle two), mean 2.75
    hyp = torch.tensor([0.0, 0.0, 1.0, 10.0]).reshape(1, 4, 1, 1)
    truth = torch.tensor([[[0.9]]])
    # median: distances 0.5, 0.5, 0.5, 9.5; the truth's 0.4 is inside the smallest ball already
    assert dg.calibration_curve(hyp, truth, alphas=[0.25, 0.5, 0.75]).tolist() == [1.0, 1.0, 1.0]
    # mean: distances 1.75, 2.75, 2.75, 7.25; the truth's 1.85 is outside the ball holding one hypothesis
    assert dg.calibration_curve(hyp, truth, alphas=[0.25, 0.5, 0.75], centre="mean").tolist() == [0.0, 1.0, 1.0]
    # an odd number: the middle one (3), whatever the outlier; in 2D the median is taken per coordinate
    odd = torch.tensor([[0.0, 5.0], [3.0, -1.0], [100.0, 0.0]]).reshape(1, 3, 1, 2)
    # centre (3, 0): distances 5.83, 1, 97 → radii 1, 5.83, 97; the truth (3.5, 0) is 0.5 away
    curve = dg.calibration_curve(odd, torch.tensor([[[3.5, 0.0]]]), alphas=[0.3, 0.5, 0.9])
    assert curve.tolist() == [1.0, 1.0, 1.0]
    curve = dg.calibration_curve(odd, torch.tensor([[[9.0, 0.0]]]), alphas=[0.3, 0.5, 0.9])
    assert curve.tolist() == [0.0, 0.0, 1.0]  # 6 away: outside the radii 1 and 5.83, inside 97


def test_model_diagnostics_run_on_a_hand_model(tmp_path):
    from mhe.config import ModelConfig
    from mhe.data import SyntheticHands
    from mhe.models.hand import MultiHypothesisHand

    ds = SyntheticHands("val", size=4, seed=1, cache_dir=tmp_path)
    batch = default_collate([ds[i] for i in range(4)])
    torch.manual_seed(0)
    model = MultiHypothesisHand(ModelConfig(context_dim=32, encoder_hidden=(32,), flow_transforms=2,
                                            flow_hidden=(32,), head_hidden=32)).eval()
    ess = dg.hypotheses_ess(model, batch, num_samples=16)
    assert ess.shape == (4,) and ((ess >= 1 / 16 - 1e-9) & (ess <= 1 + 1e-9)).all()
    ll = dg.ground_truth_log_likelihood(model, batch)
    with torch.no_grad():
        expected = model.log_prob(batch, batch["params"]) / 45
    torch.testing.assert_close(ll, expected)
    assert math.isfinite(float(ll.mean()))


def test_occluded_hands_by_hand():
    from mhe.data.statistics import occluded_hands

    visible = torch.ones(5, 21, dtype=torch.bool)
    visible[1, [1, 2, 3, 17]] = False  # the whole index finger: occluded
    visible[2, [1, 2, 3]] = False  # the index finger but its tip: not occluded
    visible[3, [5, 6, 18]] = False  # the middle finger (its MCP is the root and does not count): occluded
    visible[4, [13, 14, 15, 16, 7, 8, 9, 20]] = False  # thumb and pinky: two whole fingers
    visible[4, 4] = False
    assert occluded_hands(visible).tolist() == [False, True, False, True, True]
    assert occluded_hands(visible, min_fingers=2).tolist() == [False, False, False, False, True]
    assert not occluded_hands(torch.zeros(0, 21, dtype=torch.bool)).any()
    with pytest.raises(ValueError, match="visible"):
        occluded_hands(torch.ones(2, 17, dtype=torch.bool))


class _KnownHypotheses(torch.nn.Module):
    """A model whose hypotheses are the truth plus fixed offsets: hypothesis 0 exact, then ± pairs (their mean
    is the truth), scaled by (item + 1); the mode is hypothesis 1. It fits the visible keypoints exactly and
    q is flat, so the importance weights are all equal."""

    deterministic = False
    flow_dim = 3

    def __init__(self, num_joints):
        super().__init__()
        self.spec = type("Spec", (), {"root": 0})()
        g = torch.Generator().manual_seed(5)
        self.pairs = torch.randn(100, num_joints, 3, generator=g, dtype=torch.float64) * 10

    def offsets(self, n, S):
        half = self.pairs[: (S - 1) // 2]
        base = torch.cat([torch.zeros_like(half[:1]), torch.stack([half, -half], 1).reshape(-1, *half.shape[1:])])
        return (torch.arange(1, n + 1, dtype=torch.float64)[:, None, None, None] * base[None]).float()

    def predict(self, batch, S, T):
        gt = batch["joints_3d_mm"]
        xyz = gt[:, None] + self.offsets(len(gt), S)
        return {"xyz_mm": xyz, "uv_px": xyz[..., :2], "mode_xyz_mm": xyz[:, 1:2]}

    def hypotheses(self, batch, S, T):
        B = len(batch["obs"])
        return type("H", (), {"pred_obs": batch["obs"][:, None].expand(B, S, *batch["obs"].shape[1:]),
                              "log_prior": torch.zeros(B, S), "log_q": torch.zeros(B, S)})()

    def log_prob(self, batch, params):
        return torch.full((len(params),), -6.0)


def test_diagnose_model_on_hypotheses_with_known_errors():
    B, J, S = 6, 5, 21
    g = torch.Generator().manual_seed(0)
    gt = torch.randn(B, J, 3, generator=g) * 50
    gt[:, 0] = 0
    visible = torch.ones(B, J, dtype=torch.bool)
    visible[:, 3:] = False
    batch = {"joints_3d_mm": gt, "keypoints_2d_px": gt[..., :2], "visible": visible, "obs": gt[..., :2] / 100,
             "params": torch.zeros(B, 3)}
    loader = [batch]
    model = _KnownHypotheses(J)
    def pick(vis):
        return torch.arange(len(vis)) >= 4  # items 4 and 5

    rows = dg.diagnose_model(model, loader, subset=pick, subset_name="picked", num_samples=S, calibration_samples=S,
                             depth_joints=(2, 3), noise_mm=0.0)
    assert [r["subset"] for r in rows] == ["all", "picked"] and [r["n_items"] for r in rows] == [6, 2]
    # the errors by hand: item i's offsets are (i + 1) x the base offsets
    base = model.offsets(1, S)[0].double()  # (S, J, 3)
    per_hyp = torch.linalg.vector_norm(base, dim=-1).mean(-1)  # (S,) MPJPE of item 0's hypotheses
    for row, scale in ((rows[0], 3.5), (rows[1], 5.5)):  # mean of (i + 1) over the items
        assert row["ess"] == pytest.approx(1.0)  # equal weights
        assert row["gt_loglik_per_dim"] == pytest.approx(-2.0)  # -6 nats over 3 dimensions
        # the truth is the hypotheses' mean: inside every central region
        levels = dg.CALIBRATION_LEVELS
        assert row["calibration_gap_occ"] == pytest.approx(1 - sum(levels) / len(levels))
        assert row["calib_occ_0.05"] == pytest.approx(1.0)
        assert row["oracle"] == pytest.approx(0.0, abs=1e-4)
        assert row["selected_side_view"] == pytest.approx(0.0, abs=1e-4)  # the exact hypothesis matches the view
        assert row["selected_side_view_noisy"] == pytest.approx(0.0, abs=1e-4)  # noise 0
        assert row["selected_depths"] == pytest.approx(0.0, abs=1e-4)
        assert row["mode"] == pytest.approx(scale * float(per_hyp[1]), rel=1e-4)
        assert row["mean"] == pytest.approx(scale * float(per_hyp.mean()), rel=1e-4)
    noisy = dg.diagnose_model(model, loader, subset=pick, num_samples=S, calibration_samples=S, noise_mm=200.0)
    assert noisy[0]["selected_side_view_noisy"] > 0 and math.isnan(noisy[0]["selected_depths"])


def test_selection_sweep_gives_diagnose_models_selection_at_each_temperature():
    B, J, S = 6, 5, 21
    gt = torch.randn(B, J, 3, generator=torch.Generator().manual_seed(1)) * 50
    visible = torch.ones(B, J, dtype=torch.bool)
    visible[:, 3:] = False
    batch = {"joints_3d_mm": gt, "keypoints_2d_px": gt[..., :2], "visible": visible, "obs": gt[..., :2] / 100,
             "params": torch.zeros(B, 3), "ambiguous": torch.tensor([True, False] * 3)}
    model = _KnownHypotheses(J)
    def everything(vis):
        return torch.ones(len(vis), dtype=torch.bool)

    rows = dg.selection_sweep(model, [batch], (0.5, 1.0), {"all": everything, "flagged": None}, num_samples=S,
                              depth_joints=(2, 3), noise_mm=30.0)
    assert [(r["temperature"], r["subset"], r["n_items"]) for r in rows] == [
        (0.5, "all", 6), (0.5, "flagged", 3), (1.0, "all", 6), (1.0, "flagged", 3)]
    # the same numbers as diagnose_model's selection columns on the same items and scores
    full = dg.diagnose_model(model, [batch], subset=None, subset_name="flagged", num_samples=S, calibration_samples=S,
                             depth_joints=(2, 3), noise_mm=30.0)
    for got, want in ((rows[2], full[0]), (rows[3], full[1])):
        for key in dg.SELECTION_MEASURES:
            assert got[key] == pytest.approx(want[key], rel=1e-6), key
    assert rows[0]["mode"] == pytest.approx(rows[2]["mode"])  # these hypotheses do not depend on T
    # the flagged items are 0, 2, 4: their mean scale (i + 1) is 3; the mode is hypothesis 1
    per_hyp = torch.linalg.vector_norm(model.offsets(1, S)[0].double(), dim=-1).mean(-1)
    assert rows[1]["mode"] == pytest.approx(3.0 * float(per_hyp[1]), rel=1e-4)
    assert rows[1]["selected_side_view"] == pytest.approx(0.0, abs=1e-4)


def test_diagnose_model_runs_on_a_hand_model_and_a_deterministic_one(tmp_path):
    from mhe.config import ModelConfig
    from mhe.data import SyntheticHands
    from mhe.data.statistics import occluded_hands
    from mhe.models.hand import MultiHypothesisHand

    ds = SyntheticHands("val", size=6, seed=1, occlusion=0.4, cache_dir=tmp_path)
    loader = [default_collate([ds[i] for i in range(6)])]
    torch.manual_seed(0)
    cfg = dict(context_dim=32, encoder_hidden=(32,), flow_transforms=2, flow_hidden=(32,), head_hidden=32)
    model = MultiHypothesisHand(ModelConfig(**cfg)).eval()
    rows = dg.diagnose_model(model, loader, subset=occluded_hands, subset_name="occluded", num_samples=8,
                             calibration_samples=8, depth_joints=(16, 17))
    assert rows[1]["n_items"] == int(occluded_hands(loader[0]["visible"]).sum())
    r = rows[0]
    assert 1 / 8 - 1e-9 <= r["ess"] <= 1 + 1e-9 and 0 <= r["calibration_gap_occ"] <= 1
    assert r["oracle"] <= min(r["selected_side_view"], r["selected_depths"], r["mean"]) + 1e-6
    # the same seed, the same numbers
    assert dg.diagnose_model(model, loader, subset=occluded_hands, num_samples=8, calibration_samples=8,
                             depth_joints=(16, 17))[0] == {**r, "subset": "all"}
    det = MultiHypothesisHand(ModelConfig(**cfg, deterministic=True)).eval()
    d = dg.diagnose_model(det, loader, subset=occluded_hands, num_samples=8, depth_joints=(16,))[0]
    assert math.isnan(d["ess"]) and d["mode"] == pytest.approx(d["oracle"]) == pytest.approx(d["selected_side_view"])


def test_calibration_and_selection_figures_from_a_diagnostics_table():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from mhe.viz.diagnostics import SELECTION_COLUMNS, calibration_points, plot_calibration, plot_selection

    rows = []
    for model, curve in (("mhentropy", [0.05, 0.1, 0.2]), ("nll", [0.1, 0.3, 0.4]), ("deterministic", [math.nan] * 3)):
        for subset in ("all", "occluded"):
            rows.append({"model": model, "subset": subset, "calib_occ_0.5": curve[1], "calib_occ_0.1": curve[0],
                         "calib_occ_0.9": curve[2], **{c: 10.0 + k for k, c in enumerate(SELECTION_COLUMNS)}})
    frame = pd.DataFrame(rows)
    a, v = calibration_points(frame, "nll")
    assert a.tolist() == [0.1, 0.5, 0.9] and v.tolist() == [0.1, 0.3, 0.4]  # sorted by α, whatever the column order
    assert calibration_points(frame, "deterministic")[0].size == 0
    with pytest.raises(KeyError):
        calibration_points(frame, "nll", "ambiguous")
    fig = plot_calibration({"hands": frame, "bodies": frame})
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 3  # the diagonal and two models with a curve
    fig = plot_selection({"hands": frame}, subset=None)
    bars = [p for p in fig.axes[0].patches]
    assert len(bars) == 3 * (len(SELECTION_COLUMNS) - 1)  # every model, every column but the mode
    # the columns are 10, 11, ... mm with the mode first: each bar is its change against the mode, in %
    expected = [100 * (10.0 + k) / 10.0 - 100 for k in range(1, len(SELECTION_COLUMNS))]
    assert sorted({round(b.get_height(), 9) for b in bars}) == pytest.approx(expected)


def test_selection_temperatures_pick_the_lowest_selected_error_on_the_ambiguous_subset(tmp_path):
    path = tmp_path / "sel.csv"
    pd.DataFrame({"model": ["hand_mhentropy"] * 4 + ["hand_nll"] * 2,
                  "subset": ["occluded", "occluded", "all", "occluded", "occluded", "occluded"],
                  "temperature": [0.8, 1.0, 1.5, 1.5, 0.8, 1.2],
                  "selected_side_view": [20.0, 18.0, 1.0, 19.0, 30.0, 31.0]}).to_csv(path, index=False)
    # the "all" row at T = 1.5 is not the subset the choice is made on
    assert runs.selection_temperatures("hand", path) == {"mhentropy": 1.0, "nll": 0.8}
    assert runs.selection_temperatures("body") == {}  # no body table: the official temperature applies


def test_the_lab_tables_name_an_unknown_body_kind_and_the_known_ones():
    for call in (lambda: runs.test_split("hands", 2, cached=False), lambda: runs.diagnostics_table("arm", {})):
        with pytest.raises(ValueError, match=r"body must be one of \('hand', 'body'\)"):
            call()


def test_selection_temperature_figure_draws_each_models_changes_and_rings_its_choice():
    import matplotlib

    matplotlib.use("Agg")
    from mhe.viz.diagnostics import plot_selection_temperature

    rows = []
    for model, selected in (("hand_mhentropy", (16.0, 15.0, 15.5)), ("hand_nll", (18.0, 19.0, 20.0))):
        for t, sel in zip((0.8, 1.2, 2.0), selected, strict=True):
            for subset in ("all", "occluded"):
                rows.append({"model": model, "subset": subset, "temperature": t, "mode": 20.0, "oracle": sel - 1.0,
                             "selected_side_view": sel})
    fig = plot_selection_temperature(pd.DataFrame(rows), "occluded", {"mhentropy": 1.2, "nll": 0.8})
    lines = fig.axes[0].lines
    solid = [ln for ln in lines if ln.get_linestyle() == "-" and len(ln.get_xdata()) == 3]
    assert len(solid) == 2
    # the change against the mode, in %: MHEntropy's 16 / 15 / 15.5 mm against 20 mm
    assert list(solid[0].get_ydata()) == pytest.approx([-20.0, -25.0, -22.5])
    rings = [ln for ln in lines if len(ln.get_xdata()) == 1]
    assert [(float(r.get_xdata()[0]), float(r.get_ydata()[0])) for r in rings] == \
        [(1.2, -25.0), pytest.approx((0.8, -10.0))]


def test_flip_calibration_sweep_scores_each_temperature_and_puts_the_model_back(tmp_path):
    from mhe.config import ModelConfig
    from mhe.data import SyntheticHands
    from mhe.evaluation import evaluate_model
    from mhe.models.hand import MultiHypothesisHand

    ds = SyntheticHands("val", size=6, seed=1, occlusion=0.4, cache_dir=tmp_path)
    loader = [default_collate([ds[i] for i in range(6)])]
    torch.manual_seed(0)
    cfg = dict(context_dim=32, encoder_hidden=(32,), flow_transforms=2, flow_hidden=(32,), head_hidden=32)
    model = MultiHypothesisHand(ModelConfig(**cfg, rotation_in_flow=True, flip_mixture=True,
                                            flip_temperature=2.0))
    with torch.no_grad():
        model.flip_head.weight.normal_(0, 1.0)  # confident, item-dependent weights
        model.flip_head.bias.fill_(2.0)
    model.train()
    rows = dg.flip_calibration_sweep(model, loader, [1.0, 4.0], num_samples=6, seed=3)
    assert model.flip_temperature == 2.0 and model.training  # put back as it was
    assert [r["flip_temperature"] for r in rows] == [1.0, 4.0] and rows[0]["n_items"] == 6
    model.eval()
    with torch.no_grad():
        ctx = model.context(loader[0])
        logit = model.flip_head(ctx)[:, 0]
        for r, tau in zip(rows, (1.0, 4.0), strict=True):
            # the weight and the log-likelihood are the calibrated mixture's, computed here from the flow
            p1 = torch.sigmoid(logit / tau)
            assert r["flipped_weight"] == pytest.approx(float(p1.mean()), rel=1e-5)
            assert r["both_tilts"] == float((torch.minimum(p1, 1 - p1) >= 0.01).double().mean())
            theta = model.flow_target(loader[0], loader[0]["params"])
            c0, c1 = model.flow.branch_contexts(ctx)
            direct = torch.logaddexp(F.logsigmoid(-logit / tau) + model.flow.base.log_prob(theta, c0),
                                     F.logsigmoid(logit / tau) + model.flow.base.log_prob(model.flow.flip(theta), c1))
            assert r["gt_log_lik"] == pytest.approx(float(direct.mean() / model.flow_dim), rel=1e-5)
    # the metrics are evaluate_model's at that temperature
    model.flip_temperature = 4.0
    scores = evaluate_model(model, loader, num_samples=6, temperature=0.8, seed=3)
    assert rows[1]["mpjpe_bh"] == scores["mpjpe_bh"] and rows[1]["flip_gap"] == scores["flip_gap"]
    assert "mpjpe_bh" not in dg.flip_calibration_sweep(model, loader, [1.0], metrics=False)[0]
    with pytest.raises(ValueError, match="flip mixture"):
        dg.flip_calibration_sweep(MultiHypothesisHand(ModelConfig(**cfg)), loader, [1.0])
    with pytest.raises(ValueError, match="positive"):
        dg.flip_calibration_sweep(model, loader, [0.0])


def test_flip_temperature_choice_is_the_highest_log_likelihood(tmp_path):
    path = tmp_path / "flip.csv"
    pd.DataFrame({"model": ["a", "a", "a", "b", "b"], "flip_temperature": [1.0, 4.0, 8.0, 1.0, 2.0],
                  "gt_log_lik": [-2.0, -1.5, -1.7, -1.0, -1.1]}).to_csv(path, index=False)
    assert runs.flip_temperature_choice("a", path) == 4.0 and runs.flip_temperature_choice("b", path) == 1.0
    with pytest.raises(KeyError, match="no rows for 'c'"):
        runs.flip_temperature_choice("c", path)
    with pytest.raises(FileNotFoundError, match="flip_calibration.py"):
        runs.flip_temperature_choice("a", tmp_path / "missing.csv")


def test_the_shipped_flip_temperature_is_the_one_chosen_on_validation():
    from mhe.lab.experiments import load_model

    model, cfg = load_model("hand_mhentropy_rot", device="cpu")
    assert cfg.model.flip_temperature == runs.flip_temperature_choice("hand_mhentropy_rot") == model.flip_temperature
    from mhe.utils import REPO_ROOT

    table = pd.read_csv(REPO_ROOT / "figures" / runs.FLIP_CALIBRATION_CSV)
    grid = table[table["model"] == "hand_mhentropy_rot"]["flip_temperature"]
    assert grid.min() < cfg.model.flip_temperature < grid.max()  # the choice is inside the grid, not at its edge


def test_flip_calibration_figure_draws_the_criterion_and_rings_the_choice():
    from mhe.viz.diagnostics import plot_flip_calibration

    frame = pd.DataFrame({"model": ["m"] * 3 + ["other"], "flip_temperature": [4.0, 1.0, 2.0, 1.0],
                          "gt_log_lik": [-1.5, -2.0, -1.2, 0.0], "mpjpe_bh_flip": [22.0, 30.0, 25.0, 1.0],
                          "mpjpe_bh_noflip": [14.0, 14.5, 14.2, 1.0], "mpjpe_mean": [24.0, 22.0, 23.0, 1.0]})
    fig = plot_flip_calibration(frame, "m", chosen=2.0)
    ax_ll, ax_mm = fig.axes
    curve, ring = [ln for ln in ax_ll.get_lines() if len(ln.get_xdata()) != 2]
    assert list(curve.get_xdata()) == [1.0, 2.0, 4.0] and list(curve.get_ydata()) == [-2.0, -1.2, -1.5]  # sorted by τ
    assert (float(ring.get_xdata()[0]), float(ring.get_ydata()[0])) == (2.0, -1.2)
    series = {tuple(ln.get_ydata()) for ln in ax_mm.get_lines() if len(ln.get_xdata()) == 3}
    assert series == {(30.0, 25.0, 22.0), (14.5, 14.2, 14.0), (22.0, 23.0, 24.0)}  # only model m's rows
    with pytest.raises(ValueError, match="no rows for 'x'"):
        plot_flip_calibration(frame, "x")


def test_best_of_s_by_hand_and_against_the_closed_form():
    errors = torch.tensor([[4.0, 2.0, 3.0, 1.0], [1.0, 5.0, 2.0, 6.0]])
    # s = 1: the mean error; s = 2: groups (4, 2), (3, 1) -> 2, 1 and (1, 5), (2, 6) -> 1, 2; s = 4: the minimum
    torch.testing.assert_close(dg.best_of_s(errors, [1, 2, 4]), torch.tensor([3.0, 1.5, 1.0], dtype=torch.float64))
    # errors uniform on (0, 1): E[min of s] = 1 / (s + 1)
    u = torch.rand(200, 1000, generator=torch.Generator().manual_seed(0))
    sizes = [1, 4, 10, 100]
    torch.testing.assert_close(dg.best_of_s(u, sizes), torch.tensor([1 / (s + 1) for s in sizes], dtype=torch.float64),
                               atol=0.01, rtol=0.1)
    curve = dg.best_of_s(u, [1, 2, 5, 10, 50, 1000])
    assert (curve.diff() <= 0).all()  # never rises with s
    with pytest.raises(ValueError, match="lie in"):
        dg.best_of_s(u, [1001])


def test_best_of_s_table_and_its_figure_on_a_hand_model(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from mhe.config import ModelConfig
    from mhe.data import SyntheticHands
    from mhe.models.hand import MultiHypothesisHand
    from mhe.viz.diagnostics import plot_best_of_s

    ds = SyntheticHands("val", size=3, seed=1, occlusion=0.4, cache_dir=tmp_path)
    torch.manual_seed(0)
    cfg = dict(context_dim=32, encoder_hidden=(32,), flow_transforms=2, flow_hidden=(32,), head_hidden=32)
    models = {"mhentropy": MultiHypothesisHand(ModelConfig(**cfg)).eval(),
              "nll": MultiHypothesisHand(ModelConfig(**cfg)).eval()}
    frame = dg.best_of_s_table(models, ds, [1, 2, 8], batch_size=2)
    assert list(frame.columns) == ["model", "S", "mpjpe_bh", "mpjpe_mode"] and len(frame) == 6
    for _, group in frame.groupby("model"):
        assert (group["mpjpe_bh"].diff().dropna() <= 1e-9).all() and group["mpjpe_mode"].notna().all()
    pd.testing.assert_frame_equal(frame, dg.best_of_s_table(models, ds, [1, 2, 8], batch_size=2))  # seeded
    fig = plot_best_of_s(frame)
    assert len(fig.axes[0].lines) == 4  # a curve and a mode line per model


class _GaussianHypotheses(torch.nn.Module):
    """Hypotheses of every joint drawn from N(0, (T·σ)² I), as the truths are at T = 1 (root: joint 0)."""

    deterministic = False
    sigma = 10.0

    def __init__(self):
        super().__init__()
        self.spec = type("Spec", (), {"root": 0})()

    def predict(self, batch, S, T):
        gt = batch["joints_3d_mm"]
        xyz = torch.randn(len(gt), S, *gt.shape[1:]) * (T * self.sigma)
        return {"xyz_mm": xyz, "uv_px": xyz[..., :2]}


def test_calibration_sweep_scores_each_temperature_against_gaussians_of_known_spread():
    from torch.utils.data import DataLoader

    g = torch.Generator().manual_seed(11)
    n, J = 400, 5
    truth = torch.randn(n, J, 3, generator=g) * _GaussianHypotheses.sigma
    visible = torch.rand(n, J, generator=g) < 0.5
    items = [{"joints_3d_mm": truth[i], "keypoints_2d_px": truth[i, :, :2], "visible": visible[i]} for i in range(n)]
    model = _GaussianHypotheses()
    rows = dg.calibration_sweep(model, DataLoader(items, batch_size=100), (0.5, 1.0, 2.0), num_samples=200, seed=3)
    assert [r["temperature"] for r in rows] == [0.5, 1.0, 2.0] and all(r["n_items"] == n for r in rows)
    narrow, right, wide = rows
    # at T = 1 the truth is one more hypothesis: on the diagonal up to the noise of ~1000 joints
    assert right["score_occ"] < 0.04 and right["score_vis"] < 0.04
    assert abs(right["inside_90_occ"] - 0.9) < 0.04
    # half the spread: far below the diagonal; twice: above it at 0.9
    assert narrow["score_occ"] > 0.2 and narrow["inside_90_occ"] < 0.5 and wide["inside_90_occ"] > 0.97
    # the mean distance to the median of a 3D Gaussian is T·σ·2·sqrt(2/π) (the chi distribution's mean)
    for r in rows:
        expected = r["temperature"] * model.sigma * 2 * math.sqrt(2 / math.pi)
        assert r["spread_mm_occ"] == pytest.approx(expected, rel=0.03)
    # an average hypothesis: h - truth ~ N(0, (1 + T²) σ² I) per joint; the best of 200 is far closer
    for r in rows:
        expected = math.sqrt(1 + r["temperature"] ** 2) * model.sigma * 2 * math.sqrt(2 / math.pi)
        assert r["mpjpe_mean"] == pytest.approx(expected, rel=0.03)
        assert r["mpjpe_bh"] < 0.7 * r["mpjpe_mean"]
    with pytest.raises(ValueError, match="temperatures"):
        dg.calibration_sweep(model, DataLoader(items, batch_size=100), (0.0,))
