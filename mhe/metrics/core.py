"""The primitives of the metrics: errors, diversity, the visibility sets, AH, PA-MPJPE, the depth flip, RD.

Each function takes hypotheses ``(B, S, J, D)`` (or one image's) and returns per-hypothesis or per-image
values; :mod:`mhe.metrics.streaming` accumulates them over chunks of hypotheses and :mod:`mhe.metrics.scores`
turns them into the reported figures. :func:`validate` checks a set of inputs once for all of them
(the rules are in :mod:`mhe.metrics`' docstring).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mhe.geometry import procrustes_align

__all__ = [
    "ITEM_METRICS",
    "ah",
    "best_hypothesis",
    "depth_flip",
    "diversity_from_moments",
    "joint_errors",
    "masked_joint_mean",
    "masked_mean",
    "masked_pa_mpjpe",
    "merge_moments",
    "moments",
    "mpjpe",
    "pa_mpjpe",
    "pjd",
    "ratio_of_diversity",
    "validate",
    "visibility_sets",
]

# The metrics of one image's hypotheses, in the paper's table order (mm, mm, px, px, mm, ratio).
ITEM_METRICS = ("mpjpe_bh", "pa_mpjpe_bh", "ah", "pjd_2d_vis", "pjd_3d_occ", "rd")

_CHUNK = 256  # images per Procrustes call: bounds the (chunk, S, 3, 3) temporaries at large B x S


def joint_errors(pred: Tensor, gt: Tensor) -> Tensor:
    """Euclidean distance per joint: pred (..., J, D), gt broadcastable to it -> (..., J)."""
    return torch.linalg.vector_norm(pred - gt, dim=-1)


def mpjpe(pred: Tensor, gt: Tensor) -> Tensor:
    """Mean per-joint position error of every hypothesis: pred (B, S, J, D), gt (B, J, D) -> (B, S)."""
    return joint_errors(pred, gt.unsqueeze(1)).mean(-1)


def masked_joint_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of values (B, [S,] J) over the joints where mask (B, J) is True -> (B, [S]).

    An image with no joint in the mask gets NaN, so that a later ``nanmean`` skips it (the official
    skip rule) instead of counting it as zero.
    """
    if values.dim() == 3:
        mask = mask.unsqueeze(1)
    mask = mask.to(values.dtype)
    count = mask.sum(-1)
    total = (values * mask).sum(-1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))


def pjd(points: Tensor) -> Tensor:
    """Per-joint diversity of hypotheses: points (B, S, J, D) -> (B, J).

    For each joint: the standard deviation over the S hypotheses along each axis (Bessel-corrected,
    as ``torch.std``), multiplied over the D axes, raised to 1/D and scaled by sqrt(D) -- the radius
    of the equal-volume ball, in the units of the input. With S = 1 the diversity is 0.
    """
    if points.dim() != 4:
        raise ValueError(f"pjd expects points (B, S, J, D), got shape {tuple(points.shape)}")
    return diversity_from_moments(points.shape[1], moments(points)[1])


def moments(points: Tensor) -> tuple[Tensor, Tensor]:
    """The mean over hypotheses and the sum of squared deviations from it: points (B, S, J, D) ->
    ((B, J, D), (B, J, D)), the statistics that :func:`merge_moments` combines across chunks."""
    mean = points.mean(dim=1)
    return mean, (points - mean[:, None]).square().sum(dim=1)


def merge_moments(a: tuple[int, Tensor, Tensor], b: tuple[int, Tensor, Tensor]) -> tuple[int, Tensor, Tensor]:
    """Two chunks' ``(count, mean, sum of squared deviations)`` → those of their union (Chan, Golub and
    LeVeque's pairwise update: exact up to rounding, with no cancellation of large sums of squares)."""
    (na, mean_a, m2_a), (nb, mean_b, m2_b) = a, b
    n = na + nb
    delta = mean_b - mean_a
    return n, mean_a + delta * (nb / n), m2_a + m2_b + delta.square() * (na * nb / n)


def diversity_from_moments(count: int, m2: Tensor) -> Tensor:
    """:func:`pjd` from the sum of squared deviations ``m2 (B, J, D)`` of ``count`` hypotheses -> (B, J)."""
    D = m2.shape[-1]
    if count < 2:
        return m2.new_zeros(m2.shape[:-1])
    std = (m2 / (count - 1)).sqrt()
    return std.prod(-1).pow(1.0 / D) * D**0.5


