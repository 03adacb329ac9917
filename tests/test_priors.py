"""mhe.priors: the soft box and ball priors by hand, and hand_log_prior's messages for missing inputs."""

from __future__ import annotations

import math

import pytest
import torch

from mhe.priors import ball_prior, box_prior, hand_log_prior


def test_box_and_ball_priors_are_flat_inside_and_quadratic_outside():
    x = torch.tensor([[0.5, -1.0], [3.0, 0.0]], dtype=torch.float64)
    # half-width 1, weight 2: the first row is inside, the second is 2 widths out on its first axis
    assert box_prior(x, 1.0, 2.0).tolist() == [0.0, -2.0 * (3.0 - 1.0) ** 2]
    y = torch.tensor([[0.6, 0.8], [3.0, 4.0]], dtype=torch.float64)  # norms 1 and 5
    assert ball_prior(y, 2.0, 3.0).tolist() == [0.0, -3.0 * (5.0 / 2.0 - 1.0) ** 2]
    with pytest.raises(ValueError, match="half_width must be > 0"):
        box_prior(x, 0.0, 1.0)
    with pytest.raises(ValueError, match="radius must be > 0"):
        ball_prior(y, -math.pi, 1.0)


def test_joint_limit_prior_names_what_is_missing():
    B, S = 2, 3
    theta, orient, betas = torch.zeros(B, S, 45), torch.zeros(B, 3), torch.zeros(B, 10)
    with pytest.raises(ValueError, match="needs limits"):
        hand_log_prior(theta, "axis_angle", orient, betas, pose_prior="joint_limits", full_aa=theta)
    with pytest.raises(ValueError, match="needs full_aa"):
        hand_log_prior(theta, "axis_angle", orient, betas, pose_prior="joint_limits", limits=object(),
                       joint_limit_weight=10.0)
