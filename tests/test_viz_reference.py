"""The reference-posterior figure of notebook 07 (:mod:`mhe.viz.reference`) and the toy's calibration data behind
its first row (:mod:`mhe.toy.calibration`): the exact posterior is calibrated on truths of its own process and a
narrowed one is not, the tables round-trip, the figure has its panels and labels, the takeaways follow the
numbers, and a missing reference file fails with the tool that makes it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # tests only: the package itself never chooses a backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from mhe.diagnostics import calibration_curve  # noqa: E402
from mhe.toy import (  # noqa: E402
    CALIBRATION_LEVELS,
    ExactArmPosterior,
    TwoLinkArm,
    arm_calibration,
    arm_truths,
    write_arm_calibration,
    write_arm_hypotheses,
)
from mhe.viz import OBJECTIVE_COLORS  # noqa: E402
from mhe.viz.reference import (  # noqa: E402
    REFERENCE_COLOR,
    arm_row,
    calibration_curves,
    calibration_score,
    load_reference,
    occluded_mask,
    plot_reference_posterior,
    pose_row,
    reference_takeaways,
)

LEVELS = torch.tensor(CALIBRATION_LEVELS, dtype=torch.float64)


@pytest.fixture(scope="module")
def exact():
    return ExactArmPosterior()


class Shrunk:
    """The exact posterior's draws pulled halfway to their mean: too narrow by construction."""

    def __init__(self, exact: ExactArmPosterior) -> None:
        self.exact = exact

    def sample(self, heights, num_samples):
        s = self.exact.sample(heights, num_samples)
        mean = s.mean(1, keepdim=True)
        return mean + 0.5 * (s - mean)


def test_the_exact_posterior_is_calibrated_on_truths_of_its_own_process_and_a_narrowed_one_is_not(exact):
    """500 truths, 100 draws each: the sampling noise of a level is at most 0.5 / sqrt(500) ≈ 0.022 (less with the
    elbow and tip counted both), and a finite S shifts the curve by about 1/S, so 0.1 is over 4 noise widths."""
    angles, heights = arm_truths(500, exact, seed=0)
    curves = arm_calibration({"exact": exact, "shrunk": Shrunk(exact)}, angles, heights, num_samples=100)
    assert (curves["exact"] - LEVELS).abs().max() < 0.1, curves["exact"]
    assert calibration_score(curves["exact"]) < 0.05
    assert calibration_score(curves["shrunk"]) > 0.2 and (curves["shrunk"] < LEVELS).all(), curves["shrunk"]


def test_arm_truths_come_from_the_prior_with_laplace_noise_of_scale_b(exact):
    angles, heights = arm_truths(20000, exact, seed=1)
    noise = heights - TwoLinkArm().heights(angles)
    # Laplace(0, b): E|x| = b, median 0; the relative error of the mean over 40000 values is about 0.5 %
    assert float(noise.abs().mean()) == pytest.approx(exact.b, rel=0.03)
    assert abs(float(noise.median())) < 0.05 * exact.b
    # the prior: flat over the box (each half of it holds half the poses), a little mass just outside
    half = torch.tensor(TwoLinkArm.HALF_WIDTH)
    inside = (angles.abs() <= half).all(-1)
    assert 0.85 < float(inside.float().mean()) < 0.99
    assert abs(float((angles[inside, 0] > 0).float().mean()) - 0.5) < 0.02
    with pytest.raises(ValueError, match="positive number"):
        arm_truths(0, exact)


def test_arm_calibration_matches_the_curve_of_its_own_draws_and_checks_shapes(exact):
    angles, heights = arm_truths(8, exact, seed=2)
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    curves = arm_calibration({"exact": exact}, angles, heights, num_samples=20, seed=3)
    assert torch.equal(torch.rand(1), before)  # the global random state is restored
    import zlib

    torch.manual_seed(3 + zlib.crc32(b"exact"))
    arm = TwoLinkArm()
    expected = calibration_curve(arm.keypoints(exact.sample(heights, 20)), arm.keypoints(angles),
                                 alphas=CALIBRATION_LEVELS)
    assert torch.equal(curves["exact"], expected)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        arm_calibration({"exact": exact}, angles[:, :1], heights)


