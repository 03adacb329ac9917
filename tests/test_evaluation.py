"""Streaming evaluation: hypotheses scored a chunk at a time give the numbers of scoring them all at once.

The reference is the unchunked path (``collect_predictions`` then ``score_predictions``, i.e. every
hypothesis in one tensor through ``mhe.metrics.evaluate``), itself checked against brute-force numpy in
tests/test_metrics.py. Chunk sizes include ones that do not divide S, 1, and more than S.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader

from mhe import flows, metrics
from mhe.config import ModelConfig
from mhe.data import SyntheticHands
from mhe.evaluation import (
    EVAL_SAMPLE_CHUNK,
    collect_predictions,
    evaluate_model,
    predict_chunks,
    score_predictions,
)
from mhe.models.hand import MultiHypothesisHand

SMALL = dict(context_dim=32, encoder_hidden=(32,), flow_transforms=2, flow_hidden=(32,), head_hidden=32)


def assert_same_figures(got: dict[str, float], want: dict[str, float], rel: float = 1e-5) -> None:
    """The same keys and values (relative 1e-5; NaN where the other is NaN)."""
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        if math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, rel=rel, abs=1e-9), key


def random_case(seed: int, B: int = 5, S: int = 10, J: int = 7):
    """Hypotheses and truth with every special case: an image without visible joints, one without occluded
    ones, joints without a 3D label (NaN truth and NaN predictions there), a mode, plausibility, px/mm."""
    g = torch.Generator().manual_seed(seed)
    gt_xyz = torch.randn(B, J, 3, generator=g, dtype=torch.float64) * 30
    pred_xyz = gt_xyz[:, None] + torch.randn(B, S, J, 3, generator=g, dtype=torch.float64) * 10
    gt_uv = torch.randn(B, J, 2, generator=g, dtype=torch.float64) * 50
    pred_uv = gt_uv[:, None] + torch.randn(B, S, J, 2, generator=g, dtype=torch.float64) * 3
    visible = torch.rand(B, J, generator=g) < 0.6
    visible[0] = False  # no visible joint: skipped in AH and the 2D diversity
    visible[1] = True  # no occluded joint: skipped in the 3D diversity
    valid = torch.rand(B, J, generator=g) < 0.8
    valid[2] = True
    valid[3, :5] = False  # fewer than 3 labelled joints: no PA-MPJPE, no flip judgement
    gt_xyz[~valid] = float("nan")
    pred_xyz[~valid[:, None].expand(B, S, J)] = float("nan")
    gt_uv[~visible] = float("nan")
    extra = dict(px_per_mm=torch.rand(B, generator=g, dtype=torch.float64) + 0.5,
                 mode_xyz=gt_xyz[:, None].nan_to_num() + 2.0,
                 plausible=torch.rand(B, S, generator=g) < 0.7)
    return (pred_xyz, gt_xyz, pred_uv, gt_uv, visible), valid, extra


@pytest.mark.parametrize("chunk", [1, 3, 4, 10, 64])
@pytest.mark.parametrize("masked", [False, True])
def test_hypothesis_stats_in_chunks_equal_all_at_once(chunk, masked):
    (pred_xyz, gt_xyz, pred_uv, gt_uv, visible), valid, extra = random_case(0)
    if not masked:  # every joint labelled: the unmasked path (synthetic data)
        valid = torch.ones_like(valid)
        pred_xyz, gt_xyz = pred_xyz.nan_to_num(), gt_xyz.nan_to_num()
    flip = [0, 1, 2, 3, 4]
    whole = metrics.evaluate_per_image(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root=0, valid_3d=valid,
                                       flip_keypoints=flip, **extra)
    stats = metrics.HypothesisStats(gt_xyz, gt_uv, visible, 0, valid_3d=valid, flip_keypoints=flip)
    for start in range(0, pred_xyz.shape[1], chunk):
        part = slice(start, start + chunk)
        stats.add(pred_xyz[:, part], pred_uv[:, part], extra["plausible"][:, part])
    assert stats.count == pred_xyz.shape[1]
    streamed = stats.per_image(px_per_mm=extra["px_per_mm"], mode_xyz=extra["mode_xyz"])
    assert sorted(streamed) == sorted(whole)
    for key in whole:
        torch.testing.assert_close(streamed[key], whole[key], rtol=1e-10, atol=1e-10, equal_nan=True, msg=key)
    # the special cases are really there: NaN where an image is skipped
    assert whole["ah"][0].isnan() and whole["pjd_3d_occ"][1].isnan()
    if masked:
        assert whole["pa_mpjpe_bh"][3].isnan() and whole["flipped"][3].isnan()


def test_chunked_diversity_keeps_its_precision_far_from_the_origin():
    # a one-pass sum of squares would lose every digit here; the pairwise merge keeps them
    g = torch.Generator().manual_seed(1)
    far = 1e7 + torch.randn(2, 12, 4, 3, generator=g, dtype=torch.float64)
    gt, uv, gt_uv = far[:, 0], far[..., :2], far[:, 0, :, :2]
    visible = torch.tensor([[True, True, False, False]] * 2)
    stats = metrics.HypothesisStats(gt, gt_uv, visible, 0)
    for part in far.split(5, dim=1):
        stats.add(part, part[..., :2])
    want = metrics.pjd(far)
    got = metrics.evaluate_per_image(far, gt, uv, gt_uv, visible, root=0)
    assert stats.per_image()["pjd_3d_occ"].tolist() == pytest.approx(got["pjd_3d_occ"].tolist(), rel=1e-9)
    assert got["pjd_3d_occ"].tolist() == pytest.approx(want[:, 2:].mean(-1).tolist(), rel=1e-9)


def test_hypothesis_stats_reject_what_they_cannot_merge():
    (pred_xyz, gt_xyz, pred_uv, gt_uv, visible), valid, extra = random_case(2)
    stats = metrics.HypothesisStats(gt_xyz, gt_uv, visible, 0, valid_3d=valid)
    with pytest.raises(ValueError, match="no hypotheses were added"):
        stats.per_image()
    stats.add(pred_xyz[:, :4], pred_uv[:, :4], extra["plausible"][:, :4])
    with pytest.raises(ValueError, match="plausible must be given with every chunk"):
        stats.add(pred_xyz[:, 4:], pred_uv[:, 4:])
    with pytest.raises(ValueError, match="pred_uv must have shape"):
        stats.add(pred_xyz[:, 4:], pred_uv[:, 5:], extra["plausible"][:, 4:])
    with pytest.raises(ValueError, match="pred_xyz contains NaN"):
        stats.add(pred_xyz[:, 4:] * float("nan"), pred_uv[:, 4:], extra["plausible"][:, 4:])


# -- the evaluation: a model, a loader ----------------------------------------------------------------


@pytest.fixture(scope="module")
def hands(tmp_path_factory):
    return SyntheticHands("test", size=7, seed=0, occlusion=0.4, cache_dir=tmp_path_factory.mktemp("cache"))


def small_hand(**options) -> MultiHypothesisHand:
    torch.manual_seed(0)
    model = MultiHypothesisHand(ModelConfig(**SMALL, **options)).eval()
    if options.get("flip_mixture"):
        with torch.no_grad():
            model.flip_head.weight.normal_(0, 1.0)  # item-dependent branch weights: both branches are drawn
    return model


@pytest.mark.parametrize("options", [{}, {"rotation_in_flow": True, "flip_mixture": True}, {"deterministic": True}],
                         ids=["flow", "flip_mixture", "deterministic"])
def test_evaluate_model_streams_the_numbers_of_the_whole(hands, options):
    model = small_hand(**options)
    loader = DataLoader(hands, batch_size=3)  # a last batch of 1; max_items cuts the second batch
    whole = score_predictions(collect_predictions(model, loader, num_samples=10, max_items=5),
                              root=model.spec.root, flip_keypoints=model.spec.flip_keypoints)
    assert whole["n_images"] == 5
    for chunk in (1, 3, 4, 10, EVAL_SAMPLE_CHUNK):
        got = evaluate_model(model, loader, num_samples=10, max_items=5, sample_chunk=chunk)
        assert_same_figures(got, whole)


def test_predict_chunks_join_into_predict(hands):
    model = small_hand(rotation_in_flow=True, flip_mixture=True)
    batch = next(iter(DataLoader(hands, batch_size=4)))
    torch.manual_seed(3)
    whole = model.predict(batch, 11, 0.8)
    for chunk in (2, 4, 11, 50):
        torch.manual_seed(3)
        parts = list(predict_chunks(model, batch, 11, 0.8, chunk))
        assert [p["xyz_mm"].shape[1] for p in parts] == [min(chunk, 11 - s) for s in range(0, 11, chunk)]
        for key in ("xyz_mm", "uv_px", "plausible"):
            torch.testing.assert_close(torch.cat([p[key] for p in parts], 1), whole[key], msg=key)
        torch.testing.assert_close(parts[-1]["mode_xyz_mm"], whole["mode_xyz_mm"])


def test_the_flows_slices_change_no_value(monkeypatch):
    torch.manual_seed(0)
    flow = flows.ConditionalFlow(5, 4, transforms=2, hidden=(16,))
    ctx = torch.randn(3, 4)
    torch.manual_seed(1)
    x, log_q = flow.rsample_and_log_prob(ctx, 9, 0.8)
    whole = flow.log_prob(x, ctx)
    monkeypatch.setattr(flows, "FLOW_PASS_ROWS", 7)  # 2 draws of 3 items a pass: 5 passes, the last of 1 draw
    torch.manual_seed(1)
    x2, log_q2 = flow.rsample_and_log_prob(ctx, 9, 0.8)
    torch.testing.assert_close(x2, x)
    torch.testing.assert_close(log_q2, log_q)
    torch.testing.assert_close(flow.log_prob(x, ctx), whole)
    torch.testing.assert_close(whole, log_q, rtol=1e-4, atol=1e-4)  # the density of the draws themselves


def test_a_bad_chunk_size_is_refused(hands):
    with pytest.raises(ValueError, match="sample_chunk must be a positive int"):
        evaluate_model(small_hand(), DataLoader(hands, batch_size=3), num_samples=4, sample_chunk=0)


@pytest.fixture(scope="module")
def small_body():
    import warnings

    from mhe.lab.config_io import load_config
    from mhe.models.body import MultiHypothesisBody

    cfg = load_config("body_mhentropy", ["model.context_dim=32", "model.encoder_hidden=[32]", "model.flow_transforms=2",
                                         "model.flow_hidden=[32]", "model.head_hidden=32"]).model
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MultiHypothesisBody(cfg).eval()


@pytest.fixture(scope="module")
def bodies(tmp_path_factory):
    from mhe.data.synthetic_bodies import SyntheticBodies

    return SyntheticBodies("test", size=5, seed=0, cache_dir=tmp_path_factory.mktemp("cache"))


def test_a_body_streams_the_same_numbers_with_its_mode_first(small_body, bodies):
    batch = next(iter(DataLoader(bodies, batch_size=5)))
    torch.manual_seed(4)
    whole = small_body.predict(batch, 7, 0.8)
    torch.manual_seed(4)
    parts = list(small_body.predict_chunks(batch, 7, 0.8, 3))  # the mode, then 6 samples: chunks 3, 3, 1
    assert [p["xyz_mm"].shape[1] for p in parts] == [3, 3, 1]
    for key in ("xyz_mm", "uv_px", "plausible"):
        torch.testing.assert_close(torch.cat([p[key] for p in parts], 1), whole[key], msg=key)
    torch.testing.assert_close(parts[0]["xyz_mm"][:, 0], whole["mode_xyz_mm"][:, 0])  # hypothesis 0 is the mode
    loader = DataLoader(bodies, batch_size=2)
    want = score_predictions(collect_predictions(small_body, loader, num_samples=7), root=small_body.spec.root)
    assert "n_ambiguous" in want and "plausible" in want
    for chunk in (2, 7):
        assert_same_figures(evaluate_model(small_body, loader, num_samples=7, sample_chunk=chunk), want)


def test_evaluate_checkpoint_and_the_command_line_take_a_chunk(capsys):
    from mhe.lab.cli import main
    from mhe.lab.experiments import evaluate_checkpoint

    whole = evaluate_checkpoint("hand_mhentropy", num_samples=12, max_items=4)
    chunked = evaluate_checkpoint("hand_mhentropy", num_samples=12, max_items=4, sample_chunk=5)
    nan = {k: math.nan if v is None else v for k, v in whole["metrics"].items()}  # None: undefined (JSON null)
    assert_same_figures({k: math.nan if v is None else v for k, v in chunked["metrics"].items()}, nan)
    with pytest.raises(TypeError, match="sample_chunk must be an int"):
        evaluate_checkpoint("hand_mhentropy", num_samples=12, max_items=4, sample_chunk=2.5)
    assert main(["evaluate", "--checkpoint", "hand_mhentropy", "--samples", "12", "--max-items", "4",
                 "--chunk", "5"]) == 0
    assert f"{whole['metrics']['mpjpe_bh']:.4f}" in capsys.readouterr().out
