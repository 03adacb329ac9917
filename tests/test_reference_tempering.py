"""Replica exchange (mhe.reference.tempered_hmc) against exact answers, and the statistics that compare
hypotheses with a reference posterior's draws (mhe.reference.compare) on closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from mhe.reference import (
    calibration_against_draws,
    depth_signs,
    energy_distance,
    flip_mass,
    geometric_ladder,
    hmc,
    split_rhat,
    spread_ratio,
    tempered_hmc,
)
from mhe.toy import ExactArmPosterior, TwoLinkArm


def _arm_modes(samples: torch.Tensor, solutions: torch.Tensor) -> torch.Tensor:
    """The share of ``samples (N, 2)`` nearest each of the 4 ``solutions (4, 2)``."""
    nearest = (samples[:, None] - solutions).norm(dim=-1).argmin(-1)
    return torch.bincount(nearest, minlength=4).double() / len(samples)


def test_replica_exchange_weighs_the_toy_arms_four_solutions_by_their_exact_mass():
    """Every chain starts at ONE of the arm's four solutions; HMC alone stays there, replica exchange
    reaches all four and weighs them as the exact (gridded) posterior does."""
    arm, exact = TwoLinkArm(), ExactArmPosterior()  # b = 0.05, prior weight 300: the toy's target
    angles = torch.tensor([[0.8, 0.9], [1.1, -2.0]])
    heights = arm.heights(angles)
    solutions = arm.solutions(heights)  # (G, 4, 2)
    G, K, C = 2, 6, 8
    betas = geometric_ladder(K, 0.01)

    def parts(x):
        obs = heights.repeat_interleave(len(x) // G, 0)
        return -(arm.heights(x) - obs).abs().sum(-1) / exact.b, arm.log_prior(x, 300.0)

    g = torch.Generator().manual_seed(0)
    x0 = solutions[:, :1].expand(G, K * C, 2) + 0.01 * torch.randn(G, K * C, 2, generator=g)
    res = tempered_hmc(parts, x0, betas, num_warmup=150, num_samples=800, num_steps=6, generator=g)
    assert res.samples.shape == (G, C, 800, 2)
    assert res.swap_accept is not None and (res.swap_accept > 0.2).all()  # the ladder is dense enough
    torch.manual_seed(0)
    reference = exact.sample(heights, 20000)
    for i in range(G):
        ours = _arm_modes(res.samples[i].reshape(-1, 2), solutions[i])
        theirs = _arm_modes(reference[i], solutions[i])
        # 6400 draws, ESS of the mode indicator a few hundred: each mass within 0.07 of the exact one
        assert (ours - theirs).abs().max() < 0.07, (ours, theirs)
    assert (split_rhat(res.samples.permute(0, 3, 1, 2)) < 1.1).all()  # the chains met
    # plain HMC from the same start never leaves the first solution
    plain = hmc(lambda x: sum(parts(x)), x0[:, :C], num_warmup=150, num_samples=200, num_steps=6, generator=g)
    for i in range(G):
        assert _arm_modes(plain.samples[i].reshape(-1, 2), solutions[i])[0] > 0.99


def test_replica_exchange_of_one_rung_is_hmc_and_bad_ladders_are_refused():
    def parts(x):
        return -0.5 * x.square().sum(-1), torch.zeros(len(x))

    x0 = torch.zeros(1, 4, 3)
    res = tempered_hmc(parts, x0, (1.0,), num_warmup=20, num_samples=5, num_steps=2,
                       generator=torch.Generator().manual_seed(0))
    assert res.samples.shape == (1, 4, 5, 3) and res.swap_accept is not None and res.swap_accept.shape == (1, 0)
    with pytest.raises(ValueError, match="betas must start at 1 and decrease"):
        tempered_hmc(parts, x0, (1.0, 1.0))
    with pytest.raises(ValueError, match="betas must start at 1 and decrease"):
        tempered_hmc(parts, x0, (0.5, 0.1))
    with pytest.raises(ValueError, match="multiple of K = 3"):
        tempered_hmc(parts, x0, (1.0, 0.5, 0.1))
    assert geometric_ladder(3, 0.01) == pytest.approx((1.0, 0.1, 0.01))
    with pytest.raises(ValueError, match="0 < beta_min <= 1"):
        geometric_ladder(3, 0.0)


# -- comparisons with the reference's draws --------------------------------------------------------


def _normal_abs_mean(delta: float, s: float) -> float:
    """E|Z| for Z ~ N(delta, s²)."""
    folded = s * math.sqrt(2 / math.pi) * math.exp(-delta ** 2 / (2 * s ** 2))
    return folded + delta * math.erf(delta / (s * math.sqrt(2)))


def test_energy_distance_of_two_gaussians_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    n, sd, delta = 4000, 1.5, 2.0
    a = torch.zeros(2, n, 1, 3)
    b = torch.zeros(2, n, 1, 3)
    a[..., 0] = sd * torch.randn(2, n, 1, generator=g)
    b[..., 0] = delta + sd * torch.randn(2, n, 1, generator=g)  # 1D Gaussians embedded in 3D
    # E|X − X'| = 2 sd / √π for X, X' ~ N(·, sd²); both sets have it
    expected = 2 * _normal_abs_mean(delta, sd * math.sqrt(2)) - 2 * (2 * sd / math.sqrt(math.pi))
    got = energy_distance(a, b)
    assert got.shape == (2, 1)
    assert (got - expected).abs().max() < 0.08 * expected
    same = energy_distance(a, a[:, torch.randperm(n, generator=g)][:, : n // 2])
    assert same.abs().max() < 0.02  # one distribution: about 0


def test_calibration_of_exact_samples_against_draws_is_near_zero_and_narrow_ones_are_not():
    g = torch.Generator().manual_seed(1)
    B, S, R, J = 20, 200, 50, 4
    centre = torch.randn(B, 1, J, 3, generator=g) * 10
    sd = torch.rand(B, 1, J, 1, generator=g) + 0.5
    hyps = centre + sd * torch.randn(B, S, J, 3, generator=g)
    ref = centre + sd * torch.randn(B, R, J, 3, generator=g)
    levels = tuple(round(0.05 * k, 2) for k in range(1, 20))
    mask = torch.ones(B, J, dtype=torch.bool)
    curve = calibration_against_draws(hyps, ref, mask, levels)
    score = float((curve - torch.tensor(levels, dtype=torch.float64)).abs().mean())
    assert score < 0.03  # the same distribution: the only error is S's finite quantiles and R's draws
    narrow = centre + 0.5 * sd * torch.randn(B, S, J, 3, generator=g)
    curve = calibration_against_draws(narrow, ref, mask, levels)
    assert float((curve - torch.tensor(levels, dtype=torch.float64)).abs().mean()) > 0.2
    assert curve[-1] < 0.5  # half the spread in 3D: the 95 % region holds far fewer than 95 %
    ratio = spread_ratio(narrow, ref)
    # R = 50 draws in 3D: each ratio within ~6 % sd of 0.5; their mean much closer
    assert ((ratio - 0.5).abs() < 0.2).all() and abs(float(ratio.mean()) - 0.5) < 0.03


def test_flip_mass_counts_depth_modes_and_their_total_variation():
    # one bone (0 → 1): in the hypotheses the child is deeper in 30 % of the draws, in the reference 50 %
    B, N = 1, 1000
    hyps = torch.zeros(B, N, 2, 3)
    ref = torch.zeros(B, N, 2, 3)
    hyps[0, : 300, 1, 2] = 1.0
    hyps[0, 300:, 1, 2] = -1.0
    ref[0, : 500, 1, 2] = 1.0
    ref[0, 500:, 1, 2] = -1.0
    out = flip_mass(hyps, ref, [(0, 1)])
    assert float(out["p_hyp"]) == pytest.approx(0.3) and float(out["p_ref"]) == pytest.approx(0.5)
    assert float(out["tv"]) == pytest.approx(0.2)
    assert depth_signs(ref, [(0, 1), (1, 0)]).sum(1).tolist() == [[500, 500]]
    with pytest.raises(ValueError, match="same B, J, D"):
        flip_mass(hyps, ref[:, :, :1], [(0, 1)])


def test_jumps_weigh_four_modes_by_their_exact_mass_and_need_their_inverse():
    """Four Gaussian modes at the corners of a square, masses 0.1 … 0.4, every chain started in the first.
    A jump T (a quarter turn, which carries each mode to the next) or T⁻¹, accepted by the density ratio,
    reaches all four and weighs them as the closed form does; HMC alone stays in the first."""
    centres = torch.tensor([[3.0, 0.0], [0.0, 3.0], [-3.0, 0.0], [0.0, -3.0]])
    mass = torch.tensor([0.1, 0.2, 0.3, 0.4])
    sd = 0.3

    def log_density(x):
        d2 = (x[:, None] - centres).square().sum(-1) / sd**2
        return torch.logsumexp(mass.log() - 0.5 * d2, -1)

    turn = torch.tensor([[0.0, -1.0], [1.0, 0.0]])  # x -> turn @ x: (3, 0) -> (0, 3) -> (-3, 0) ...

    def jump(x, inverse):
        return torch.where(inverse[:, None], x @ turn, x @ turn.T)

    G, C = 1, 8
    g = torch.Generator().manual_seed(0)
    x0 = centres[0] + sd * torch.randn(G, C, 2, generator=g)
    res = hmc(log_density, x0, num_warmup=60, num_samples=400, num_steps=4, generator=g, jump=jump)
    share = torch.bincount((res.samples.reshape(-1, 2)[:, None] - centres).norm(dim=-1).argmin(-1),
                           minlength=4).double() / (C * 400)
    assert (share - mass.double()).abs().max() < 0.05, share
    assert res.jump_accept is not None and 0.2 < float(res.jump_accept[0]) < 0.9
    stuck = hmc(log_density, x0, num_warmup=60, num_samples=100, num_steps=4, generator=g)
    assert stuck.jump_accept is None
    assert ((stuck.samples.reshape(-1, 2) - centres[0]).norm(dim=-1) < 1.5).float().mean() > 0.99