def ratio_of_diversity(pjd_2d_vis: Any, pjd_3d_occ: Any) -> Any:
    """RD = PJD 2D-vis / PJD 3D-occ (lower: diverse where occluded, consistent where visible).

    Takes floats, numpy arrays or tensors (elementwise, broadcasting) and returns the same kind;
    NaN wherever ``pjd_3d_occ`` is not > 0 (zero, or NaN for an empty occluded set) or ``pjd_2d_vis`` is NaN.
    The one place RD is computed: per image (:func:`per_item_metrics`) and of dataset means (:func:`evaluate`).
    """
    if isinstance(pjd_2d_vis, Tensor) or isinstance(pjd_3d_occ, Tensor):
        ref = pjd_2d_vis if isinstance(pjd_2d_vis, Tensor) else pjd_3d_occ
        vis, occ = torch.broadcast_tensors(torch.as_tensor(pjd_2d_vis, dtype=torch.float64, device=ref.device),
                                           torch.as_tensor(pjd_3d_occ, dtype=torch.float64, device=ref.device))
        return torch.where(occ > 0, vis / torch.where(occ > 0, occ, 1.0), float("nan"))
    if np.ndim(pjd_2d_vis) == 0 and np.ndim(pjd_3d_occ) == 0:
        vis, occ = float(pjd_2d_vis), float(pjd_3d_occ)
        return vis / occ if occ > 0 else math.nan
    vis, occ = np.asarray(pjd_2d_vis, dtype=np.float64), np.asarray(pjd_3d_occ, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(occ > 0, vis / np.where(occ > 0, occ, 1.0), np.nan)


def visibility_sets(visible: Tensor, root: int) -> tuple[Tensor, Tensor]:
    """Split visible (B, J) bool into the (visible, occluded) sets of the diversity metrics.

    Both exclude the root joint: the model's 3D is root-relative, so the root carries no diversity.
    """
    keep = torch.ones_like(visible)
    keep[:, root] = False
    return visible & keep, ~visible & keep


def ah(pred_uv: Tensor, gt_uv: Tensor, visible: Tensor, root: int) -> tuple[Tensor, Tensor]:
    """Accuracy of all hypotheses: pred_uv (B, S, J, 2), gt_uv (B, J, 2), visible (B, J) -> ((B,), (B,)).

    Returns (worst, mean): per image, the mean 2D error over visible non-root joints of the worst
    hypothesis and the same averaged over hypotheses; NaN for images with no visible joint.
    """
    vis, _ = visibility_sets(visible, root)
    per_hyp = masked_joint_mean(joint_errors(pred_uv, gt_uv.unsqueeze(1)), vis)  # (B, S)
    return per_hyp.max(dim=1).values, per_hyp.mean(dim=1)


def pa_mpjpe(pred: Tensor, gt: Tensor) -> Tensor:
    """MPJPE after similarity alignment of each hypothesis: pred (B, S, J, 3), gt (B, J, 3) -> (B, S).

    Each hypothesis gets its own scale, rotation and translation (:func:`mhe.geometry.procrustes_align`).
    """
    out = []
    for start in range(0, pred.shape[0], _CHUNK):
        p, g = pred[start : start + _CHUNK], gt[start : start + _CHUNK].unsqueeze(1)
        out.append(joint_errors(procrustes_align(p, g), g).mean(-1))
    return torch.cat(out)


def best_hypothesis(pred_xyz: Tensor, gt_xyz: Tensor) -> Tensor:
    """Index of the best hypothesis by MPJPE: pred_xyz (B, S, J, 3), gt_xyz (B, J, 3) -> (B,) long."""
    return mpjpe(pred_xyz, gt_xyz).argmin(dim=1)


def depth_flip(pred_xyz: Tensor, gt_xyz: Tensor, keypoints: Sequence[int]) -> Tensor:
    """Which hypotheses are the ground truth's depth mirror image on a rigid part (the palm).

    Under a weak-perspective camera a rigid part and its mirror image in depth (z → -z, root-relative)
    project to the same 2D points, so a single image cannot tell which way the palm tilts. A hypothesis
    is *flipped* when its ``keypoints`` lie closer (mean distance) to the mirrored ground truth than to
    the ground truth: pred_xyz (B, S, J, 3), gt_xyz (B, J, 3) root-relative → (B, S) bool.
    """
    idx = list(keypoints)
    if len(idx) < 3:
        raise ValueError(f"depth_flip needs at least 3 keypoints of a rigid part, got {idx}")
    pred, gt = pred_xyz[..., idx, :], gt_xyz[..., idx, :].unsqueeze(1)
    mirror = gt * gt.new_tensor([1.0, 1.0, -1.0])
    return joint_errors(pred, mirror).mean(-1) < joint_errors(pred, gt).mean(-1)


def validate(
    pred_xyz: Tensor, gt_xyz: Tensor, pred_uv: Tensor, gt_uv: Tensor, visible: Tensor, root: int,
    valid_3d: Tensor | None = None,
) -> Tensor:
    """Check the inputs; return the 3D-label mask (B, J) bool (``valid_3d``, or every joint when None)."""
    named = {"pred_xyz": pred_xyz, "gt_xyz": gt_xyz, "pred_uv": pred_uv, "gt_uv": gt_uv, "visible": visible}
    for name, t in named.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if pred_xyz.dim() != 4 or pred_xyz.shape[-1] != 3:
        raise ValueError(f"pred_xyz must be (B, S, J, 3), got {tuple(pred_xyz.shape)}")
    B, S, J, _ = pred_xyz.shape
    if B == 0 or S == 0:
        raise ValueError(f"no {'images' if B == 0 else 'hypotheses'} to score: pred_xyz has shape "
                         f"{tuple(pred_xyz.shape)} (B, S, J, 3)")
    expected = {"gt_xyz": (B, J, 3), "pred_uv": (B, S, J, 2), "gt_uv": (B, J, 2), "visible": (B, J)}
    for name, shape in expected.items():
        if tuple(named[name].shape) != shape:
            raise ValueError(
                f"{name} must have shape {shape} to match pred_xyz (B={B}, S={S}, J={J}), "
                f"got {tuple(named[name].shape)}"
            )
    if visible.dtype != torch.bool:
        raise TypeError(f"visible must be a bool tensor, got {visible.dtype}; pass visible.bool() or visible > 0.5")
    if valid_3d is None:
        valid_3d = torch.ones_like(visible)
    elif not isinstance(valid_3d, Tensor) or valid_3d.dtype != torch.bool or tuple(valid_3d.shape) != (B, J):
        got = (f"{valid_3d.dtype} {tuple(valid_3d.shape)}" if isinstance(valid_3d, Tensor)
               else type(valid_3d).__name__)
        raise TypeError(f"valid_3d must be a (B, J) = ({B}, {J}) bool tensor (True where the joint has a 3D label), "
                        f"got {got}")
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or not 0 <= root < J:
        raise ValueError(f"root must be a joint index in [0, {J}), got {root!r}")
    valid_3d = valid_3d.to(visible.device)
    checks = (("pred_uv", pred_uv, None, ""),
              ("gt_uv", gt_uv, visible, " at a visible joint (a keypoint without a 2D position must not be visible)"),
              ("gt_xyz", gt_xyz, valid_3d, " at a joint counted as 3D-labelled (pass valid_3d (B, J) bool, False "
                                           "where a joint has no 3D label)"),
              ("pred_xyz", pred_xyz, valid_3d[:, None].expand(B, S, J), " at a 3D-labelled joint"))
    for name, t, where, what in checks:
        finite = torch.isfinite(t).all(-1)
        bad = ~finite if where is None else where & ~finite
        if bool(bad.any()):
            first = [int(i) for i in bad.nonzero()[0]]
            raise ValueError(f"{name} contains NaN or inf{what}: first at index {tuple(first)}, "
                             f"{int(bad.sum())} in all; metrics need finite coordinates there")
    return valid_3d


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """``values (B, [S,] J)`` averaged over the joints: all of them when ``mask`` is None, else
    :func:`masked_joint_mean` (NaN for an image without a joint in the mask)."""
    return values.mean(-1) if mask is None else masked_joint_mean(values, mask)


def masked_pa_mpjpe(pred: Tensor, gt: Tensor, mask: Tensor) -> Tensor:
    """:func:`pa_mpjpe` aligning and averaging only the joints in mask (B, J); NaN for an image with fewer than
    3 such joints (a similarity needs 3 points)."""
    import roma

    out = []
    for start in range(0, pred.shape[0], _CHUNK):
        p, g = pred[start : start + _CHUNK], gt[start : start + _CHUNK].unsqueeze(1)
        m = mask[start : start + _CHUNK]
        enough = m.sum(-1) >= 3
        # an image with too few joints is aligned on all of them (zeros there) and then discarded
        w = torch.where(enough[:, None], m, torch.ones_like(m)).to(p.dtype)[:, None].expand(p.shape[:3])
        p_b, g_b = torch.broadcast_tensors(p, g)
        R, t, s = roma.rigid_points_registration(p_b, g_b, weights=w, compute_scaling=True)
        aligned = s[..., None, None] * torch.matmul(p_b, R.transpose(-1, -2)) + t[..., None, :]
        err = masked_joint_mean(joint_errors(aligned, g_b), m)
        out.append(torch.where(enough[:, None], err, torch.full_like(err, float("nan"))))
    return torch.cat(out)
