"""Multi-hypothesis pose metrics as the MHEntropy hand evaluation defines them.

With S hypotheses per image, 3D joints root-relative in millimetres and 2D joints in pixels:
*BH-MPJPE* is the mean per-joint 3D error of the best hypothesis (all joints, root included),
*PA-MPJPE* the same after a similarity (Procrustes) alignment of each hypothesis, *AH* the mean
visible-joint 2D error of the **worst** hypothesis, *PJD* the per-joint diversity
(per-axis standard deviation over hypotheses, geometric mean over the D axes, times sqrt(D)),
reported on the visible joints in 2D and the occluded joints in 3D, and *RD* the ratio of the two
dataset means. The root is left out of the visible/occluded sets and an image with an empty set is
skipped in that set's mean (Chen, Yang, Yao, "MHEntropy", ICCV 2023; docs/method.md, "Metrics"). Everything runs in
float64 on the inputs' device; :func:`evaluate_per_image` gives the per-image values that
:func:`evaluate` averages, and :func:`per_joint_table` the per-joint breakdown as a DataFrame.

For one image at a time (an explorer, a figure title): :func:`item_metrics` gives the metrics of one
(S, J) set of hypotheses, :func:`per_item_metrics` the same for a batch without averaging (RD per
image), and :func:`joint_diversity` the per-joint bars (PJD 2D on visible, 3D on occluded joints).
RD is computed by :func:`ratio_of_diversity` only, whether of one image or of dataset means.

**Missing labels.** Real files lack some keypoints. A 2D keypoint that is not ``visible`` takes no part
in any 2D figure, so its ground truth may be NaN. A 3D label is said to exist by the explicit mask
``valid_3d (B, J)`` (default: every joint): the 3D figures (BH / PA / mean / mode MPJPE, the 3D diversities
and the depth flip) use only those joints, and an image with none is skipped in their means, as an image
with an empty visible set is skipped in AH. Ground truth outside these masks may be NaN; it is never read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from mhe.geometry import procrustes_align

__all__ = [
    "ITEM_METRICS",
    "ah",
    "best_hypothesis",
    "depth_flip",
    "evaluate",
    "evaluate_per_image",
    "item_metrics",
    "joint_diversity",
    "joint_errors",
    "masked_joint_mean",
    "mpjpe",
    "pa_mpjpe",
    "per_item_metrics",
    "per_joint_table",
    "pjd",
    "ratio_of_diversity",
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
    B, S, J, D = points.shape
    if S < 2:
        return points.new_zeros(B, J)
    std = points.std(dim=1, correction=1)  # (B, J, D)
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


def _validate(
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


def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """``values (B, [S,] J)`` averaged over the joints: all of them when ``mask`` is None, else
    :func:`masked_joint_mean` (NaN for an image without a joint in the mask)."""
    return values.mean(-1) if mask is None else masked_joint_mean(values, mask)


def _masked_pa_mpjpe(pred: Tensor, gt: Tensor, mask: Tensor) -> Tensor:
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


def evaluate_per_image(
    pred_xyz: Tensor,
    gt_xyz: Tensor,
    pred_uv: Tensor,
    gt_uv: Tensor,
    visible: Tensor,
    root: int,
    *,
    px_per_mm: Tensor | None = None,
    mode_xyz: Tensor | None = None,
    plausible: Tensor | None = None,
    flip_keypoints: Sequence[int] | None = None,
    valid_3d: Tensor | None = None,
) -> dict[str, Tensor]:
    """Every metric per image: inputs as in :func:`evaluate`; returns name -> (B,) float64.

    Values are NaN where the image is skipped (no visible / occluded non-root joint, no 3D-labelled joint
    for the 3D figures). The optional inputs add ``pjd_2d_vis_mm``, ``mpjpe_mode``, ``plausible`` and
    ``flipped`` (see :func:`evaluate`).
    """
    valid = _validate(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root, valid_3d)
    B, S, J = pred_xyz.shape[:3]
    # None: every joint has its 3D label, and the figures are computed exactly as without a mask
    mask3d = None if bool(valid.all()) else valid
    extra: dict[str, Tensor] = {}
    if px_per_mm is not None:
        # NaN: the scale is unknown for that image (e.g. a ProHMR npz has no intrinsics); its mm figures are NaN
        if tuple(px_per_mm.shape) != (B,) or not bool(((px_per_mm > 0) | px_per_mm.isnan()).all()):
            raise ValueError(f"px_per_mm must be (B,) = ({B},) positive pixels per millimetre (or NaN where "
                             f"unknown), got shape {tuple(px_per_mm.shape)} with minimum {float(px_per_mm.min()):g}")
    # values outside the masks are never read: replaced by 0 so that no NaN can reach a sum
    pred_xyz, gt_xyz = pred_xyz.double(), gt_xyz.double()
    pred_uv, gt_uv = pred_uv.double(), gt_uv.double()
    if mask3d is not None:
        gt_xyz = torch.where(valid[..., None], gt_xyz, gt_xyz.new_zeros(()))
        pred_xyz = torch.where(valid[:, None, :, None], pred_xyz, pred_xyz.new_zeros(()))
    gt_uv = torch.where(visible[..., None], gt_uv, gt_uv.new_zeros(()))
    if mode_xyz is not None:
        if tuple(mode_xyz.shape) != (B, 1, *pred_xyz.shape[2:]):
            raise ValueError(f"mode_xyz must be (B, 1, J, 3) = {(B, 1, *pred_xyz.shape[2:])}, got {tuple(mode_xyz.shape)}")
        mode_xyz = mode_xyz.double()
        if mask3d is not None:
            mode_xyz = torch.where(valid[:, None, :, None], mode_xyz, mode_xyz.new_zeros(()))
        extra["mpjpe_mode"] = _masked_mean(joint_errors(mode_xyz, gt_xyz.unsqueeze(1)), mask3d)[:, 0]
    if plausible is not None:
        if tuple(plausible.shape) != (B, S) or plausible.dtype != torch.bool:
            raise ValueError(f"plausible must be a (B, S) = ({B}, {S}) bool tensor, got {plausible.dtype} "
                             f"{tuple(plausible.shape)}")
        extra["plausible"] = plausible.double().mean(1)
    if flip_keypoints is not None:
        flipped = (depth_flip(pred_xyz, gt_xyz, flip_keypoints).double().mean(1) > 0.5).double()
        if mask3d is not None:  # the part's mirror image is judged on all of its keypoints or not at all
            whole = valid[:, list(flip_keypoints)].all(-1)
            flipped = torch.where(whole, flipped, torch.full_like(flipped, float("nan")))
        extra["flipped"] = flipped
    vis, occ = visibility_sets(visible, root)
    err3d = _masked_mean(joint_errors(pred_xyz, gt_xyz.unsqueeze(1)), mask3d)  # (B, S)
    pa = pa_mpjpe(pred_xyz, gt_xyz) if mask3d is None else _masked_pa_mpjpe(pred_xyz, gt_xyz, mask3d)
    ah_worst, ah_mean = ah(pred_uv, gt_uv, visible, root)
    pjd2d, pjd3d = pjd(pred_uv), pjd(pred_xyz)  # (B, J)
    out = {
        "mpjpe_bh": err3d.min(dim=1).values,
        "pa_mpjpe_bh": pa.min(dim=1).values,
        "mpjpe_mean": err3d.mean(dim=1),
        "ah": ah_worst,
        "ah_mean": ah_mean,
        "pjd_2d_vis": masked_joint_mean(pjd2d, vis),
        "pjd_3d_occ": masked_joint_mean(pjd3d, occ & valid),
        "pjd_2d_occ": masked_joint_mean(pjd2d, occ),
        "pjd_3d_vis": masked_joint_mean(pjd3d, vis & valid),
    }
    if px_per_mm is not None:
        out["pjd_2d_vis_mm"] = out["pjd_2d_vis"] / px_per_mm.to(out["pjd_2d_vis"])
    return {**out, **extra}


def evaluate(
    pred_xyz: Tensor,
    gt_xyz: Tensor,
    pred_uv: Tensor,
    gt_uv: Tensor,
    visible: Tensor,
    root: int,
    *,
    px_per_mm: Tensor | None = None,
    mode_xyz: Tensor | None = None,
    plausible: Tensor | None = None,
    flip_keypoints: Sequence[int] | None = None,
    valid_3d: Tensor | None = None,
) -> dict[str, float]:
    """The paper's hand metrics over a set of images, and the package's additions.

    Args:
        pred_xyz: (B, S, J, 3) hypotheses, root-relative, millimetres.
        gt_xyz: (B, J, 3) ground truth, root-relative, millimetres (may be NaN where ``valid_3d`` is False).
        pred_uv: (B, S, J, 2) projected hypotheses, pixels.
        gt_uv: (B, J, 2) ground-truth 2D keypoints, pixels (may be NaN where ``visible`` is False).
        visible: (B, J) bool visibility of each ground-truth joint.
        root: index of the root joint (left out of the visible/occluded sets; 4 for hands).
        px_per_mm: (B,) the ground-truth camera's pixels per millimetre at the body (optional; NaN where
            unknown: those images are left out of the mm figures).
        mode_xyz: (B, 1, J, 3) the model's mode (zero-noise hypothesis), mm (optional).
        plausible: (B, S) bool, whether each hypothesis is anatomically plausible (optional).
        flip_keypoints: the keypoints of a rigid part (the palm) for :func:`depth_flip` (optional).
        valid_3d: (B, J) bool, True where the joint has a 3D label (optional; default every joint). The 3D
            figures use only these joints (PA-MPJPE aligns on them and needs 3), ``pjd_3d_*`` only these
            among the occluded / visible ones; an image with none is skipped in those means. Predictions
            outside the mask may be NaN too (e.g. millimetres of a body whose scale is unknown).

    Returns:
        ``mpjpe_bh``, ``pa_mpjpe_bh``, ``mpjpe_mean`` (mm), ``ah``, ``ah_mean`` (px),
        ``pjd_2d_vis`` (px), ``pjd_3d_occ`` (mm), ``rd`` = pjd_2d_vis / pjd_3d_occ, the two
        complementary diversities ``pjd_2d_occ``, ``pjd_3d_vis``, and the image counts
        ``n_images``, ``n_images_vis``, ``n_images_occ`` behind the set-restricted means (and
        ``n_images_3d``, the images with a 3D label, when ``valid_3d`` is given).
        A mean over zero images is NaN, and so is RD when pjd_3d_occ is 0 or NaN. With the optional
        inputs also: ``pjd_2d_vis_mm`` (each image's 2D diversity divided by its px/mm, so mm in the
        image plane), ``rd_mm`` = pjd_2d_vis_mm / pjd_3d_occ (unitless, independent of the crop scale)
        and ``px_per_mm`` (the mean); ``mpjpe_mode`` (mm); ``plausible`` (fraction of all hypotheses);
        ``flip_rate`` (fraction of images whose hypotheses are mostly the palm's depth mirror image, among
        those with the whole palm labelled), ``mpjpe_bh_flip`` / ``mpjpe_bh_noflip`` (BH-MPJPE of those
        images / the rest) and ``flip_gap`` (their difference, mm).
    """
    per_image = evaluate_per_image(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root, px_per_mm=px_per_mm,
                                   mode_xyz=mode_xyz, plausible=plausible, flip_keypoints=flip_keypoints,
                                   valid_3d=valid_3d)
    flipped = per_image.pop("flipped", None)
    out = {name: _nanmean(values) for name, values in per_image.items()}
    out["rd"] = ratio_of_diversity(out["pjd_2d_vis"], out["pjd_3d_occ"])
    if px_per_mm is not None:
        out["rd_mm"] = ratio_of_diversity(out["pjd_2d_vis_mm"], out["pjd_3d_occ"])
        out["px_per_mm"] = _nanmean(px_per_mm.double())
    if flipped is not None:
        is_flip, judged = flipped > 0.5, ~flipped.isnan()
        out["flip_rate"] = _nanmean(flipped)
        out["mpjpe_bh_flip"] = _nanmean(per_image["mpjpe_bh"][is_flip])
        out["mpjpe_bh_noflip"] = _nanmean(per_image["mpjpe_bh"][judged & ~is_flip])
        out["flip_gap"] = out["mpjpe_bh_flip"] - out["mpjpe_bh_noflip"]
    vis, occ = visibility_sets(visible, root)
    out["n_images"] = float(visible.shape[0])
    out["n_images_vis"] = float(vis.any(-1).sum())
    out["n_images_occ"] = float(occ.any(-1).sum())
    if valid_3d is not None:
        out["n_images_3d"] = float(valid_3d.any(-1).sum())
    return out


def _nanmean(values: Tensor) -> float:
    """Mean over the non-NaN entries; NaN when there are none."""
    return float(values.nanmean()) if (~values.isnan()).any() else float("nan")


def per_joint_table(
    pred_xyz: Tensor,
    gt_xyz: Tensor,
    pred_uv: Tensor,
    gt_uv: Tensor,
    visible: Tensor,
    root: int,
    joint_names: Sequence[str] | None = None,
    valid_3d: Tensor | None = None,
) -> pd.DataFrame:
    """Diversity and error per joint and visibility, for plots (inputs as in :func:`evaluate`).

    One row per (joint, visibility) pair that occurs, with columns ``joint`` (index), ``name``,
    ``visibility`` ("visible" / "occluded"), ``is_root``, ``n_images``, ``pjd_2d`` (px),
    ``pjd_3d`` (mm), ``err_2d_mean`` (px, mean over hypotheses), ``err_3d_mean`` (mm, mean over
    hypotheses) and ``err_3d_bh`` (mm, the hypothesis that is best for the whole hand); each value is
    the mean over the images where the joint has that visibility. The 3D columns count only images where
    the joint has a 3D label (``valid_3d``), ``err_2d_mean`` only those where its 2D position is known
    (finite ``gt_uv``; an occluded keypoint of a real file may have none); NaN when there is none.
    """
    valid = _validate(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root, valid_3d)
    B, S, J, _ = pred_xyz.shape
    if joint_names is None:
        joint_names = [str(j) for j in range(J)]
    if len(joint_names) != J:
        raise ValueError(f"joint_names has {len(joint_names)} entries but the inputs have J={J} joints")
    known_uv = torch.isfinite(gt_uv).all(-1)
    pred_xyz = torch.where(valid[:, None, :, None], pred_xyz.double(), 0.0)
    gt_xyz = torch.where(valid[..., None], gt_xyz.double(), 0.0)
    pred_uv, gt_uv = pred_uv.double(), torch.where(known_uv[..., None], gt_uv.double(), 0.0)
    err3d = joint_errors(pred_xyz, gt_xyz.unsqueeze(1))  # (B, S, J)
    mask3d = None if bool(valid.all()) else valid
    best = _masked_mean(err3d, mask3d).nan_to_num(nan=0.0).argmin(dim=1)
    columns = {
        "pjd_2d": (pjd(pred_uv), None),
        "pjd_3d": (pjd(pred_xyz), valid),
        "err_2d_mean": (joint_errors(pred_uv, gt_uv.unsqueeze(1)).mean(1), known_uv),
        "err_3d_mean": (err3d.mean(1), valid),
        "err_3d_bh": (err3d[torch.arange(B, device=err3d.device), best], valid),
    }
    rows = []
    for label, mask in (("visible", visible), ("occluded", ~visible)):
        count = mask.sum(0)  # (J,)
        means = {}
        for k, (v, known) in columns.items():
            m = mask if known is None else mask & known
            n = m.sum(0)
            means[k] = torch.where(n > 0, (v * m).sum(0) / n.clamp_min(1), float("nan"))
        for j in range(J):
            if count[j] == 0:
                continue
            row = {"joint": j, "name": joint_names[j], "visibility": label, "is_root": j == root,
                   "n_images": int(count[j])}
            row.update({k: float(v[j]) for k, v in means.items()})
            rows.append(row)
    return pd.DataFrame(rows)


def per_item_metrics(
    pred_xyz: Tensor, gt_xyz: Tensor, pred_uv: Tensor, gt_uv: Tensor, visible: Tensor, root: int,
    valid_3d: Tensor | None = None,
) -> dict[str, Tensor]:
    """:data:`ITEM_METRICS` of every image, not averaged: inputs as in :func:`evaluate`; returns name -> (B,)
    float64 (:func:`evaluate_per_image`, plus each image's own ``rd``, :func:`ratio_of_diversity`).

    NaN where the image has no visible (``ah``, ``pjd_2d_vis``, ``rd``) or occluded (``pjd_3d_occ``, ``rd``)
    non-root joint, and ``rd`` also where the hypotheses have no occluded diversity (a single prediction);
    the 3D figures also where the image has no 3D-labelled joint (``valid_3d``).
    """
    per = evaluate_per_image(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root, valid_3d=valid_3d)
    out = {name: per[name] for name in ITEM_METRICS if name != "rd"}
    out["rd"] = ratio_of_diversity(per["pjd_2d_vis"], per["pjd_3d_occ"])
    return out


def item_metrics(
    pred_xyz: Tensor, gt_xyz: Tensor, pred_uv: Tensor, gt_uv: Tensor, visible: Tensor, root: int,
    valid_3d: Tensor | None = None,
) -> dict[str, float]:
    """The paper's metrics of one image's hypotheses, as floats.

    Args:
        pred_xyz: (S, J, 3) hypotheses, root-relative, mm; gt_xyz: (J, 3) mm.
        pred_uv: (S, J, 2) their projections, px; gt_uv: (J, 2) px.
        visible: (J,) visibility of each ground-truth joint (any dtype; nonzero is visible).
        root: the root joint (left out of the visible / occluded sets).
        valid_3d: (J,) True where the joint has a 3D label (optional; default every joint).

    Returns:
        :data:`ITEM_METRICS`: ``mpjpe_bh``, ``pa_mpjpe_bh`` (mm), ``ah`` (px), ``pjd_2d_vis`` (px),
        ``pjd_3d_occ`` (mm) and ``rd``, as :func:`per_item_metrics` computes them for a batch of one
        (the same numbers :func:`evaluate` gives for a single image); NaN where undefined.
    """
    if pred_xyz.dim() != 3 or pred_uv.dim() != 3:
        raise ValueError(f"item_metrics expects one image: pred_xyz (S, J, 3) and pred_uv (S, J, 2), got "
                         f"{tuple(pred_xyz.shape)} and {tuple(pred_uv.shape)}; use per_item_metrics for a batch")
    per = per_item_metrics(pred_xyz[None], gt_xyz[None], pred_uv[None], gt_uv[None], visible[None].bool(), root,
                           valid_3d=None if valid_3d is None else valid_3d[None].bool())
    return {name: float(value[0]) for name, value in per.items()}


def joint_diversity(pred_xyz: Tensor, pred_uv: Tensor, visible: Tensor) -> Tensor:
    """Per-joint diversity of one image, by visibility: pred_xyz (S, J, 3), pred_uv (S, J, 2), visible (J,) -> (J,).

    :func:`pjd` of the 2D projections (px) on visible joints and of the 3D joints (mm) on occluded ones:
    the two diversities the paper reports (PJD 2D-vis, PJD 3D-occ), joint by joint, in float64.
    """
    if pred_xyz.dim() != 3 or pred_uv.dim() != 3 or pred_xyz.shape[:2] != pred_uv.shape[:2]:
        raise ValueError(f"expected pred_xyz (S, J, 3) and pred_uv (S, J, 2), got {tuple(pred_xyz.shape)} "
                         f"and {tuple(pred_uv.shape)}")
    if tuple(visible.shape) != tuple(pred_xyz.shape[1:2]):
        raise ValueError(f"visible must have shape ({pred_xyz.shape[1]},) (one flag per joint), "
                         f"got {tuple(visible.shape)}")
    d2, d3 = pjd(pred_uv[None].double())[0], pjd(pred_xyz[None].double())[0]
    return torch.where(visible.to(d2.device).bool(), d2, d3)
