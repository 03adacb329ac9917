"""The learned body-pose prior: a Gaussian mixture, checked against torch.distributions and a known mixture."""

from __future__ import annotations

import math

import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from mhe.body import pose_prior
from mhe.body.pose_prior import PoseGMM, fit_pose_gmm


def _random_gmm(K: int = 3, D: int = 5, seed: int = 0) -> PoseGMM:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(K, D, D, dtype=torch.float64, generator=g) * 0.3
    cov = A @ A.transpose(1, 2) + 0.1 * torch.eye(D, dtype=torch.float64)
    w = torch.rand(K, dtype=torch.float64, generator=g) + 0.2
    return PoseGMM(w / w.sum(), torch.randn(K, D, dtype=torch.float64, generator=g), torch.linalg.cholesky(cov))


def test_log_prob_equals_torch_distributions():
    gmm = _random_gmm()
    ref = MixtureSameFamily(Categorical(probs=gmm.log_weights.exp()),
                            MultivariateNormal(gmm.means, scale_tril=gmm.scale_tril))
    x = torch.randn(7, 4, 5, dtype=torch.float64)
    assert torch.allclose(gmm.log_prob(x), ref.log_prob(x), atol=1e-10)
    # float32 inputs give float32 values close to the float64 ones
    assert torch.allclose(gmm.log_prob(x.float()).double(), ref.log_prob(x), atol=1e-3)


def test_log_prob_gradient_matches_finite_differences():
    gmm = _random_gmm(seed=1)
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(gmm.log_prob(x), x)
    eps = 1e-6
    fd = torch.stack([(gmm.log_prob(x.detach() + eps * e) - gmm.log_prob(x.detach() - eps * e)) / (2 * eps)
                      for e in torch.eye(5, dtype=torch.float64)])
    assert torch.allclose(grad, fd, atol=1e-6)


def test_em_recovers_a_well_separated_mixture():
    truth = PoseGMM(torch.tensor([0.3, 0.7], dtype=torch.float64),
                    torch.tensor([[-3.0, 0.0, 1.0], [3.0, 1.0, -1.0]], dtype=torch.float64),
                    torch.linalg.cholesky(torch.diag_embed(torch.tensor([[0.5, 0.2, 0.3], [0.4, 0.6, 0.2]],
                                                                         dtype=torch.float64))))
    x = truth.sample(20000, generator=torch.Generator().manual_seed(0))
    fit = fit_pose_gmm(x, components=2, seed=0, variance_floor=1e-6)
    order = fit.means[:, 0].argsort()
    assert torch.allclose(fit.log_weights.exp()[order], torch.tensor([0.3, 0.7], dtype=torch.float64), atol=0.02)
    assert torch.allclose(fit.means[order], truth.means, atol=0.05)
    cov = fit.scale_tril @ fit.scale_tril.transpose(1, 2)
    true_cov = truth.scale_tril @ truth.scale_tril.transpose(1, 2)
    assert torch.allclose(cov[order], true_cov, atol=0.05)
    # the fitted mixture explains held-out data as well as the truth (per point, within 0.01 nats)
    held = truth.sample(5000, generator=torch.Generator().manual_seed(1))
    assert abs(float(fit.log_prob(held).mean() - truth.log_prob(held).mean())) < 0.01
    assert math.isfinite(float(fit.log_prob(torch.zeros(3, dtype=torch.float64))))


def test_an_em_step_is_the_textbook_one():
    """The blocked EM step (L⁻¹x for all components in one product, the second moments as one product, blocks of
    poses) against the textbook formulas written out with torch.distributions, over more than one block."""
    truth = _random_gmm(K=3, D=4, seed=2)
    x = truth.sample(pose_prior._EM_ROWS * 2 + 37, generator=torch.Generator().manual_seed(3))
    start = _random_gmm(K=3, D=4, seed=4)
    weights, means = start.log_weights.exp(), start.means
    cov = start.scale_tril @ start.scale_tril.transpose(1, 2)
    new_weights, new_means, new_cov, mean_ll = pose_prior._em_step(x, weights, means, cov, variance_floor=0.01)

    log_joint = MultivariateNormal(means, covariance_matrix=cov).log_prob(x[:, None, :]) + weights.log()  # (N, K)
    r = torch.softmax(log_joint, dim=1)
    nk = r.sum(0)
    expected_means = (r.T @ x) / nk[:, None]
    centred = x[None] - expected_means[:, None, :]  # (K, N, D)
    floor = 0.01 * torch.eye(4, dtype=torch.float64)
    expected_cov = torch.einsum("nk,knd,kne->kde", r, centred, centred) / nk[:, None, None] + floor
    assert torch.allclose(new_weights, nk / len(x), rtol=1e-12, atol=0)
    assert torch.allclose(new_means, expected_means, rtol=1e-12, atol=1e-14)
    assert torch.allclose(new_cov, expected_cov, rtol=1e-10, atol=1e-13)
    assert math.isclose(mean_ll, float(torch.logsumexp(log_joint, 1).mean()), rel_tol=1e-12)
