"""How close a fitted arm comes to the exact posterior: held-out observations with four well-separated
solutions, coverage of those solutions (:func:`arm_coverage`), the exact posterior on a grid
(:class:`ExactArmPosterior`) and the posterior-match table of notebook 01 (:func:`posterior_match`,
:func:`write_posterior_match`, ``figures/01_posterior_match.csv``).
"""

from __future__ import annotations

import csv
import io
import math
import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from mhe.toy.arm import ArmModel, ArmOptions, TwoLinkArm
from mhe.toy.targets import mode_coverage
from mhe.utils import atomic_write_bytes, figures_dir, seed_everything

# -- evaluation -----------------------------------------------------------------------------------


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


class ArmSampler(Protocol):
    """Anything that samples arm angles for observations: an :class:`ArmModel`, :class:`ExactArmPosterior`."""

    def sample(self, heights: Tensor, num_samples: int) -> Tensor: ...


def posterior_match(
    models: Mapping[str, ArmSampler],
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
