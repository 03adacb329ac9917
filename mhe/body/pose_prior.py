"""A learned body-pose prior: a Gaussian mixture over SMPL's 69 body-pose numbers, fitted on unpaired poses.

Joint limits say which poses a body *can* take; they say nothing about which poses people *do* take, and
from 2D keypoints alone that is what decides most of a hidden limb's depth. Methods trained without 3D
labels therefore add a pose prior learned from motion capture that is not paired with the training images
(SMPLify's mixture of Gaussians fitted on CMU mocap, ProHMR's and MHEntropy's pose discriminator trained
on mocap). :class:`PoseGMM` is that prior here: a mixture of K full-covariance Gaussians over the body pose
in axis-angle, fitted by expectation-maximisation (:func:`fit_pose_gmm`), whose log-density is the
differentiable log-prior term (:meth:`PoseGMM.log_prob`).

Which poses it is fitted on: with real data, a mocap collection (e.g. AMASS body poses as an ``(N, 69)``
array, :func:`fit_pose_gmm`). On the synthetic benchmark, :func:`benchmark_pose_gmm` fits it on poses drawn
from the benchmark's own pose generator (:meth:`mhe.body.body_limits.BodyLimits.sample`) with a seed no
split uses: unpaired poses of the same population, the benchmark's counterpart of a mocap library (an
idealised one: real mocap only approximates the test subjects' poses). No image, keypoint or label of a
training item is used.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from mhe.utils import atomic_torch_save, data_dir

__all__ = ["PoseGMM", "fit_pose_gmm", "benchmark_pose_gmm", "POSE_GMM_COMPONENTS", "POSE_GMM_SEED"]

POSE_GMM_COMPONENTS = 8  # as SMPLify's mocap prior
POSE_GMM_SEED = 20231002  # the draw of "mocap" poses: no split of the synthetic benchmark uses this seed
POSE_GMM_POSES = 20000
POSE_GMM_VERSION = 1
_VARIANCE_FLOOR = 1e-3  # rad²: every direction keeps at least ~0.03 rad of spread


class PoseGMM(nn.Module):
    """A Gaussian mixture over body poses ``(..., D)`` (D = 69 for SMPL): weights ``(K,)``, means ``(K, D)``
    and the Cholesky factors of the covariances ``(K, D, D)``, as buffers (saved with a model)."""

    log_weights: Tensor
    means: Tensor
    scale_tril: Tensor

    def __init__(self, weights: Tensor, means: Tensor, scale_tril: Tensor) -> None:
        super().__init__()
        K, D = means.shape
        if weights.shape != (K,) or scale_tril.shape != (K, D, D):
            raise ValueError(f"a mixture of {K} Gaussians in {D} dimensions needs weights ({K},) and scale_tril "
                             f"({K}, {D}, {D}), got {tuple(weights.shape)} and {tuple(scale_tril.shape)}")
        self.register_buffer("log_weights", weights.double().clamp_min(1e-300).log())
        self.register_buffer("means", means.double())
        self.register_buffer("scale_tril", scale_tril.double())

    def inverse_tril(self) -> Tensor:
        """``L⁻¹ (K, D, D)`` of every component (cached until the buffers change device or values)."""
        key = (self.scale_tril.data_ptr(), self.scale_tril.device, self.scale_tril._version)
        if getattr(self, "_inverse_key", None) != key:
            eye = torch.eye(self.dim, dtype=self.scale_tril.dtype, device=self.scale_tril.device)
            self._inverse = torch.linalg.solve_triangular(self.scale_tril, eye.expand_as(self.scale_tril), upper=False)
            self._inverse_key = key
        return self._inverse

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def component_log_prob(self, x: Tensor) -> Tensor:
        """``log N(x | μ_k, Σ_k)`` of each component: ``x (..., D)`` → ``(..., K)``, in ``x``'s dtype."""
        L = self.scale_tril.to(x.dtype)
        diff = x.unsqueeze(-2) - self.means.to(x.dtype)  # (..., K, D)
        # z = L⁻¹ (x - μ) per component, with L⁻¹ computed once (K, D, D): never a (..., K, D, D) tensor
        z = torch.einsum("...kd,ked->...ke", diff, self.inverse_tril().to(x.dtype))
        half_log_det = torch.diagonal(L, dim1=-2, dim2=-1).log().sum(-1)
        return -0.5 * z.square().sum(-1) - half_log_det - 0.5 * self.dim * math.log(2 * math.pi)

    def log_prob(self, x: Tensor) -> Tensor:
        """The mixture's log-density ``(...)`` of poses ``x (..., D)`` (differentiable in ``x``)."""
        return torch.logsumexp(self.component_log_prob(x) + self.log_weights.to(x.dtype), dim=-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` poses ``(n, D)`` float64 drawn from the mixture."""
        k = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, dtype=torch.float64, generator=generator)
        return self.means[k] + (self.scale_tril[k] @ eps.unsqueeze(-1)).squeeze(-1)


def fit_pose_gmm(poses: Tensor | np.ndarray, components: int = POSE_GMM_COMPONENTS, iterations: int = 100,
                 seed: int = 0, variance_floor: float = _VARIANCE_FLOOR) -> PoseGMM:
    """Fit a :class:`PoseGMM` to ``poses (N, D)`` by expectation-maximisation (float64).

    Started from ``components`` poses picked by k-means++ seeding (``seed``), each covariance floored at
    ``variance_floor`` on the diagonal so that no component collapses; stops after ``iterations`` steps or
    when the mean log-likelihood improves by less than 1e-6 per pose.
    """
    x = torch.as_tensor(poses, dtype=torch.float64)
    if x.dim() != 2 or x.shape[0] < components:
        raise ValueError(f"poses must be (N, D) with N >= components={components}, got {tuple(x.shape)}")
    N, D = x.shape
    g = torch.Generator().manual_seed(seed)
    centres = [x[torch.randint(N, (1,), generator=g)].squeeze(0)]
    for _ in range(components - 1):  # k-means++: far from the chosen centres, in proportion to distance²
        d2 = torch.cdist(x, torch.stack(centres)).square().min(1).values
        centres.append(x[torch.multinomial(d2 / d2.sum(), 1, generator=g)].squeeze(0))
    means = torch.stack(centres)
    cov = torch.cov(x.T).expand(components, D, D).clone() + variance_floor * torch.eye(D, dtype=torch.float64)
    weights = torch.full((components,), 1.0 / components, dtype=torch.float64)
    previous = -math.inf
    for _ in range(iterations):
        weights, means, cov, mean_ll = _em_step(x, weights, means, cov, variance_floor)
        if mean_ll - previous < 1e-6:
            break
        previous = mean_ll
    return PoseGMM(weights, means, torch.linalg.cholesky(cov))


_EM_ROWS = 256  # poses per block of an EM step: its (rows, K·D) temporaries stay in the CPU's cache


def _em_step(x: Tensor, weights: Tensor, means: Tensor, cov: Tensor,
             variance_floor: float) -> tuple[Tensor, Tensor, Tensor, float]:
    """One EM step of a K-component mixture on ``x (N, D)``: the new weights, means and covariances and the
    mean log-likelihood of ``x`` under the old ones.

    The same values as :meth:`PoseGMM.component_log_prob` followed by the textbook M-step, computed with two
    matrix products per block of :data:`_EM_ROWS` poses: ``L⁻¹x`` for all K components at once (one
    ``(D, K·D)`` matrix; ``L⁻¹μ`` is subtracted after) and the K weighted second moments ``Σ r xxᵀ`` as one
    ``xᵀ (r ⊗ x)``. No ``(N, K, D)`` tensor is ever made.
    """
    N, D = x.shape
    K = means.shape[0]
    L = torch.linalg.cholesky(cov)
    eye = torch.eye(D, dtype=x.dtype)
    inverse = torch.linalg.solve_triangular(L, eye.expand_as(L), upper=False)  # (K, D, D)
    # projection[d, k·D + e] = L⁻¹_k[e, d], so that (x @ projection)[n, k·D + e] = (L⁻¹_k x_n)[e]
    projection = inverse.permute(2, 0, 1).reshape(D, K * D)
    offsets = (inverse @ means.unsqueeze(-1)).squeeze(-1)  # L⁻¹μ (K, D)
    constant = (weights.clamp_min(1e-300).log() - torch.diagonal(L, dim1=-2, dim2=-1).log().sum(-1)
                - 0.5 * D * math.log(2 * math.pi))
    nk = torch.zeros(K, dtype=x.dtype)
    first = torch.zeros(K, D, dtype=x.dtype)  # Σ r x
    second = torch.zeros(D, K * D, dtype=x.dtype)  # Σ r xxᵀ, as [d, k·D + e]
    log_likelihood = torch.zeros((), dtype=x.dtype)
    for start in range(0, N, _EM_ROWS):
        rows = x[start:start + _EM_ROWS]
        z = (rows @ projection).view(-1, K, D).sub_(offsets)  # L⁻¹(x - μ) per component
        log_r = z.mul_(z).sum(-1).mul_(-0.5).add_(constant)  # (rows, K): log w_k N(x | μ_k, Σ_k)
        total = torch.logsumexp(log_r, dim=1)
        r = log_r.sub_(total[:, None]).exp_()
        nk += r.sum(0)
        first.addmm_(r.T, rows)
        second.addmm_(rows.T, (r[:, :, None] * rows[:, None, :]).view(-1, K * D))
        log_likelihood += total.sum()
    nk = nk.clamp_min(1e-9)
    means = first / nk[:, None]
    second = second.view(D, K, D).transpose(0, 1) / nk[:, None, None]  # E[x xᵀ] per component
    cov = second - means[:, :, None] * means[:, None, :] + variance_floor * eye
    return nk / N, means, cov, float(log_likelihood) / N


def benchmark_pose_gmm(cache: bool = True) -> PoseGMM:
    """The pose prior of the synthetic body benchmark: :func:`fit_pose_gmm` on :data:`POSE_GMM_POSES` poses
    of its pose generator drawn with :data:`POSE_GMM_SEED` (see the module docstring), cached on disk in
    ``data/cache/`` (a few seconds to refit)."""
    path = data_dir() / "cache" / f"body_pose_gmm_k{POSE_GMM_COMPONENTS}_s{POSE_GMM_SEED}_v{POSE_GMM_VERSION}.pt"
    if cache and path.is_file():
        try:
            state = torch.load(path, weights_only=True)
            return PoseGMM(state["log_weights"].exp(), state["means"], state["scale_tril"])
        except Exception:  # a broken cache file is refitted
            pass
    from mhe.body.body_limits import BodyLimits

    poses = BodyLimits(torch.float64).sample(np.random.default_rng(POSE_GMM_SEED), POSE_GMM_POSES)
    gmm = fit_pose_gmm(poses)
    if cache:
        try:
            atomic_torch_save({k: v for k, v in gmm.state_dict().items()}, path)
        except OSError:
            pass
    return gmm
