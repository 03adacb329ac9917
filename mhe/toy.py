"""Toy problems that make the MHEntropy argument visible in seconds: 2D targets and the two-link arm.

*2D targets* are unnormalised log-densities (a ring of Gaussians, two moons, a banana) that a flow
can fit by reverse KL (with or without the entropy term) or by NLL on samples drawn from them
(:func:`fit_target`, the training loop notebook 01 writes out); :func:`count_ring_modes` counts how many
of the ring's Gaussians a fit keeps.
*The two-link arm* is the paper's toy: a planar arm rooted at the origin with unit links, angles
(α1, α2). α1 is the first link's angle from +y (positive towards +x), α2 the second link's angle
relative to the first; elbow = (sin α1, cos α1), tip = elbow + (sin(α1+α2), cos(α1+α2)). Only the
two keypoints' heights are observed, so one observation has four exact solutions (elbow left /
right × tip bent either way), each with the same posterior mass. :class:`ArmModel` implements the
model protocol of :mod:`mhe.objectives`, so the arm trains with exactly the objectives the hand
and body models use; :func:`fit_arm` trains one and :func:`mode_coverage` scores it.

Training aids of :func:`fit_arm` (documented there and in :class:`ArmOptions`, explained for students in
``docs/toy_training.md``; none changes the reverse-KL objective): a spline-coupling flow over scaled absolute link angles that spans the prior
box from the start; tempering of the likelihood scale b; reparameterised (pathwise) gradients
first, then a *polish* phase of score-function gradients at the final b (which even out the mode
masses that pathwise gradients barely see); a smaller, cosine-annealed learning rate in the polish
phase and an exponential moving average of the weights.

How close a fit comes to the exact posterior: :func:`posterior_match` compares its samples with
samples of :class:`ExactArmPosterior` on held-out observations (coverage within a radius of the
exact solutions, mass per solution, solutions hit), and :func:`write_posterior_match` writes the
table that notebook 01 commits as ``figures/01_posterior_match.csv``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from mhe.flows import ConditionalFlow, fit_nll
from mhe.objectives import Hypotheses, box_prior, get_objective, laplace_log_likelihood
from mhe.utils import atomic_write_bytes, figures_dir, seed_everything

# -- 2D targets ---------------------------------------------------------------------------------


#: The ring target's shape: RING_MODES Gaussians of std RING_SIGMA on a circle of radius RING_RADIUS.
RING_MODES, RING_RADIUS, RING_SIGMA = 8, 2.0, 0.25


def ring_centres(modes: int = RING_MODES, radius: float = RING_RADIUS) -> Tensor:
    """The centres (modes, 2) of the ring target's Gaussians, the first on the +x axis, counter-clockwise."""
    angles = torch.arange(modes) * (2 * math.pi / modes)
    return radius * torch.stack([angles.cos(), angles.sin()], dim=-1)


def ring_log_density(x: Tensor, modes: int = RING_MODES, radius: float = RING_RADIUS,
                     sigma: float = RING_SIGMA) -> Tensor:
    """Unnormalised log-density of ``modes`` Gaussians on a circle: x (..., 2) -> (...)."""
    centres = ring_centres(modes, radius).to(x)  # (M, 2)
    sq = (x.unsqueeze(-2) - centres).square().sum(-1)
    return torch.logsumexp(-sq / (2 * sigma**2), dim=-1)


def moons_log_density(x: Tensor, sigma: float = 0.1) -> Tensor:
    """Unnormalised log-density of two interleaved half-circles (Gaussian in the distance to each
    arc, radius 1): x (..., 2) -> (...)."""
    logs = []
    for centre, sign in (((-0.5, -0.25), 1.0), ((0.5, 0.25), -1.0)):
        rel = x - torch.tensor(centre, dtype=x.dtype, device=x.device)
        # Distance to the upper (sign=+1) or lower (sign=-1) unit half-circle: radial distance on
        # the arc's side, distance to the nearer end point beyond it.
        radial = (rel.norm(dim=-1) - 1).abs()
        ends = torch.stack([(rel - rel.new_tensor([1.0, 0.0])).norm(dim=-1),
                            (rel - rel.new_tensor([-1.0, 0.0])).norm(dim=-1)], -1).min(-1).values
        dist = torch.where(sign * rel[..., 1] >= 0, radial, ends)
        logs.append(-dist.square() / (2 * sigma**2))
    return torch.logsumexp(torch.stack(logs, -1), dim=-1)


def banana_log_density(x: Tensor, curvature: float = 0.5, s1: float = 1.0, s2: float = 0.2) -> Tensor:
    """Unnormalised log-density of x1 ~ N(0, s1²), x2 | x1 ~ N(curvature·x1² - 1, s2²): (..., 2) -> (...)."""
    x1, x2 = x[..., 0], x[..., 1]
    return -(x1 / s1).square() / 2 - ((x2 - curvature * x1.square() + 1) / s2).square() / 2


#: Name -> unnormalised log-density (..., 2) -> (...), each with maximum ≈ 0 inside ``TARGET_BOX``.
TARGETS: dict[str, Callable[[Tensor], Tensor]] = {
    "ring": ring_log_density,
    "moons": moons_log_density,
    "banana": banana_log_density,
}
#: Half-width of the square that holds (almost) all of each target's mass.
TARGET_BOX = 3.5


def density_grid(log_density: Callable[[Tensor], Tensor], extent: float = TARGET_BOX, n: int = 160) -> Tensor:
    """A log-density evaluated on an n × n grid over [-extent, extent]², indexed [x, y]: (n, n)."""
    axis = torch.linspace(-extent, extent, n)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1)
    with torch.no_grad():
        return log_density(grid.reshape(-1, 2)).reshape(n, n)