def _arm_tables(tmp_path, exact):
    curves = {"exact posterior": LEVELS.clone(), "mhentropy": LEVELS * 0.9, "nll": LEVELS * 0.5}
    pose = torch.tensor([0.55, 1.6])
    heights = TwoLinkArm().heights(pose)[None]
    torch.manual_seed(0)
    samples = {name: exact.sample(heights, 30)[0] for name in curves}
    write_arm_calibration(curves, path=tmp_path / "cal.csv")
    write_arm_hypotheses(samples, pose, path=tmp_path / "hyp.csv")
    return pd.read_csv(tmp_path / "hyp.csv"), pd.read_csv(tmp_path / "cal.csv"), samples, pose


def test_the_arm_tables_round_trip_into_the_toy_row(tmp_path, exact):
    hyp, cal, samples, pose = _arm_tables(tmp_path, exact)
    assert list(cal.columns) == ["source", "alpha", "inside"] and len(cal) == 3 * len(CALIBRATION_LEVELS)
    assert (hyp["source"] == "truth").sum() == 1 and (hyp["source"] == "nll").sum() == 30
    row = arm_row(hyp, cal)
    arm = TwoLinkArm()
    np.testing.assert_allclose(row.points["nll"], arm.keypoints(samples["nll"]).numpy(), atol=1e-4)
    np.testing.assert_allclose(row.truth[1:], arm.keypoints(pose).numpy(), atol=1e-4)
    np.testing.assert_allclose(row.curves["nll"], 0.5 * LEVELS.numpy(), atol=1e-4)
    assert [h for h, _, _ in row.hlines] == pytest.approx(arm.heights(pose).tolist(), abs=1e-4)
    with pytest.raises(ValueError, match="lack the sources"):
        arm_row(hyp[hyp["source"] != "truth"], cal)
    with pytest.raises(ValueError, match="columns"):
        arm_row(hyp.drop(columns="tip_x"), cal)
    with pytest.raises(ValueError, match="truth"):
        write_arm_hypotheses({"truth": samples["nll"]}, pose, path=tmp_path / "x.csv")


def _pose_row():
    gen = torch.Generator().manual_seed(0)
    truth = torch.randn(6, 3, generator=gen) * 100
    truth[0] = 0
    visible = torch.tensor([True, True, False, True, False, False])
    draws = {"reference": truth + 30 * torch.randn(100, 6, 3, generator=gen),
             "mhentropy": truth + 10 * torch.randn(200, 6, 3, generator=gen),
             "nll": truth + 5 * torch.randn(200, 6, 3, generator=gen)}
    curves = calibration_curves({k: v[None] for k, v in draws.items()}, truth[None], occluded_mask(visible[None]))
    return pose_row("body, test item 3", {k: v.numpy() for k, v in draws.items()}, truth.numpy(), visible.numpy(),
                    (-1, 0, 1, 0, 3, 4), curves, "calibration: occluded joints, 1 item")


