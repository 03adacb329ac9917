"""Selection by extra evidence: what a set of hypotheses buys downstream.

A multi-hypothesis model leaves the choice open where the image cannot decide. A piece of evidence the
model never saw can then pick (or re-weight) hypotheses:

* a **second view**: the same pose seen by another camera, whose keypoints are known
  (:func:`second_view_scores`);
* the **depth** of a few joints, as a depth sensor would give it (:func:`depth_scores`).

Each scorer returns a cost per hypothesis ``(B, S)``, lower is better. :func:`select` takes the
cheapest hypothesis and :func:`selection_report` compares its error with the mode's, the mean
hypothesis' and the oracle's (BH-MPJPE, the best hypothesis chosen with the ground truth in hand).
Every input is root-relative 3D in mm, the unit of :mod:`mhe.metrics`. The second camera is orthographic,
like the package's crop camera, so its evidence is in mm too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from mhe.metrics import mpjpe

__all__ = ["depth_scores", "second_view_scores", "select", "selection_report", "view_rotation"]


def view_rotation(angle_deg: float, axis: str = "y") -> Tensor:
    """The rotation ``(3, 3)`` float64 from the first camera's frame to a second camera's, turned by
    ``angle_deg`` about the first camera's ``axis`` ("x" or "y"; 90° about y: a side view)."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    if axis == "y":
        return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=torch.float64)
    if axis == "x":
        return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float64)
    raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")


def second_view_scores(
    pred_xyz: Tensor,
    gt_xyz: Tensor,
    rotation: Tensor,
    visible: Tensor | None = None,
    noise_mm: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Mean 2D distance (mm) in a second orthographic view between each hypothesis and the observed keypoints.

    Args:
        pred_xyz: (B, S, J, 3) hypotheses, root-relative mm, in the first camera's frame.
        gt_xyz: (B, J, 3) the ground truth the second view observes.
        rotation: (3, 3) or (B, 3, 3) from the first camera's frame to the second's (:func:`view_rotation`).
        visible: (B, J) bool, the keypoints the second view sees (all when None).
        noise_mm: standard deviation of Gaussian noise on the observed keypoints.
        generator: for the noise.

    Returns:
        (B, S) cost per hypothesis; NaN for items whose second view sees no keypoint.
    """
    R = rotation.to(pred_xyz.dtype)
    if R.dim() == 2:
        R = R.expand(pred_xyz.shape[0], 3, 3)
    pred2 = torch.einsum("bij,bsnj->bsni", R, pred_xyz)[..., :2]
    obs2 = torch.einsum("bij,bnj->bni", R, gt_xyz.to(pred_xyz.dtype))[..., :2]
    if noise_mm > 0:
        obs2 = obs2 + noise_mm * torch.randn(obs2.shape, generator=generator, dtype=obs2.dtype).to(obs2.device)
    dist = torch.linalg.vector_norm(pred2 - obs2[:, None], dim=-1)  # (B, S, J)
    if visible is None:
        return dist.mean(-1)
    mask = visible.to(dist.dtype)[:, None]
    count = mask.sum(-1)
    return torch.where(count > 0, (dist * mask).sum(-1) / count.clamp_min(1), torch.full_like(count, float("nan")))


def depth_scores(pred_xyz: Tensor, gt_xyz: Tensor, joints: Sequence[int], noise_mm: float = 0.0,
                 generator: torch.Generator | None = None) -> Tensor:
    """Mean absolute depth error (mm, root-relative) over ``joints``, as a depth sensor would measure
    them: pred_xyz (B, S, J, 3), gt_xyz (B, J, 3) → (B, S)."""
    idx = list(joints)
    if not idx:
        raise ValueError("depth_scores needs at least one joint")
    z = gt_xyz[:, idx, 2].to(pred_xyz.dtype)
    if noise_mm > 0:
        z = z + noise_mm * torch.randn(z.shape, generator=generator, dtype=z.dtype).to(z.device)
    return (pred_xyz[..., idx, 2] - z[:, None]).abs().mean(-1)


def select(scores: Tensor) -> Tensor:
    """The cheapest hypothesis per item: scores (B, S) → index (B,) (NaN scores never win)."""
    return torch.nan_to_num(scores, nan=float("inf")).argmin(dim=1)


def selection_report(
    pred_xyz: Tensor, gt_xyz: Tensor, scores: Tensor, mode_xyz: Tensor | None = None
) -> dict[str, float]:
    """MPJPE (mm) of the hypothesis :func:`select` picks, against the alternatives.

    Returns ``mpjpe_selected``, ``mpjpe_bh`` (the oracle's pick), ``mpjpe_mean`` (a random hypothesis on
    average), ``mpjpe_mode`` (with ``mode_xyz (B, 1, J, 3)``) and ``gain_closed`` = the share of the
    mean-to-oracle gap that the evidence closes (1: as good as the oracle, 0: no better than chance).
    """
    err = mpjpe(pred_xyz.double(), gt_xyz.double())  # (B, S)
    picked = err.gather(1, select(scores)[:, None])[:, 0]
    out = {"mpjpe_selected": float(picked.mean()), "mpjpe_bh": float(err.min(1).values.mean()),
           "mpjpe_mean": float(err.mean(1).mean())}
    if mode_xyz is not None:
        out["mpjpe_mode"] = float(mpjpe(mode_xyz.double(), gt_xyz.double())[:, 0].mean())
    span = out["mpjpe_mean"] - out["mpjpe_bh"]
    out["gain_closed"] = (out["mpjpe_mean"] - out["mpjpe_selected"]) / span if span > 0 else float("nan")
    return out
