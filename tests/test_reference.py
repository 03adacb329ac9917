"""The reference posterior (mhe.reference): the sampler against closed forms and the toy arm's exact
posterior, the diagnostics against cases whose answer is known, and the target against the objective."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from mhe.objectives import laplace_log_likelihood
from mhe.reference import HEAD_PRIORS, ModelTarget, ess_bulk, hmc, split_rhat
from mhe.toy import ExactArmPosterior, TwoLinkArm


def _gaussian(G: int, C: int, D: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(G, D, D, generator=g) * 0.3 + torch.eye(D)
    cov = A @ A.transpose(-1, -2) * torch.tensor([0.01, 4.0])[:G, None, None]  # two very different scales
    mean = torch.randn(G, D, generator=g) * 3
    prec = torch.linalg.inv(cov)

    def log_density(x):
        d = x.view(G, C, D) - mean[:, None]
        return (-0.5 * torch.einsum("gci,gij,gcj->gc", d, prec, d)).reshape(-1)

    return mean, cov, log_density, g


def test_hmc_recovers_a_gaussian():
    G, C, D = 2, 4, 4
    mean, cov, log_density, g = _gaussian(G, C, D, seed=0)
    x0 = mean[:, None] + 3 * torch.randn(G, C, D, generator=g) * cov.diagonal(dim1=1, dim2=2).sqrt()[:, None]
    res = hmc(log_density, x0, num_warmup=100, num_samples=300, num_steps=6, generator=g)
    sd = cov.diagonal(dim1=1, dim2=2).sqrt()
    draws = res.samples.reshape(G, -1, D)
    # 1200 draws, ESS a few hundred: the mean within 0.25 sd, the covariance within 35 % of the scale
    assert ((draws.mean(1) - mean).abs() / sd).max() < 0.25
    emp = torch.stack([torch.cov(d.T) for d in draws])
    assert ((emp - cov).abs() / (sd[:, :, None] * sd[:, None, :])).max() < 0.35
    assert (split_rhat(res.samples.permute(0, 3, 1, 2)) < 1.05).all()
    assert (res.accept > 0.6).all() and (res.divergent == 0).all()


def test_hmc_matches_the_toy_arms_exact_posterior_within_each_solution():
    arm, exact = TwoLinkArm(), ExactArmPosterior()  # b = 0.05, prior weight 300: the toy's target
    angles = torch.tensor([[0.8, 0.9], [1.1, -2.0]])
    heights = arm.heights(angles)
    solutions = arm.solutions(heights)  # (G, 4, 2)
    G, C = 2, 16

    def log_density(x):
        obs = heights.repeat_interleave(C, 0)
        return -(arm.heights(x) - obs).abs().sum(-1) / exact.b + arm.log_prior(x, 300.0)

    g = torch.Generator().manual_seed(0)
    x0 = solutions.repeat_interleave(4, 1) + 0.01 * torch.randn(G, C, 2, generator=g)  # 4 chains per solution
    res = hmc(log_density, x0, num_warmup=100, num_samples=250, num_steps=6, generator=g)
    torch.manual_seed(0)
    reference = exact.sample(heights, 20000)
    for i in range(G):
        ours, theirs = res.samples[i].reshape(-1, 2), reference[i]
        near_ours = (ours[:, None] - solutions[i]).norm(dim=-1).argmin(-1)
        near_theirs = (theirs[:, None] - solutions[i]).norm(dim=-1).argmin(-1)
        for k in range(4):
            a, b = ours[near_ours == k], theirs[near_theirs == k]
            assert len(a) > 400, f"item {i}: solution {k} holds {len(a)} of the HMC draws"
            # within a solution the draws are the exact posterior's: means within 0.07 rad, spreads within -30 % … +45 %
            assert (a.mean(0) - b.mean(0)).abs().max() < 0.07
            ratio = a.std(0) / b.std(0)
            assert ((ratio > 0.7) & (ratio < 1.45)).all(), ratio
    # chains started at the four solutions do not mix across them: R-hat says so
    assert (split_rhat(res.samples.permute(0, 3, 1, 2)).amax(-1) > 1.2).all()


def test_rhat_is_one_for_agreeing_chains_and_large_for_chains_in_separate_modes():
    g = torch.Generator().manual_seed(0)
    agree = torch.randn(3, 4, 500, generator=g)
    assert (split_rhat(agree) < 1.02).all()
    stuck = torch.cat([torch.randn(2, 500, generator=g) - 5, torch.randn(2, 500, generator=g) + 5])
    assert split_rhat(stuck) > 1.5  # rank-normalised: bounded for fully separated chains (here √3)
    # a chain that drifts (its two halves disagree) is caught by the split
    drift = torch.randn(4, 400, generator=g) + torch.linspace(0, 6, 400)
    assert split_rhat(drift) > 1.5
    # the folded R-hat sees chains with equal centres and different spreads
    spread = torch.randn(4, 1000, generator=g) * torch.tensor([1.0, 1.0, 5.0, 5.0])[:, None]
    assert split_rhat(spread) > 1.1


def test_bulk_ess_matches_an_ar1_process():
    g = torch.Generator().manual_seed(1)
    rho, n = 0.8, 8000
    noise = torch.randn(4, n, generator=g, dtype=torch.float64)
    x = torch.empty_like(noise)
    x[:, 0] = noise[:, 0] / math.sqrt(1 - rho ** 2)
    for t in range(1, n):
        x[:, t] = rho * x[:, t - 1] + noise[:, t]
    expected = 4 * n * (1 - rho) / (1 + rho)  # the AR(1)'s integrated autocorrelation time
    assert abs(float(ess_bulk(x)) / expected - 1) < 0.15
    iid = torch.randn(4, 1000, generator=g)
    assert abs(float(ess_bulk(iid)) / 4000 - 1) < 0.15


# -- the model's own target -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    from mhe.lab.experiments import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stand-in body models' notice
        return {name: load_model(name, device="cpu") for name in ("hand_mhentropy", "body_mhentropy")}


def _batch(model, B: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    K = model.spec.num_keypoints
    return {"obs": torch.rand(B, K, 2, generator=g) - 0.5, "visible": torch.rand(B, K, generator=g) < 0.6}


def _joints(hyp):
    return hyp.joints_3d if hasattr(hyp, "joints_3d") else hyp.extras["joints_3d"]


@pytest.mark.parametrize("name", ["hand_mhentropy", "body_mhentropy"])
def test_target_is_the_objectives_at_the_flows_own_samples(shipped, name):
    model, cfg = shipped[name]
    B, C = 3, 5
    batch = _batch(model, B, seed=0)
    torch.manual_seed(0)
    with torch.no_grad():
        hyp = model.hypotheses(batch, C, 1.0)
    ob = cfg.objective
    expected = ob.w_rec * laplace_log_likelihood(hyp.pred_obs, batch["obs"], batch["visible"], ob.b) \
        + ob.w_prior * hyp.log_prior  # (B, C): what mhentropy's reconstruction and prior terms average
    target = ModelTarget(model, batch, C, b=ob.b, w_rec=ob.w_rec, w_prior=ob.w_prior)
    x = target.initial(hyp.params)
    assert x.shape == (B * C, model.flow_dim)
    with torch.no_grad():
        got = target(x).view(B, C)
        joints = _joints(target.decode(x))[:, 0].view(B, C, -1, 3)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(joints, _joints(hyp), rtol=1e-5, atol=1e-5)
    # the likelihood and the prior apart (what replica exchange tempers): the objective's two terms
    with torch.no_grad():
        loglik, prior = target.parts(x)
    lik = ob.w_rec * laplace_log_likelihood(hyp.pred_obs, batch["obs"], batch["visible"], ob.b)
    torch.testing.assert_close(loglik.view(B, C), lik, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(prior.view(B, C), ob.w_prior * hyp.log_prior, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("name", ["hand_mhentropy", "body_mhentropy"])
def test_reference_two_at_the_heads_outputs_adds_only_the_benchmarks_head_prior(shipped, name):
    model, cfg = shipped[name]
    B, C = 2, 3
    batch = _batch(model, B, seed=1)
    torch.manual_seed(1)
    with torch.no_grad():
        theta = model.hypotheses(batch, C, 1.0).params
    one = ModelTarget(model, batch, C, b=cfg.objective.b)
    two = ModelTarget(model, batch, C, b=cfg.objective.b, sample_head=True)
    x2 = two.initial(theta)
    extra = 4 if name.startswith("hand") else 0  # the hand's rotation is the head's: a quaternion is added
    assert two.dim == one.dim + extra + model.spec.shape_dim
    prior = HEAD_PRIORS[model.spec.name]
    betas = x2[:, -model.spec.shape_dim:]
    outside = (betas.abs() / prior.beta_box - 1).clamp_min(0)  # the clip box, soft (weight 50)
    head_prior = -0.5 * (betas / prior.beta_sd).square().sum(-1) - 50.0 * outside.square().sum(-1)
    if extra:
        q = x2[:, one.dim: one.dim + 4]
        torch.testing.assert_close(q.norm(dim=-1), torch.full((B * C,), math.sqrt(3.0)))
        head_prior = head_prior - 0.5 * q.square().sum(-1)
    with torch.no_grad():
        torch.testing.assert_close(two(x2), one(one.initial(theta)) + head_prior, rtol=1e-5, atol=1e-3)


def test_flipped_start_mirrors_the_palm_in_depth(shipped):
    model, cfg = shipped["hand_mhentropy"]
    B, C = 2, 2
    batch = _batch(model, B, seed=2)
    with torch.no_grad():
        theta = model.hypotheses(batch, C, 1.0).params
        target = ModelTarget(model, batch, C, b=cfg.objective.b, sample_head=True)
        flip = torch.tensor([[False, True], [False, True]])
        joints = _joints(target.decode(target.initial(theta[:, :1].expand(B, C, -1), flip)))[:, 0].view(B, C, -1, 3)
    palm = list(model.spec.flip_keypoints)
    same, mirrored = joints[:, 0, palm], joints[:, 1, palm]
    scale = same.norm(dim=-1).max()
    # the palm's image stays (x, y) and its depth changes sign, up to the palm's small curvature
    assert (same[..., :2] - mirrored[..., :2]).abs().max() < 0.15 * scale
    assert (same[..., 2] + mirrored[..., 2]).abs().max() < 0.15 * scale
    assert (same[..., 2] - mirrored[..., 2]).abs().max() > 0.2 * scale


def test_bad_states_are_refused_with_the_expected_shape(shipped):
    model, cfg = shipped["hand_mhentropy"]
    target = ModelTarget(model, _batch(model, 2, seed=3), 4, b=cfg.objective.b)
    with pytest.raises(ValueError, match=r"\(B·C, D\) = \(8, 45\)"):
        target(torch.zeros(4, 45))
    with pytest.raises(ValueError, match="chains must be"):
        ModelTarget(model, _batch(model, 2, seed=3), 0, b=0.03)
    with pytest.raises(ValueError, match="not finite at some starting states"):
        hmc(lambda x: x.sum(-1) - math.inf, torch.zeros(1, 2, 3))


def test_flip_jump_is_the_palms_depth_flip_and_keeps_volume(shipped):
    """ModelTarget.flip_jump moves the sampled rotation to the flipped start's (diag(1, 1, -1) · R · S), or
    back with ``inverse``, by an orthogonal map of the quaternion: |q| and the other variables stay."""
    import roma

    model, cfg = shipped["hand_mhentropy"]
    B, C = 2, 3
    target = ModelTarget(model, _batch(model, B, seed=4), C, b=cfg.objective.b, sample_head=True)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(B * C, target.dim, generator=g, dtype=torch.float64).float()
    inverse = torch.tensor([False, True, False, True, False, True])
    y = target.flip_jump(x, inverse)
    at = target.flow_dim
    q, q2 = x[:, at: at + 4], y[:, at: at + 4]
    torch.testing.assert_close(q2.norm(dim=-1), q.norm(dim=-1))
    torch.testing.assert_close(torch.cat([y[:, :at], y[:, at + 4:]], 1), torch.cat([x[:, :at], x[:, at + 4:]], 1))
    R, R2 = (roma.unitquat_to_rotmat(v / v.norm(dim=-1, keepdim=True)) for v in (q, q2))
    torch.testing.assert_close(R2[~inverse], target._flip_matrix(R[~inverse]), atol=1e-5, rtol=0)
    torch.testing.assert_close(target._flip_matrix(R2[inverse]), R[inverse], atol=1e-5, rtol=0)
    torch.testing.assert_close(target.flip_jump(y, ~inverse), x, atol=1e-5, rtol=0)  # each is the other's inverse
    with pytest.raises(ValueError, match="sample_head=True"):
        ModelTarget(model, _batch(model, B, seed=4), C, b=cfg.objective.b).flip_jump(x[:, :at], inverse)
