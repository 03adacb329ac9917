"""2D targets for reverse KL: unnormalised log-densities (a ring of Gaussians, two moons, a banana), exact
samples of them, :func:`fit_target` (the fit notebook 01 writes out by hand) and mode counting
(:func:`mode_coverage`, :func:`count_modes`, :func:`count_ring_modes`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from mhe.flows import ConditionalFlow, fit_nll
from mhe.training import adam, fit, recursive_cosine_lr
from mhe.utils import seed_everything

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


class TargetFlow(ConditionalFlow):
    """The flow :func:`fit_target` returns: a :class:`~mhe.flows.ConditionalFlow` with its training record."""

    #: per step of a sampling objective: ``target``, ``entropy``, ``loss`` and ``beta`` (empty for ``nll``).
    history: list[dict[str, float]]
    #: per step of ``nll``: the loss (only set for ``nll``).
    nll_history: list[float]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.history = []


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
) -> TargetFlow:
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
    flow = TargetFlow(2, 0, transforms=transforms, hidden=hidden, kind="nsf_coupling", bins=16)
    if objective == "nll":
        data = sample_target(name, num_data, generator)
        flow.nll_history = fit_nll(flow, data, steps=steps, batch_size=num_data, lr=lr, generator=generator)
        return flow.eval()
    w_ent = 1.0 if objective == "reverse_kl" else 0.0

    def loss_fn(batch: None, beta: float) -> tuple[Tensor, dict[str, float]]:
        x, log_q = flow.rsample_and_log_prob(None, num_samples, batch_size=1, antithetic=True)
        target = -log_p(x).mean()
        neg_entropy = log_q.mean()
        loss = beta * target + w_ent * neg_entropy
        return loss, {"target": target.item(), "entropy": -neg_entropy.item(), "loss": loss.item(), "beta": beta}

    def record(step: int, terms: dict[str, float]) -> None:
        flow.history.append({k: terms[k] for k in ("target", "entropy", "loss", "beta")})

    # the flow samples its own batch: the loop's batches are placeholders
    fit(loss_fn, adam(flow.parameters(), lr), itertools.repeat(None), steps=steps,
        lr=recursive_cosine_lr(lr, steps), tempering=lambda step: target_beta(step, steps, anneal), callback=record)
    return flow.eval()


def target_beta(step: int, steps: int, anneal: float) -> float:
    """:func:`fit_target`'s tempering factor at 0-based ``step`` of ``steps``: from 0.05 linearly to 1 over the
    first ``anneal`` fraction of the steps, then 1 (``anneal=0``: 1 throughout)."""
    return min(0.05 + 0.95 * step / (anneal * steps), 1.0) if anneal > 0 else 1.0


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