def target_log_density(name: str) -> Callable[[Tensor], Tensor]:
    """The target called ``name`` (a key of :data:`TARGETS`)."""
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; choose one of {sorted(TARGETS)}")
    return TARGETS[name]


def sample_target(name: str, n: int, generator: torch.Generator | None = None) -> Tensor:
    """Exact samples (n, 2) from a target by rejection from the uniform box [-TARGET_BOX, TARGET_BOX]²."""
    log_p = target_log_density(name)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    # Each target's log-density is at most log(1 + small overlap); 0.1 of headroom keeps the
    # acceptance probability <= 1, which is all rejection sampling needs to be exact.
    log_bound = 0.1
    out: list[Tensor] = []
    count = 0
    while count < n:
        x = (torch.rand(8 * n + 64, 2, generator=generator) * 2 - 1) * TARGET_BOX
        u = torch.rand(x.shape[0], generator=generator)
        keep = x[u.log() < log_p(x) - log_bound]
        out.append(keep)
        count += keep.shape[0]
    return torch.cat(out)[:n]


def fit_target(
    name: str,
    objective: str = "reverse_kl",
    steps: int = 400,
    seed: int = 0,
    num_samples: int = 128,
    num_data: int = 64,
    lr: float = 5e-3,
    transforms: int = 4,
    hidden: tuple[int, ...] = (32, 32),
    anneal: float = 0.5,
) -> ConditionalFlow:
    """Fit an unconditional 2D spline flow to target ``name``; the loop notebook 01 writes out by hand.

    ``objective``: ``"reverse_kl"`` (E_q[log q - log p̃]: the entropy term keeps q spread over
    every region p̃ supports), ``"no_entropy"`` (E_q[-log p̃]: collapses onto the maximum, the
    MAP) or ``"nll"`` (maximum likelihood on ``num_data`` exact samples of the target).

    The sampling objectives temper the target: the step minimises β·E_q[-log p̃] + E_q[log q] with β
    rising linearly from 0.05 to 1 over the first ``anneal`` fraction of the steps (``anneal=0``: β = 1
    throughout, plain reverse KL), so that q spreads before the modes separate. Samples come in
    antithetic pairs; Adam's learning rate is cosine-annealed to 0.

    Returns the trained flow (D = 2, unconditional) in eval mode, with ``.history``: per step a dict of
    ``target`` (E_q[-log p̃], the estimate), ``entropy`` (-E_q[log q]), ``loss`` and ``beta``
    (empty for ``nll``, whose losses are in ``.nll_history``).
    """
    if objective not in ("reverse_kl", "no_entropy", "nll"):
        raise ValueError(f"objective must be 'reverse_kl', 'no_entropy' or 'nll', got {objective!r}")
    if not 0.0 <= anneal <= 1.0:
        raise ValueError(f"anneal must be in [0, 1], got {anneal}")
    log_p = target_log_density(name)
    generator = seed_everything(seed)
    flow = ConditionalFlow(2, 0, transforms=transforms, hidden=hidden, kind="nsf_coupling", bins=16)
    flow.history = []
    if objective == "nll":
        data = sample_target(name, num_data, generator)
        flow.nll_history = fit_nll(flow, data, steps=steps, batch_size=num_data, lr=lr, generator=generator)
        return flow.eval()
    w_ent = 1.0 if objective == "reverse_kl" else 0.0
    optimiser = torch.optim.Adam(flow.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    for step in range(steps):
        beta = min(0.05 + 0.95 * step / (anneal * steps), 1.0) if anneal > 0 else 1.0
        x, log_q = flow.rsample_and_log_prob(None, num_samples, batch_size=1, antithetic=True)
        target = -log_p(x).mean()
        neg_entropy = log_q.mean()
        loss = beta * target + w_ent * neg_entropy
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        flow.history.append({"target": target.item(), "entropy": -neg_entropy.item(), "loss": loss.item(),
                             "beta": beta})
    return flow.eval()


def count_modes(samples: Tensor, centres: Tensor, radius: float, min_fraction: float = 0.02) -> int:
    """How many of the ``centres`` (M, D) hold at least ``min_fraction`` of the ``samples`` (N, D).

    A sample belongs to its nearest centre when it lies within ``radius`` of it (as in
    :func:`mode_coverage`); a centre is *kept* when at least ``min_fraction`` of all samples belong to it.
    Returns an integer in 0..M.
    """
    if samples.dim() != 2 or centres.dim() != 2 or samples.shape[-1] != centres.shape[-1]:
        raise ValueError(f"samples must be (N, D) and centres (M, D); got {tuple(samples.shape)} and "
                         f"{tuple(centres.shape)}")
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
    mass = mode_coverage(samples[None], centres[None].to(samples), radius)[0]
    return int((mass >= min_fraction).sum())


def count_ring_modes(samples: Tensor, min_fraction: float = 0.02) -> int:
    """How many of the ring target's 8 Gaussians hold at least ``min_fraction`` of ``samples`` (N, 2).

    A sample belongs to a Gaussian when it lies within 3 standard deviations of its centre (the
    Gaussians are 1.5 apart, so no sample belongs to two). A fair share is 1/8 = 0.125 each; the default
    threshold calls a Gaussian *lost* when it holds under a sixth of that.
    """
    return count_modes(samples, ring_centres(), 3 * RING_SIGMA, min_fraction)


# -- the two-link arm ---------------------------------------------------------------------------


class TwoLinkArm:
    """The planar two-link arm (unit links) and its exact inverse from keypoint heights.

    Angles ``(..., 2)`` are (α1, α2); the prior support is α1 ∈ [-π/2, π/2], α2 ∈ [-π, π].
    """

    #: Prior box half-widths of (α1, α2).
    HALF_WIDTH = (math.pi / 2, math.pi)

    @staticmethod
    def _check(angles: Tensor, name: str = "angles") -> None:
        if angles.shape[-1:] != (2,):
            raise ValueError(f"{name} must have shape (..., 2), got {tuple(angles.shape)}")

    def keypoints(self, angles: Tensor) -> Tensor:
        """Elbow and tip positions (..., 2, 2) (keypoint, xy) for angles (..., 2)."""
        self._check(angles)
        a1, a12 = angles[..., 0], angles[..., 0] + angles[..., 1]
        elbow = torch.stack([a1.sin(), a1.cos()], -1)
        tip = elbow + torch.stack([a12.sin(), a12.cos()], -1)
        return torch.stack([elbow, tip], -2)

    def heights(self, angles: Tensor) -> Tensor:
        """The observation (elbow_y, tip_y): (..., 2) for angles (..., 2)."""
        self._check(angles)
        a1 = angles[..., 0]
        return torch.stack([a1.cos(), a1.cos() + (a1 + angles[..., 1]).cos()], -1)

    def solutions(self, heights: Tensor) -> Tensor:
        """The four exact solutions (..., 4, 2) for heights (..., 2), inside the prior support.

        Order: (α1 ≥ 0, tip +), (α1 ≥ 0, tip -), (α1 ≤ 0, tip +), (α1 ≤ 0, tip -), where "tip ±" is
        the sign of the tip link's absolute angle α1 + α2. Heights outside the reachable set
        (elbow_y ∈ [0, 1], tip_y - elbow_y ∈ [-1, 1]) are clamped onto it, so noisy observations
        get the solutions of the nearest reachable heights.
        """
        self._check(heights, "heights")
        # elbow_y = cos α1 with α1 ∈ [-π/2, π/2]  =>  α1 = ±acos(elbow_y).
        a1 = heights[..., 0].clamp(0.0, 1.0).acos()
        # tip_y - elbow_y = cos(α1 + α2)  =>  α1 + α2 = ±acos(·).
        a12 = (heights[..., 1] - heights[..., 0]).clamp(-1.0, 1.0).acos()
        sols = []
        for s1 in (1.0, -1.0):
            for s12 in (1.0, -1.0):
                alpha1 = s1 * a1
                alpha2 = s12 * a12 - alpha1
                # Wrap α2 into [-π, π] (it is defined modulo 2π).
                alpha2 = torch.atan2(alpha2.sin(), alpha2.cos())
                sols.append(torch.stack([alpha1, alpha2], -1))
        return torch.stack(sols, -2)

    def log_prior(self, angles: Tensor, weight: float = 300.0) -> Tensor:
        """Soft box log-prior (...,) on α1 ∈ [-π/2, π/2], α2 ∈ [-π, π] for angles (..., 2)."""
        self._check(angles)
        return box_prior(angles, angles.new_tensor(self.HALF_WIDTH), weight)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n angle pairs (n, 2) uniform on the prior box."""
        u = torch.rand(n, 2, generator=generator) * 2 - 1
        return u * torch.tensor(self.HALF_WIDTH)


def arm_batch(heights: Tensor, angles: Tensor | None = None) -> dict[str, Tensor]:
    """An objectives batch from heights (B, 2): ``obs`` (B, 2, 1), ``visible`` (B, 2) all True,
    and ``params`` (B, 2) when ground-truth ``angles`` are given."""
    if heights.dim() != 2 or heights.shape[-1] != 2:
        raise ValueError(f"heights must have shape (B, 2), got {tuple(heights.shape)}")
    batch = {
        "obs": heights.unsqueeze(-1),
        "visible": torch.ones(heights.shape, dtype=torch.bool, device=heights.device),
    }
    if angles is not None:
        batch["params"] = angles
    return batch


class ArmModel(nn.Module):
    """A conditional flow q(α | heights) with the two-link arm as its "body model".

    Implements the :mod:`mhe.objectives` model protocol: the flow's samples are the angles
    ``params (B, S, 2)``, ``pred_obs`` are their heights ``(B, S, 2, 1)``, ``log_prior`` the soft
    box, ``extras["keypoints"]`` the elbow and tip ``(B, S, 2, 2)``.

    The flow works in scaled coordinates y with α = M y, a fixed linear map: with ``absolute``
    the flow's second coordinate is the tip link's absolute angle α1 + α2 (there the four
    solutions are the product (±acos h1) × (±acos(h2 - h1)), one sign per coordinate), and
    ``scale`` stretches N(0, I) over the prior box so that the untrained flow already reaches
    every mode. log q(α) = log q_y(y) - log|det M|, exactly.
    """

    def __init__(
        self,
        transforms: int = 2,
        hidden: tuple[int, ...] = (64, 64),
        kind: str = "nsf_coupling",
        prior_weight: float = 300.0,
        bound: float = 5.0,
        absolute: bool = True,
        bins: int = 16,
        scale: tuple[float, float] = (1.0, 2.0),
        antithetic: bool = True,
    ) -> None:
        super().__init__()
        self.arm = TwoLinkArm()
        self.prior_weight = prior_weight
        self.antithetic = antithetic
        self.flow = ConditionalFlow(2, 2, transforms=transforms, hidden=hidden, kind=kind, bound=bound, bins=bins)
        s1, s2 = scale
        # α1 = s1·y1;  α2 = s2·y2 - s1·y1 (absolute) or s2·y2 (relative).
        mix = torch.tensor([[s1, 0.0], [-s1 if absolute else 0.0, s2]])
        self.register_buffer("mix", mix)
        self.register_buffer("mix_inv", torch.linalg.inv(mix))
        self.log_det = math.log(abs(s1 * s2))

    def _context(self, batch: dict) -> Tensor:
        obs = batch["obs"]
        if obs.dim() != 3 or obs.shape[1:] != (2, 1):
            raise ValueError(f"arm obs must have shape (B, 2, 1), got {tuple(obs.shape)}")
        return obs[..., 0]

    def _hypotheses(self, y: Tensor, log_q_y: Tensor) -> Hypotheses:
        angles = y @ self.mix.T
        return Hypotheses(
            params=angles,
            log_q=log_q_y - self.log_det,
            pred_obs=self.arm.heights(angles).unsqueeze(-1),
            log_prior=self.arm.log_prior(angles, self.prior_weight),
            extras={"keypoints": self.arm.keypoints(angles)},
        )

    def hypotheses(self, batch: dict, num_samples: int, temperature: float = 1.0) -> Hypotheses:
        """S reparameterised hypotheses per observation (see class docstring for shapes)."""
        y, log_q = self.flow.rsample_and_log_prob(
            self._context(batch), num_samples, temperature, antithetic=self.antithetic
        )
        return self._hypotheses(y, log_q)

    def mode(self, batch: dict) -> Hypotheses:
        """The zero-noise hypothesis (S = 1)."""
        y, log_q = self.flow.rsample_and_log_prob(self._context(batch), 1, temperature=0.0)
        return self._hypotheses(y, log_q)

    def log_prob(self, batch: dict, params: Tensor) -> Tensor:
        """log q(params | heights): (B,) for params (B, 2), or (B, S) for params (B, S, 2)."""
        return self.flow.log_prob(params @ self.mix_inv.T, self._context(batch)) - self.log_det

    @torch.no_grad()
    def sample(self, heights: Tensor, num_samples: int, temperature: float = 1.0) -> Tensor:
        """Angles (B, S, 2) for heights (B, 2)."""
        y = self.flow.sample(arm_batch(heights)["obs"][..., 0], num_samples, temperature)
        return y @ self.mix.T


ARM_OBJECTIVES = ("mhentropy", "no_entropy", "no_reconstruction", "no_prior", "nll")

#: Term weights (w_rec, w_prior, w_ent) of the sampling objectives, as in :data:`mhe.objectives.OBJECTIVES`.
ARM_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "mhentropy": (1.0, 1.0, 1.0),
    "no_entropy": (1.0, 1.0, 0.0),
    "no_reconstruction": (0.0, 1.0, 1.0),
    "no_prior": (1.0, 0.0, 1.0),
}


@dataclass
class ArmOptions:
    """Training options of :func:`fit_arm` (every field can be passed as a keyword).

    The sampling objectives train in two phases, each with its own Adam and cosine-annealed
    learning rate, on the same reverse KL:

    1. *pathwise* (the first ``1 - polish`` of the steps): reparameterised gradients, clipped to
       norm ``clip``, at learning rate ``lr``; during the first ``anneal`` of all steps the Laplace
       scale decays geometrically from ``b_start`` to ``b`` (tempering), then stays at ``b``;
    2. *polish* (the last ``polish`` of the steps, at ``b``): score-function gradients
       (:func:`score_function_loss`), unclipped, at learning rate ``lr_polish``. Objectives without
       the entropy term (``no_entropy``) skip it and train with pathwise gradients throughout.

    With the defaults the pathwise phase is exactly the tempering. See :func:`fit_arm` for why.
    The defaults were chosen on held-out observations (notebook 01,
    ``benchmarks/bench_toy_posterior.py``); a fit takes about half a minute on one CPU thread. 2000 steps
    gave the same picture (seed 0: coverage 0.80 against 0.79, largest mass gap 0.024 against 0.031), a
    third slower; the aids are explained in ``docs/toy_training.md``.
    """

    steps: int = 1500  # optimiser steps (both phases together)
    batch_size: int = 32  # observations per step (NLL: batch_size × num_samples annotated pairs)
    num_samples: int = 16  # hypotheses S per observation (sampling objectives)
    lr: float = 5e-3  # Adam learning rate of the pathwise phase and of NLL (cosine-annealed to 0)
    clip: float = 10.0  # gradient-norm clip of pathwise and NLL steps (score-function steps are not clipped)
    anneal: float = 0.4  # fraction of all steps over which b decays from b_start to b (tempering)
    b_start: float = 1.0  # initial Laplace scale of the tempering (a nearly flat likelihood)
    polish: float = 0.6  # fraction of the steps, at the end, with score-function gradients (skipped without entropy)
    lr_polish: float = 5e-4  # Adam learning rate of the polish phase (cosine-annealed to 0)
    b: float = 0.05  # Laplace scale of the height likelihood
    noise: float = 0.01  # std of the Gaussian noise on observed heights
    prior_weight: float = 300.0  # weight of the soft box prior
    transforms: int = 4  # coupling layers (each angle transformed twice, conditioned on the other)
    hidden: tuple[int, ...] = (64, 64)  # hyper-network widths
    kind: str = "nsf_coupling"  # flow kind (see mhe.flows)
    bins: int = 16  # spline bins (nsf_coupling)
    bound: float = 5.0  # splines act on [-bound, bound] in the flow's coordinates
    absolute: bool = True  # flow over absolute link angles (α1, α1 + α2) instead of (α1, α2)
    scale: tuple[float, float] = (1.0, 2.0)  # flow coordinates × scale = angles: N(0, I) spans the box
    antithetic: bool = True  # pathwise samples in antithetic pairs (z, -z)
    ema: float = 0.98  # decay of the exponential moving average of the weights (0 = off)
    n_train: int = 10_000  # NLL: size of the annotated training set
    bias: float = 0.0  # NLL: probability that an elbow-left annotation is flipped to its twin


def observe(angles: Tensor, noise: float, generator: torch.Generator | None = None) -> Tensor:
    """Noisy heights (B, 2) of angles (B, 2)."""
    heights = TwoLinkArm().heights(angles)
    return heights + noise * torch.randn(heights.shape, generator=generator)


def score_function_loss(
    model: ArmModel,
    batch: dict,
    num_samples: int = 16,
    b: float = 0.05,
    w_rec: float = 1.0,
    w_prior: float = 1.0,
    w_ent: float = 1.0,
) -> tuple[Tensor, dict[str, float]]:
    """The MHEntropy objective with a score-function (REINFORCE) gradient instead of a pathwise one.

    The objective is the same as :func:`mhe.objectives.mhentropy`: the mean over B, S of the
    per-hypothesis cost c(θ) = -w_rec·log p(obs|θ) - w_prior·log p(θ) + w_ent·log q(θ), i.e.
    KL(q || p(θ | obs)) up to a constant for unit weights. Its gradient is estimated as

        ∇ E_q[c] = E_q[(c(θ) - c̄) ∇ log q(θ)],   θ drawn without gradient,

    where c̄ is the leave-one-out mean of the other S - 1 hypotheses of the same observation (a
    baseline independent of θ, so the estimate stays unbiased; the term E_q[∇ log q] that the
    entropy adds has expectation zero and is dropped). The hypotheses are i.i.d. (no antithetic
    pairs, whose partner would make the baseline depend on θ).

    Returns:
        a surrogate whose gradient is that estimate (its value is not the objective), and terms as
        in :func:`mhe.objectives.mhentropy`, whose ``loss`` is the objective's value.
    """
    if num_samples < 2:
        raise ValueError(f"the score-function estimator needs num_samples >= 2, got {num_samples}")
    with torch.no_grad():
        y, log_q = model.flow.rsample_and_log_prob(model._context(batch), num_samples, antithetic=False)
        hyp = model._hypotheses(y, log_q)
        loglik = laplace_log_likelihood(hyp.pred_obs, batch["obs"], batch["visible"], b)
        cost = -w_rec * loglik - w_prior * hyp.log_prior + w_ent * hyp.log_q  # (B, S)
        baseline = (cost.sum(1, keepdim=True) - cost) / (num_samples - 1)
    surrogate = ((cost - baseline) * model.log_prob(batch, hyp.params)).mean()
    terms = {
        "reconstruction": -loglik.mean().item(),
        "prior": -hyp.log_prior.mean().item(),
        "entropy": -hyp.log_q.mean().item(),
        "loss": cost.mean().item(),
    }
    return surrogate, terms


def fit_arm(objective: str, steps: int | None = None, seed: int = 0, **options) -> ArmModel:
    """Train an :class:`ArmModel` with ``objective`` and return it in eval mode.

    Args:
        objective: one of ``"mhentropy"``, ``"no_entropy"``, ``"no_reconstruction"``,
            ``"no_prior"`` (observations only) or ``"nll"`` (one ground-truth angle pair per
            observation, from a fixed training set of ``n_train`` pairs; ``bias`` ∈ [0, 1] is the
            probability that an elbow-left annotation is replaced by its elbow-right twin, which
            has the same heights, e.g. an annotator who always picks one side).
        steps: optimiser steps (default :attr:`ArmOptions.steps`).
        seed: seeds the flow's initialisation, the data and the samples.
        options: any :class:`ArmOptions` field.

    The sampling objectives see fresh noisy observations of prior-uniform poses every step. Every
    step minimises the same reverse KL (likelihood + prior + entropy); the training aids only
    change the path to its minimum and how its gradient is estimated:

    - **Tempering** (the first ``anneal`` of the steps): the likelihood scale decays from
      ``b_start`` (nearly flat) to ``b``, so the flow first spreads over the prior and the four
      modes then separate out of it; without it reverse KL keeps whichever modes it meets first.
    - **Pathwise gradients first** (the first ``1 - polish`` of the steps; by default exactly the
      tempering): reparameterised samples, the estimator of the hands and bodies, place and shape
      each mode fast.
    - **Score-function gradients last** (the ``polish`` phase, :func:`score_function_loss`): a
      pathwise gradient only learns *how much* mass each mode gets from the rare samples that
      fall between the modes (inside a mode, log q - log p shifts by a constant when a mode has
      too much mass, and the gradient of a constant is zero). Those samples carry large
      gradients that clipping and Adam's normalisation cut short, so with pathwise gradients
      alone the mode masses drift while the KL barely changes (a 0.35 / 0.15 split of two
      equally likely modes costs 0.04 nats). The score-function estimator sees the excess mass
      on every sample of the heavy mode (its cost is higher) and evens the masses out; it is
      noisier for shapes, which the pathwise phase has already fitted. Without the entropy term
      (``no_entropy``) there is no polish phase: q collapses to a point, where the score-function
      estimator degenerates (∇ log q grows without bound as q narrows) and would push the point
      off its solution, so that ablation trains with pathwise gradients for all its steps.
    - A lower, cosine-annealed learning rate in the polish phase and an exponential moving
      average of the weights (``ema``) settle the final weights.

    ``nll`` trains with Adam at ``lr`` (cosine-annealed), clipped, for ``steps`` steps. The model gets
    ``.options`` (the :class:`ArmOptions`), ``.history`` (the objective's value per step) and
    ``.train_seconds``.
    """
    if objective not in ARM_OBJECTIVES:
        raise ValueError(
            f"unknown arm objective {objective!r}; choose one of {', '.join(ARM_OBJECTIVES)}"
        )
    unknown = set(options) - set(ArmOptions.__dataclass_fields__)
    if unknown:
        raise TypeError(
            f"unknown fit_arm options {sorted(unknown)}; valid: {sorted(ArmOptions.__dataclass_fields__)}"
        )
    opts = ArmOptions(**options)
    if steps is not None:
        opts.steps = steps
    if opts.steps < 1:
        raise ValueError(f"steps must be >= 1, got {opts.steps}")
    if not 0.0 <= opts.bias <= 1.0:
        raise ValueError(f"bias must be in [0, 1], got {opts.bias}")
    if not 0.0 <= opts.anneal <= 1.0:
        raise ValueError(f"anneal must be in [0, 1], got {opts.anneal}")
    if not 0.0 <= opts.polish <= 1.0 or opts.anneal + opts.polish > 1.0:
        raise ValueError(
            f"polish must be in [0, 1] with anneal + polish <= 1 (tempering happens before the polish "
            f"phase), got anneal={opts.anneal}, polish={opts.polish}"
        )
    generator = seed_everything(seed)
    model = ArmModel(
        opts.transforms, opts.hidden, opts.kind, opts.prior_weight, opts.bound, opts.absolute,
        opts.bins, opts.scale, opts.antithetic,
    )
    arm = model.arm
    history: list[float] = []
    ema = [p.detach().clone() for p in model.parameters()] if opts.ema > 0 else None

    def update(optimiser: torch.optim.Optimizer, loss: Tensor, clip: float | None) -> None:
        optimiser.zero_grad()
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimiser.step()
        if ema is not None:
            with torch.no_grad():
                for avg, p in zip(ema, model.parameters()):
                    avg.lerp_(p, 1 - opts.ema)

    start = time.perf_counter()
    model.train()
    if objective == "nll":
        train_angles = arm.sample_prior(opts.n_train, generator)
        flip = (train_angles[:, 0] < 0) & (torch.rand(opts.n_train, generator=generator) < opts.bias)
        train_angles = torch.where(flip[:, None], -train_angles, train_angles)
        train_heights = observe(train_angles, opts.noise, generator)
        loss_fn = get_objective("nll")
        optimiser = torch.optim.Adam(model.parameters(), lr=opts.lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, opts.steps)
        for _ in range(opts.steps):
            idx = torch.randint(opts.n_train, (opts.batch_size * opts.num_samples,), generator=generator)
            loss, terms = loss_fn(model, arm_batch(train_heights[idx], train_angles[idx]))
            update(optimiser, loss, opts.clip)
            schedule.step()
            history.append(terms["loss"])
    else:
        w_rec, w_prior, w_ent = ARM_WEIGHTS[objective]
        pathwise_fn = get_objective(objective)
        temper_steps = round(opts.anneal * opts.steps)
        # No polish without the entropy term: q collapses to a point, where score-function
        # gradients degenerate (∇ log q grows without bound as q narrows) and push the point off
        # its solution; pathwise gradients then train for all the steps.
        polish_steps = round(opts.polish * opts.steps) if w_ent > 0 else 0
        phases = (("pathwise", opts.steps - polish_steps, opts.lr), ("score", polish_steps, opts.lr_polish))
        step = 0
        for estimator, n, lr in phases:
            if n == 0:
                continue
            optimiser = torch.optim.Adam(model.parameters(), lr=lr)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, n)
            for _ in range(n):
                step += 1
                # Tempering: b decays geometrically from b_start to b over the first temper_steps.
                frac = min(step / temper_steps, 1.0) if temper_steps > 0 else 1.0
                b = opts.b_start ** (1 - frac) * opts.b ** frac
                heights = observe(arm.sample_prior(opts.batch_size, generator), opts.noise, generator)
                batch = arm_batch(heights)
                if estimator == "pathwise":
                    loss, terms = pathwise_fn(model, batch, num_samples=opts.num_samples, b=b)
                    update(optimiser, loss, opts.clip)
                else:
                    loss, terms = score_function_loss(
                        model, batch, opts.num_samples, b, w_rec=w_rec, w_prior=w_prior, w_ent=w_ent
                    )
                    update(optimiser, loss, None)
                schedule.step()
                history.append(terms["loss"])
    if ema is not None:
        with torch.no_grad():
            for avg, p in zip(ema, model.parameters()):
                p.copy_(avg)
    model.train_seconds = time.perf_counter() - start
    model.options = opts
    model.history = history
    return model.eval()


# -- evaluation -----------------------------------------------------------------------------------


def mode_coverage(samples: Tensor, modes: Tensor, radius: float) -> Tensor:
    """Per-mode mass: the fraction of samples whose nearest mode is m and lies within ``radius``.

    Args:
        samples: (B, S, 2) hypotheses (any dimension D works: (B, S, D)).
        modes: (B, M, D) mode locations.
        radius: Euclidean radius around each mode (> 0).

    Returns:
        (B, M) mass per mode; each row sums to at most 1 (samples near no mode count for none).
    """
    if samples.dim() != 3 or modes.dim() != 3 or samples.shape[0] != modes.shape[0] \
            or samples.shape[-1] != modes.shape[-1]:
        raise ValueError(
            f"samples must be (B, S, D) and modes (B, M, D) with equal B and D; got "
            f"{tuple(samples.shape)} and {tuple(modes.shape)}"
        )
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    dist = torch.cdist(samples, modes)  # (B, S, M)
    nearest = dist.min(-1)
    hit = nearest.values <= radius
    onehot = nn.functional.one_hot(nearest.indices, modes.shape[1]).to(samples.dtype)
    return (onehot * hit.unsqueeze(-1)).mean(1)


def held_out_arm_observations(
    n: int,
    seed: int = 1234,
    min_separation: float = 1.0,
    margin: float = 0.3,
) -> tuple[Tensor, Tensor]:
    """Noise-free observations with four well-separated solutions, for evaluation.

    Keeps random prior-box poses whose four solutions are pairwise at least ``min_separation``
    apart (radians, Euclidean in (α1, α2)) and at least ``margin`` inside the prior box.

    Returns:
        heights (n, 2) and their exact modes (n, 4, 2).
    """
    arm = TwoLinkArm()
    generator = torch.Generator().manual_seed(seed)
    kept_h, kept_m = [], []
    count = 0
    while count < n:
        heights = arm.heights(arm.sample_prior(4 * n + 16, generator))
        modes = arm.solutions(heights)
        pair = torch.cdist(modes, modes) + 1e9 * torch.eye(4)
        inside = (modes.abs() <= torch.tensor(arm.HALF_WIDTH) - margin).all(-1).all(-1)
        ok = (pair.amin((-1, -2)) >= min_separation) & inside
        kept_h.append(heights[ok])
        kept_m.append(modes[ok])
        count += int(ok.sum())
    return torch.cat(kept_h)[:n], torch.cat(kept_m)[:n]


def arm_coverage(
    model: ArmModel,
    heights: Tensor,
    modes: Tensor,
    num_samples: int = 200,
    radius: float = 0.3,
    min_mass: float = 0.05,
    temperature: float = 1.0,
) -> dict[str, float]:
    """Coverage of the exact modes by a model's samples, averaged over observations.

    Args:
        model: anything with ``sample(heights (B, 2), num_samples) -> (B, S, 2)``.
        heights: (B, 2) observations; modes: (B, 4, 2) their exact solutions.
        num_samples: S samples per observation; radius: see :func:`mode_coverage`;
        min_mass: a mode counts as hit when it holds at least this fraction of the samples.

    Returns:
        ``modes_hit`` (mean number of modes hit, out of 4), ``mass_0..mass_3`` (mean mass per
        mode), ``mass_in_band`` (fraction of (observation, mode) pairs whose mass is within
        0.25 ± 0.10), ``mass_near_modes`` (mean total mass within the radius), ``height_error``
        (mean absolute error of the samples' heights).
    """
    if heights.dim() != 2 or modes.dim() != 3 or modes.shape[0] != heights.shape[0]:
        raise ValueError(
            f"heights must be (B, 2) and modes (B, 4, 2) with the same B; got "
            f"{tuple(heights.shape)} and {tuple(modes.shape)}"
        )
    seed_everything(0)
    samples = model.sample(heights, num_samples, temperature=temperature)
    mass = mode_coverage(samples, modes, radius)
    err = (TwoLinkArm().heights(samples) - heights.unsqueeze(1)).abs().mean()
    out = {"modes_hit": (mass >= min_mass).sum(-1).float().mean().item()}
    for m in range(mass.shape[1]):
        out[f"mass_{m}"] = mass[:, m].mean().item()
    out["mass_in_band"] = ((mass - 0.25).abs() <= 0.10).float().mean().item()
    out["mass_near_modes"] = mass.sum(-1).mean().item()
    out["height_error"] = err.item()
    return out


#: Radius (rad) of the posterior-match statistics: a sample "lands on" a solution within it.
MATCH_RADIUS = 0.3
#: Name of the exact posterior's row in :func:`posterior_match`.
EXACT_NAME = "exact posterior"
#: Statistics of :func:`posterior_statistics` / :func:`posterior_match`, in CSV column order.
MATCH_COLUMNS = ("coverage", "mass_0", "mass_1", "mass_2", "mass_3", "solutions_hit", "max_mass_gap",
                 "train_seconds")


def posterior_statistics(
    samples: Tensor, modes: Tensor, radius: float = MATCH_RADIUS, min_samples: int = 1
) -> dict[str, float]:
    """How well samples reproduce a posterior concentrated on known solutions, averaged over observations.

    Distance: Euclidean in (α1, α2), as in :func:`mode_coverage` (no wrap-around; for
    :func:`held_out_arm_observations`, whose solutions lie ``margin`` >= ``radius`` inside the prior
    box, a sample inside the box is within ``radius`` of a solution with or without wrap-around).

    Args:
        samples: (B, S, 2) hypotheses; modes: (B, M, 2) the exact solutions of each observation.
        radius: a sample *lands on* its nearest solution when it lies within ``radius`` of it.
        min_samples: a solution is *hit* when at least this many of the S samples land on it.

    Returns:
        ``coverage``: fraction of all samples that land on some solution; ``mass_k``: fraction of
        all samples that land on solution k (so the masses sum to ``coverage``); ``solutions_hit``:
        mean number of solutions hit per observation (out of M). All means over the B observations.
    """
    if min_samples < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples}")
    mass = mode_coverage(samples, modes, radius)  # (B, M), checks shapes and radius
    counts = torch.round(mass * samples.shape[1])
    out = {"coverage": mass.sum(-1).mean().item()}
    for m in range(mass.shape[1]):
        out[f"mass_{m}"] = mass[:, m].mean().item()
    out["solutions_hit"] = (counts >= min_samples).sum(-1).float().mean().item()
    return out


def posterior_match(
    models: Mapping[str, object],
    heights: Tensor,
    modes: Tensor,
    num_samples: int = 200,
    radius: float = MATCH_RADIUS,
    min_samples: int = 1,
    exact: ExactArmPosterior | None = None,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Posterior-match statistics of fitted arms and of the exact posterior on the same observations.

    Args:
        models: name -> anything with ``sample(heights (B, 2), num_samples) -> (B, S, 2)`` (an
            :class:`ArmModel` from :func:`fit_arm`).
        heights: (B, 2) held-out observations; modes: (B, 4, 2) their exact solutions (see
            :func:`held_out_arm_observations`).
        num_samples: S samples per observation, from each model and from the exact posterior.
        radius, min_samples: see :func:`posterior_statistics`.
        exact: the reference posterior (default: :class:`ExactArmPosterior` at the likelihood
            scale ``b`` and prior weight of :class:`ArmOptions`, the ones the models were trained for).
        seed: seeds the sampling; each row draws from its own stream (``seed`` and the row's
            name), so a row does not depend on the other rows, and the global RNG state is restored.

    Returns:
        name -> :func:`posterior_statistics` plus ``max_mass_gap`` (max over solutions k of
        |mass_k - the exact posterior's mass_k|) and ``train_seconds`` (NaN where unknown), with
        the exact posterior first, under the name ``"exact posterior"``.
    """
    if heights.dim() != 2 or modes.dim() != 3 or modes.shape[0] != heights.shape[0]:
        raise ValueError(
            f"heights must be (B, 2) and modes (B, M, 2) with the same B; got "
            f"{tuple(heights.shape)} and {tuple(modes.shape)}"
        )
    if EXACT_NAME in models:
        raise ValueError(f"{EXACT_NAME!r} is the reference row's name; rename that model")
    if exact is None:
        exact = ExactArmPosterior(b=ArmOptions.b, prior_weight=ArmOptions.prior_weight)
    rows: dict[str, dict[str, float]] = {}
    with torch.random.fork_rng(devices=[]):
        for name, sampler in {EXACT_NAME: exact, **models}.items():
            torch.manual_seed(seed + zlib.crc32(name.encode()))
            with torch.no_grad():
                samples = sampler.sample(heights, num_samples)
            row = posterior_statistics(samples, modes, radius, min_samples)
            reference = rows.get(EXACT_NAME, row)
            row["max_mass_gap"] = max(abs(row[f"mass_{m}"] - reference[f"mass_{m}"]) for m in range(modes.shape[1]))
            row["train_seconds"] = float(getattr(sampler, "train_seconds", float("nan")))
            rows[name] = row
    return rows


def write_posterior_match(
    rows: Mapping[str, Mapping[str, float]], path: str | os.PathLike | None = None, digits: int = 3
) -> Path:
    """Write :func:`posterior_match`'s rows as a CSV (one row per arm, ``name`` first, empty where NaN).

    Default path: ``<figures>/01_posterior_match.csv`` (``$MHE_FIGURES_DIR`` redirects it, as for
    figures). Returns the path written.
    """
    path = figures_dir() / "01_posterior_match.csv" if path is None else Path(path)
    columns = [c for c in MATCH_COLUMNS if any(c in row for row in rows.values())]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", *columns])
    for name, row in rows.items():
        values = [float(row.get(c, float("nan"))) for c in columns]
        writer.writerow([name, *("" if math.isnan(v) else f"{v:.{digits}f}" for v in values)])
    return atomic_write_bytes(path, buffer.getvalue().encode())


class ExactArmPosterior:
    """The exact posterior p(α | heights) ∝ Laplace(heights | heights(α), b) · soft-box prior,
    tabulated on a fine grid: the reference that a perfect MHEntropy fit would reproduce.

    ``sample(heights (B, 2), num_samples) -> (B, S, 2)`` draws grid cells by their probability and
    jitters uniformly inside the cell, so it can stand in for a model in :func:`arm_coverage`.
    """

    def __init__(self, b: float = 0.05, prior_weight: float = 300.0, resolution: float = 0.01) -> None:
        arm = TwoLinkArm()
        pad = 0.3  # the soft prior leaves a little mass just outside the box
        a1 = torch.arange(-arm.HALF_WIDTH[0] - pad, arm.HALF_WIDTH[0] + pad, resolution)
        a2 = torch.arange(-arm.HALF_WIDTH[1] - pad, arm.HALF_WIDTH[1] + pad, resolution)
        self.grid = torch.stack(torch.meshgrid(a1, a2, indexing="ij"), -1).reshape(-1, 2)
        self.grid_heights = arm.heights(self.grid)
        self.log_prior = arm.log_prior(self.grid, prior_weight)
        self.b, self.resolution = b, resolution

    def log_posterior(self, heights: Tensor) -> Tensor:
        """Unnormalised log-posterior on the grid: (B, N) for heights (B, 2)."""
        err = (self.grid_heights - heights.unsqueeze(-2)).abs().sum(-1)
        return -err / self.b + self.log_prior

    @torch.no_grad()
    def sample(self, heights: Tensor, num_samples: int, temperature: float = 1.0) -> Tensor:
        """Angles (B, S, 2) for heights (B, 2) (``temperature`` is accepted and ignored)."""
        out = []
        for chunk in heights.cpu().split(16):
            probs = torch.softmax(self.log_posterior(chunk), -1)
            idx = torch.multinomial(probs, num_samples, replacement=True)
            jitter = (torch.rand(*idx.shape, 2) - 0.5) * self.resolution
            out.append(self.grid[idx] + jitter)
        return torch.cat(out).to(heights.device)
