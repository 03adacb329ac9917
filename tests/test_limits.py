"""Anatomical finger-joint limits (mhe.body.limits) and their use in the hand model: axes, violations by
hand, the soft prior against finite differences, the benchmark's own hands, and every parameterisation
giving the same plausibility for the same hand."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch.utils.data import default_collate

from mhe.body import load_mano
from mhe.body.limits import FINGER_LIMITS, JOINT_KIND, PLAUSIBLE_TOLERANCE, FingerLimits, finger_limits
from mhe.config import ModelConfig
from mhe.data import SyntheticHands
from mhe.models.hand import MultiHypothesisHand

warnings.filterwarnings("ignore", category=UserWarning)

SMALL = dict(context_dim=32, encoder_hidden=(32,), flow_transforms=2, flow_hidden=(32,), head_hidden=32)


@pytest.fixture(scope="module")
def limits():
    return FingerLimits(load_mano(dtype=torch.float64))


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    ds = SyntheticHands("val", size=64, seed=5, occlusion=0.4, cache_dir=tmp_path_factory.mktemp("cache"))
    return ds, default_collate([ds[i] for i in range(len(ds))])


def test_axes_are_orthonormal_frames_along_the_bones(limits):
    eye = torch.eye(3, dtype=torch.float64).expand(15, 3, 3)
    torch.testing.assert_close(limits.axes @ limits.axes.transpose(-1, -2), eye, atol=1e-10, rtol=0)
    # abduction = flexion x bone, twist = the bone
    flex, abd, twist = limits.axes.unbind(-2)
    torch.testing.assert_close(torch.linalg.cross(flex, twist), abd, atol=1e-10, rtol=0)


def test_components_round_trip_and_violation_by_hand(limits):
    aa = torch.randn(7, 45, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(limits.from_components(limits.components(aa)), aa)
    # a pose built from components: every joint at the middle of its range, one twist 0.2 rad beyond
    c = (limits.lower + limits.upper) / 2
    assert limits.violation(limits.from_components(c)).abs().max() == 0
    j = JOINT_KIND.index("pip")  # joint 2: index PIP, twist limit 0.08
    c = c.clone()
    c[j, 2] = FINGER_LIMITS["pip"][3] + 0.2
    v = limits.violation(limits.from_components(c))
    assert v[j, 2].item() == pytest.approx(0.2, abs=1e-12)
    assert v.sum().item() == pytest.approx(0.2, abs=1e-12)
    assert not limits.plausible(limits.from_components(c)).item()
    assert limits.log_prior(limits.from_components(c), weight=10.0).item() == pytest.approx(-10 * 0.04)
    # within the tolerance is still plausible
    c[j, 2] = FINGER_LIMITS["pip"][3] + 0.5 * PLAUSIBLE_TOLERANCE
    assert limits.plausible(limits.from_components(c)).item()


def test_clamp_lands_inside_and_is_idempotent(limits):
    aa = 2 * torch.randn(50, 45, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    clamped = limits.clamp(aa)
    assert limits.violation(clamped).max() < 1e-12
    assert limits.plausible(clamped, tolerance=1e-12).all()
    torch.testing.assert_close(limits.clamp(clamped), clamped)


def test_soft_prior_gradient_matches_finite_differences(limits):
    aa = 1.5 * torch.randn(3, 45, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert torch.autograd.gradcheck(lambda x: limits.log_prior(x, weight=3.0), (aa.requires_grad_(),))


def test_the_benchmark_draws_plausible_hands(items):
    ds, batch = items
    limits = finger_limits(ds.mano)
    full = ds.kin.to_axis_angle(batch["params"].double())
    assert limits.plausible(full).all()  # the tolerance is chosen so that the generator's hands pass


@pytest.mark.parametrize("repr_,prior", [("pca", "box"), ("axis_angle", "box"), ("axis_angle", "official"),
                                         ("6d", "joint_limits")])
def test_every_parameterisation_sees_the_same_hand(items, repr_, prior):
    ds, batch = items
    model = MultiHypothesisHand(ModelConfig(**SMALL, pose_repr=repr_, pose_prior=prior))
    assert bool(model.mano.flat_hand_mean) == (prior == "official")
    theta = model.params_from_pca(batch["params"].float())
    full = model.spec.full_axis_angle(theta)
    torch.testing.assert_close(full.double(), ds.kin.to_axis_angle(batch["params"].double()), atol=2e-5, rtol=0)
    assert model.spec.plausible(theta).all()
    # a hand with a finger twisted far beyond its limit is not
    twisted = ds.kin.to_axis_angle(batch["params"].double()).clone()
    twisted[:, 3:6] += 1.0 * model.spec.limits.axes[1, 2].double()  # index PIP twisted by 1 rad
    assert not model.spec.limits.plausible(twisted).any()


def test_pose_priors_by_hand(items):
    _, batch = items
    B = 4
    head = {"global_orient": torch.zeros(B, 3), "betas": torch.zeros(B, 10)}
    official = MultiHypothesisHand(ModelConfig(**SMALL, pose_repr="axis_angle", pose_prior="official"))
    theta = torch.zeros(B, 1, 45)
    theta[..., 0] = 2 * math.pi  # ‖θ‖ = 2π: the ball's penalty is 5 · (2 - 1)²
    assert official.spec.log_prior(theta, head)[:, 0].tolist() == pytest.approx([-5.0] * B, abs=1e-5)
    jl = MultiHypothesisHand(ModelConfig(**SMALL, pose_repr="axis_angle", pose_prior="joint_limits"))
    theta = jl.params_from_pca(batch["params"][:B].float())[:, None]
    # the benchmark's hands leave their limits by at most ~0.11 rad: a few nats at most
    assert jl.spec.log_prior(theta, head).min() > -5
    full = jl.spec.full_axis_angle(theta)
    expected = jl.spec.limits.log_prior(full + 0.5)[:, 0]
    got = jl.spec.log_prior(theta + 0.5, head)[:, 0]
    torch.testing.assert_close(got, expected, atol=1e-3, rtol=1e-5)
    assert (got < -10).all()


def test_predictions_carry_plausibility_and_the_mode(items):
    _, batch = items
    model = MultiHypothesisHand(ModelConfig(**SMALL, pose_prior="joint_limits")).eval()
    out = model.predict({k: v[:5] for k, v in batch.items()}, num_samples=4, temperature=0.8)
    assert out["plausible"].shape == (5, 4) and out["plausible"].dtype == torch.bool
    assert out["mode_xyz_mm"].shape == (5, 1, 21, 3)
    # the mode draws no random numbers: the hypotheses are those drawn without it
    torch.manual_seed(0)
    a = model.predict({k: v[:5] for k, v in batch.items()}, num_samples=4, temperature=0.8)["xyz_mm"]
    torch.manual_seed(0)
    with torch.no_grad():
        hyp = model.hypotheses({k: v[:5] for k, v in batch.items()}, 4, 0.8)
    torch.testing.assert_close(a, hyp.joints_3d * batch["scale"][:5, None, None, None] * 1000)
