"""Selection by extra evidence (mhe.selection): views and depths by hand, the oracle as a bound."""

from __future__ import annotations

import pytest
import torch

from mhe import selection as sel


def test_view_rotation_is_a_rotation_and_a_side_view_sees_depth():
    R = sel.view_rotation(90, "y")
    torch.testing.assert_close(R @ R.T, torch.eye(3, dtype=torch.float64))
    assert torch.linalg.det(R).item() == pytest.approx(1.0)
    # a point 10 mm deep appears 10 mm to the side in the side view
    p = torch.tensor([0.0, 0.0, 10.0], dtype=torch.float64)
    assert (R @ p)[0].item() == pytest.approx(10.0)
    with pytest.raises(ValueError, match="axis"):
        sel.view_rotation(10, "z")


def test_a_side_view_tells_depth_hypotheses_apart_that_the_first_view_cannot():
    gt = torch.tensor([[[0.0, 0.0, 0.0], [10.0, 0.0, 20.0], [0.0, 10.0, -5.0]]], dtype=torch.float64)
    wrong = gt.clone()
    wrong[..., 2] *= -1  # the depth mirror: same first view
    pred = torch.stack([wrong[0], gt[0], wrong[0]])[None]  # (1, 3, J, 3); hypothesis 1 is right
    front = sel.second_view_scores(pred, gt, sel.view_rotation(0))
    assert torch.allclose(front, torch.zeros(1, 3, dtype=torch.float64))  # the first view cannot tell
    side = sel.second_view_scores(pred, gt, sel.view_rotation(90))
    assert side[0, 1] == 0 and (side[0, [0, 2]] > 0).all()
    assert sel.select(side).tolist() == [1]
    # by hand: joint 1 is 40 mm off in the side view, joint 2 10 mm, joint 0 none -> mean 50/3
    assert side[0, 0].item() == pytest.approx(50 / 3)
    depth = sel.depth_scores(pred, gt, joints=[1])
    assert depth[0].tolist() == pytest.approx([40.0, 0.0, 40.0])
    visible = torch.tensor([[True, False, False]])  # only the root seen: no evidence, no preference
    assert torch.allclose(sel.second_view_scores(pred, gt, sel.view_rotation(90), visible),
                          torch.zeros(1, 3, dtype=torch.float64))
    none = sel.second_view_scores(pred, gt, sel.view_rotation(90), torch.zeros(1, 3, dtype=torch.bool))
    assert torch.isnan(none).all()


def test_report_sits_between_the_oracle_and_chance():
    g = torch.Generator().manual_seed(0)
    gt = torch.randn(40, 21, 3, generator=g, dtype=torch.float64) * 30
    pred = gt[:, None] + torch.randn(40, 50, 21, 3, generator=g, dtype=torch.float64) * 8
    exact = sel.selection_report(pred, gt, sel.second_view_scores(pred, gt, sel.view_rotation(90)))
    assert exact["mpjpe_bh"] <= exact["mpjpe_selected"] < exact["mpjpe_mean"]
    assert 0 < exact["gain_closed"] <= 1
    # evidence equal to the truth's own error picks the oracle's hypothesis exactly
    oracle = sel.selection_report(pred, gt, (pred - gt[:, None]).norm(dim=-1).mean(-1))
    assert oracle["mpjpe_selected"] == pytest.approx(oracle["mpjpe_bh"]) and oracle["gain_closed"] == pytest.approx(1)
    # uninformative evidence (noise far larger than the spread) closes little of the gap
    noisy = sel.selection_report(pred, gt, sel.depth_scores(pred, gt, [3], noise_mm=1e4, generator=g))
    assert noisy["gain_closed"] < exact["gain_closed"]
    with_mode = sel.selection_report(pred, gt, torch.zeros(40, 50), mode_xyz=gt[:, None])
    assert with_mode["mpjpe_mode"] == 0
