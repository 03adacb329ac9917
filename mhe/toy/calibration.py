"""Calibration of the two-link arm: is the spread of a fit's hypotheses *right*, measured against truths drawn
from the very process its target describes (issue 29's toy row)?

The arm's target is ``p(α | h) ∝ Laplace(h | heights(α), b) · soft box(α)`` (:class:`ExactArmPosterior`
tabulates it on a grid). :func:`arm_truths` draws truths from that process: a pose from the prior (the soft
box on the exact posterior's grid, drawn like its samples) and its heights with Laplace noise of scale ``b``.
Given its heights, such a truth is one more draw of the exact posterior, so the exact posterior's calibration
curve lies on the diagonal (up to sampling noise and a shift of order 1/S). :func:`arm_calibration` computes
the curve of each sampler on the arm's two joints (elbow and tip in the plane, relative to the fixed shoulder
as the hands' joints are to the wrist) with :func:`mhe.diagnostics.calibration_curve`, at cGNF's levels
q = 0.05 … 0.95 (:data:`CALIBRATION_LEVELS`, those of ``tools/reference_posterior.py``).

:func:`write_arm_calibration` and :func:`write_arm_hypotheses` write the two tables notebook 01 commits
(``figures/01_arm_calibration.csv``, ``figures/01_arm_hypotheses.csv``), which notebook 07 draws as the first
row of its reference-posterior figure (:mod:`mhe.viz.reference`).
"""

from __future__ import annotations

import csv
import io
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from mhe.diagnostics import CALIBRATION_LEVELS, calibration_curve
from mhe.toy.arm import ArmOptions, TwoLinkArm
from mhe.toy.posterior import ArmSampler, ExactArmPosterior
from mhe.utils import atomic_write_bytes, figures_dir

__all__ = ["CALIBRATION_LEVELS", "arm_calibration", "arm_truths", "write_arm_calibration", "write_arm_hypotheses"]

def arm_truths(n: int, exact: ExactArmPosterior | None = None, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` truths of the arm's generative process: angles ``(n, 2)`` drawn from the prior of ``exact`` (its
    soft box on its grid, a cell by its prior mass, jittered inside it, as :meth:`ExactArmPosterior.sample`
    draws) and their heights ``(n, 2)`` with Laplace noise of scale ``exact.b`` on each. Default ``exact``: at
    the likelihood scale and prior weight of :class:`ArmOptions` (the ones the arms are trained for)."""
    if n < 1:
        raise ValueError(f"n must be a positive number of truths, got {n}")
    exact = ExactArmPosterior(b=ArmOptions.b, prior_weight=ArmOptions.prior_weight) if exact is None else exact
    gen = torch.Generator().manual_seed(seed)
    cell = torch.multinomial(torch.softmax(exact.log_prior, 0), n, replacement=True, generator=gen)
    angles = exact.grid[cell] + (torch.rand(n, 2, generator=gen) - 0.5) * exact.resolution
    u = torch.rand(n, 2, generator=gen, dtype=torch.float64).clamp(1e-12, 1 - 1e-12) - 0.5
    noise = -exact.b * u.sign() * torch.log1p(-2 * u.abs())  # Laplace(0, b) by inversion
    return angles, TwoLinkArm().heights(angles) + noise.float()


def arm_calibration(
    samplers: Mapping[str, ArmSampler],
    angles: Tensor,
    heights: Tensor,
    num_samples: int = 200,
    levels: Sequence[float] = CALIBRATION_LEVELS,
    seed: int = 0,
) -> dict[str, Tensor]:
    """The calibration curve ``(len(levels),)`` of each sampler's ``num_samples`` hypotheses per observation
    against the truths ``angles (B, 2)`` observed as ``heights (B, 2)`` (:func:`arm_truths`), on the elbow and
    the tip (2D, shoulder at the origin). Each sampler draws from its own stream (``seed`` and its name), so a
    curve does not depend on the other samplers, and the global random state is restored."""
    if angles.dim() != 2 or angles.shape != heights.shape or angles.shape[-1] != 2:
        raise ValueError(f"angles and heights must both be (B, 2), got {tuple(angles.shape)} and "
                         f"{tuple(heights.shape)}")
    arm = TwoLinkArm()
    truth = arm.keypoints(angles)  # (B, 2, 2): elbow and tip
    curves = {}
    with torch.random.fork_rng(devices=[]):
        for name, sampler in samplers.items():
            torch.manual_seed(seed + zlib.crc32(name.encode()))
            with torch.no_grad():
                hyps = arm.keypoints(sampler.sample(heights, num_samples))  # (B, S, 2, 2)
            curves[name] = calibration_curve(hyps, truth, alphas=levels)
    return curves


def write_arm_calibration(curves: Mapping[str, Tensor], levels: Sequence[float] = CALIBRATION_LEVELS,
                          path: str | os.PathLike | None = None) -> Path:
    """Write :func:`arm_calibration`'s curves as a long CSV ``source, alpha, inside`` (one row per source and
    level). Default path: ``<figures>/01_arm_calibration.csv``. Returns the path written."""
    path = figures_dir() / "01_arm_calibration.csv" if path is None else Path(path)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["source", "alpha", "inside"])
    for name, curve in curves.items():
        if len(curve) != len(levels):
            raise ValueError(f"the curve of {name!r} has {len(curve)} values for {len(levels)} levels")
        writer.writerows([name, f"{a:.2f}", f"{float(v):.4f}"] for a, v in zip(levels, curve, strict=True))
    return atomic_write_bytes(path, buffer.getvalue().encode())


def write_arm_hypotheses(samples: Mapping[str, Tensor], truth: Tensor,
                         path: str | os.PathLike | None = None) -> Path:
    """Write the hypotheses ``{source: angles (S, 2)}`` of one observation, and its true ``angles (2,)`` as the
    source ``"truth"``, as a CSV ``source, alpha1, alpha2, elbow_x, elbow_y, tip_x, tip_y`` (the joints in the
    plane, shoulder at the origin). Default path: ``<figures>/01_arm_hypotheses.csv``. Returns the path."""
    if "truth" in samples:
        raise ValueError("'truth' is the true pose's source name; rename that sampler")
    path = figures_dir() / "01_arm_hypotheses.csv" if path is None else Path(path)
    arm = TwoLinkArm()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["source", "alpha1", "alpha2", "elbow_x", "elbow_y", "tip_x", "tip_y"])
    for name, angles in {"truth": truth.reshape(1, 2), **samples}.items():
        angles = angles.detach().cpu().reshape(-1, 2)
        joints = arm.keypoints(angles).reshape(-1, 4)
        for a, j in zip(angles.tolist(), joints.tolist(), strict=True):
            writer.writerow([name, *(f"{v:.4f}" for v in (*a, *j))])
    return atomic_write_bytes(path, buffer.getvalue().encode())