def test_the_figure_has_a_row_per_body_with_its_sources_shared_limits_and_scored_curves(tmp_path, exact):
    hyp, cal, _, _ = _arm_tables(tmp_path, exact)
    rows = [arm_row(hyp, cal), _pose_row()]
    assert rows[1].points["mhentropy"].shape == (200, 3, 2)  # the 3 occluded non-root joints, side view
    fig = plot_reference_posterior(rows)
    axes = np.array(fig.axes).reshape(2, 4)
    titles = [[ax.get_title() for ax in row] for row in axes]
    assert titles[0][:3] == ["exact posterior: 30 draws", "MHEntropy: 30 draws", "NLL (ProHMR-style): 30 draws"]
    names = ("reference posterior (HMC)", "MHEntropy", "NLL (ProHMR-style)")
    assert titles[1][:3] == [f"{n}: 100 draws" for n in names]
    assert titles[1][3] == "calibration: occluded joints, 1 item"
    assert "body, test item 3" in axes[1, 0].get_ylabel() and "depth z" in axes[1, 0].get_xlabel()
    for r in range(2):
        assert len({ax.get_xlim() for ax in axes[r, :3]}) == 1 and len({ax.get_ylim() for ax in axes[r, :3]}) == 1
        colours = [matplotlib.colors.to_hex(ax.collections[0].get_facecolor()[0]) for ax in axes[r, :3]]
        assert colours == [REFERENCE_COLOR, OBJECTIVE_COLORS["mhentropy"], OBJECTIVE_COLORS["nll"]]
        legend = [t.get_text() for t in axes[r, 3].get_legend().get_texts()]
        assert legend[0] == "calibrated (ideal)" and all("score" in t for t in legend[1:]) and len(legend) == 4
    assert axes[1, 0].yaxis_inverted() and not axes[0, 0].yaxis_inverted()  # bodies: y down, as in the image
    toy_legend = [t.get_text() for t in axes[0, 3].get_legend().get_texts()]
    assert toy_legend[1] == "exact posterior: score 0.00" and toy_legend[3] == f"NLL (ProHMR-style): score {0.25:.2f}"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "observed elbow height" in labels and any("occluded" in t for t in labels)
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one row"):
        plot_reference_posterior([])


def test_a_row_needs_an_occluded_joint():
    with pytest.raises(ValueError, match="no occluded joint"):
        pose_row("hand", {"reference": np.zeros((4, 3, 3))}, np.zeros((3, 3)), np.array([False, True, True]),
                 (-1, 0, 1), {}, "calibration")


def test_a_missing_reference_file_names_the_file_and_the_tool_that_draws_it(tmp_path):
    path = tmp_path / "hand_mhentropy_ref1.npz"
    with pytest.raises(FileNotFoundError) as info:
        load_reference(path)
    message = str(info.value)
    assert str(path) in message and "tools/reference_posterior.py" in message and "--models hand_mhentropy" in message
    np.savez(path, joints_mm=np.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match="truth_mm"):
        load_reference(path)
    np.savez(path, joints_mm=np.zeros((1, 2, 3, 3)), truth_mm=np.zeros((1, 3, 3)), visible=np.ones((1, 3), bool),
             split=np.array(["test"]), index=np.array([0]))
    assert load_reference(path)["joints_mm"].shape == (1, 2, 3, 3)


def _table(flow: float, ref1: float, ref2: float, inside1: float = 0.5) -> pd.DataFrame:
    rows = [("body_mhentropy", "test", source, 30, score, inside, "not converged")
            for source, score, inside in (("flow, T = 1", flow, 0.2), ("reference 1", ref1, inside1),
                                          ("reference 2", ref2, 0.7))]
    return pd.DataFrame(rows, columns=["model", "split", "source", "items", "score_occluded", "inside_90_occluded",
                                       "status"])


def test_the_takeaways_are_worded_from_the_numbers():
    text = reference_takeaways(_table(0.41, 0.24, 0.12))
    assert text.startswith("- **bodies** (30 test items; not converged)")
    assert "score 0.41" in text and "(reference 1) 0.24 (50%)" in text and "(reference 2) 0.12 (70%)" in text
    assert "narrower than its own target" in text and "over-confident" in text and "brings it closer" in text
    calibrated_target = reference_takeaways(_table(0.40, 0.05, 0.05, inside1=0.88))
    assert "narrower than its own target" in calibrated_target and "over-confident" not in calibrated_target
    assert "as close to the truth as its own target" in reference_takeaways(_table(0.30, 0.29, 0.30))
    with pytest.raises(ValueError, match="no val rows"):
        reference_takeaways(_table(0.4, 0.2, 0.1), split="val")
    with pytest.raises(ValueError, match="--calibration"):
        reference_takeaways(_table(0.4, 0.2, 0.1).drop(columns="items"))
