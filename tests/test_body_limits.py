"""SMPL joint limits (mhe.body.body_limits): sampled poses, implausible poses, the soft prior against
finite differences, and the flexion signs of the docstring checked on the stand-in body."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from mhe.body import load_smpl
from mhe.body.body_limits import (
    BODY_JOINTS,
    BODY_LIMITS,
    BODY_PLAUSIBLE_TOLERANCE,
    BodyLimits,
)

warnings.filterwarnings("ignore", category=UserWarning)
J = {name: i for i, name in enumerate(BODY_JOINTS)}


@pytest.fixture(scope="module")
def limits():
    return BodyLimits(torch.float64)


@pytest.fixture(scope="module")
def smpl():
    return load_smpl(standin=True, dtype=torch.float64)


def _pose(**joints):
    p = torch.zeros(23, 3, dtype=torch.float64)
    for name, value in joints.items():
        p[J[name]] = torch.tensor(value, dtype=torch.float64)
    return p


def test_limits_cover_the_23_joints_and_mirror(limits):
    assert list(BODY_LIMITS) == list(BODY_JOINTS) and len(BODY_JOINTS) == 23
    assert (limits.lower < limits.upper).all()
    for name, (x, y, z) in BODY_LIMITS.items():
        if name.startswith("left_"):
            rx, ry, rz = BODY_LIMITS["right_" + name[5:]]
            assert rx == x and ry == (-y[1], -y[0]) and rz == (-z[1], -z[0])
    # the knee and elbow flex one way only
    assert BODY_LIMITS["left_knee"][0][0] <= 0 < BODY_LIMITS["left_knee"][0][1] > 2.3
    assert BODY_LIMITS["left_knee"][0][0] > -0.05
    assert BODY_LIMITS["left_elbow"][1][1] < 0.05 and BODY_LIMITS["left_elbow"][1][0] < -2.3


def test_sampled_poses_are_plausible_and_deterministic(limits):
    poses = limits.sample(np.random.default_rng(0), 4000)
    assert poses.shape == (4000, 69) and poses.dtype == torch.float64
    assert limits.plausible(poses, tolerance=0.0).all()
    assert limits.plausible(poses.float(), tolerance=0.0).all()
    assert BodyLimits(torch.float32).plausible(poses.float(), tolerance=0.0).all()
    torch.testing.assert_close(limits.sample(np.random.default_rng(7), 5), limits.sample(np.random.default_rng(7), 5),
                               rtol=0, atol=0)
    # natural variety: knees from straight to deeply bent, arms down and raised
    knee = poses.reshape(-1, 23, 3)[:, J["left_knee"], 0]
    assert (knee < 0.3).mean(dtype=torch.float64) > 0.3 and (knee > 1.7).any()
    arm = poses.reshape(-1, 23, 3)[:, J["left_shoulder"], 2]
    assert (arm < -0.9).mean(dtype=torch.float64) > 0.3 and (arm > 0.3).any()


def test_implausible_poses(limits):
    rest = _pose()
    assert limits.plausible(rest).item() and limits.log_prior(rest).item() == 0.0
    bad = {
        "knee bent backwards": _pose(left_knee=[-0.6, 0, 0]),
        "right knee bent backwards": _pose(right_knee=[-0.6, 0, 0]),
        "elbow hyper-extended": _pose(left_elbow=[0, 0.5, 0]),
        "right elbow hyper-extended": _pose(right_elbow=[0, -0.5, 0]),
        "neck twisted 150°": _pose(neck=[0, math.radians(150), 0]),
    }
    for name, pose in bad.items():
        assert not limits.plausible(pose).item(), name
        assert limits.log_prior(pose).item() < -10, name
    # the same amounts the right way are fine
    good = _pose(left_knee=[2.0, 0, 0], right_knee=[2.0, 0, 0], left_elbow=[0, -2.0, 0],
                 right_elbow=[0, 2.0, 0], neck=[0, 0.6, 0])
    assert limits.plausible(good, tolerance=0.0).item()
    # just past a limit is within the tolerance, further is not
    hi = BODY_LIMITS["left_knee"][0][1]
    assert limits.plausible(_pose(left_knee=[hi + 0.5 * BODY_PLAUSIBLE_TOLERANCE, 0, 0])).item()
    assert not limits.plausible(_pose(left_knee=[hi + 2 * BODY_PLAUSIBLE_TOLERANCE, 0, 0])).item()


def test_violation_clamp_and_shapes(limits):
    aa = torch.randn(5, 69, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 1.5
    v = limits.violation(aa)
    assert v.shape == (5, 23, 3) and (v >= 0).all()
    torch.testing.assert_close(v, limits.violation(aa.reshape(5, 23, 3)))
    clamped = limits.clamp(aa)
    assert clamped.shape == aa.shape
    assert limits.violation(clamped).max() == 0
    torch.testing.assert_close(limits.clamp(clamped), clamped)
    inside = limits.clamp(aa) == aa
    assert ((limits.violation(aa) == 0).flatten(-2) == inside).all()
    with pytest.raises(ValueError):
        limits.violation(torch.zeros(5, 45))


def test_log_prior_gradient_matches_finite_differences(limits):
    aa = torch.zeros(69, dtype=torch.float64)
    aa[J["left_knee"] * 3] = -0.3  # knee bent backwards
    aa[J["neck"] * 3 + 1] = 1.2  # neck over-twisted
    aa[J["left_hip"] * 3 + 2] = 0.2  # inside
    aa.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: limits.log_prior(x, weight=3.0), (aa,))
    value = limits.log_prior(aa, weight=3.0)
    expected = -3.0 * (0.3 - abs(BODY_LIMITS["left_knee"][0][0])) ** 2 - 3.0 * (1.2 - BODY_LIMITS["neck"][1][1]) ** 2
    assert value.item() == pytest.approx(expected)
    (grad,) = torch.autograd.grad(value, aa)
    assert grad[J["left_hip"] * 3 + 2] == 0


def _joints(smpl, pose):
    zeros = torch.zeros(1, 3, dtype=torch.float64)
    out = smpl(zeros, pose.reshape(1, 69), torch.zeros(1, 10, dtype=torch.float64))
    return out.joints[0]


def test_flexion_signs_on_the_standin(smpl):
    rest = _joints(smpl, _pose())
    for side, ankle in (("left", 7), ("right", 8)):
        bent = _joints(smpl, _pose(**{f"{side}_knee": [1.0, 0, 0]}))
        assert bent[ankle, 2] < rest[ankle, 2] - 0.2  # the ankle moves backwards
        assert abs(float(bent[ankle, 0] - rest[ankle, 0])) < 1e-6
    for side, knee in (("left", 4), ("right", 5)):
        flexed = _joints(smpl, _pose(**{f"{side}_hip": [-1.0, 0, 0]}))
        assert flexed[knee, 2] > rest[knee, 2] + 0.2  # hip flexion swings the thigh forward
    for side, sign, wrist in (("left", -1.0, 20), ("right", 1.0, 21)):
        bent = _joints(smpl, _pose(**{f"{side}_elbow": [0, sign * 1.0, 0]}))
        assert bent[wrist, 2] > rest[wrist, 2] + 0.15  # the wrist moves forward ...
        assert abs(float(bent[wrist, 0])) < abs(float(rest[wrist, 0])) - 0.05  # ... and inwards
    bent = _joints(smpl, _pose(spine1=[0.5, 0, 0]))
    assert bent[15, 2] > rest[15, 2] + 0.1  # +x bends the spine forward
    down = _joints(smpl, _pose(left_shoulder=[0, 0, -1.0]))
    assert down[20, 1] < rest[20, 1] - 0.2  # -z lowers the left arm
