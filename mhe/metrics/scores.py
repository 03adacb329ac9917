"""The reported figures: :func:`evaluate` over a set of images, per image, per joint and for one image.

:func:`evaluate_per_image` is :class:`mhe.metrics.streaming.HypothesisStats` fed all S hypotheses at once and
:func:`evaluate` its :func:`~mhe.metrics.streaming.summarize`; :func:`per_joint_table`,
:func:`per_item_metrics`, :func:`item_metrics` and :func:`joint_diversity` are the breakdowns for plots and
the explorer. The definitions are in :mod:`mhe.metrics`' docstring and docs/method.md, "Metrics".
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torch import Tensor

from mhe.metrics.core import (
    ITEM_METRICS,
    joint_errors,
    masked_mean,
    pjd,
    ratio_of_diversity,
    validate,
)
from mhe.metrics.streaming import HypothesisStats, summarize

__all__ = ["evaluate", "evaluate_per_image", "item_metrics", "joint_diversity", "per_item_metrics", "per_joint_table"]


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
    stats = HypothesisStats(gt_xyz, gt_uv, visible, root, valid_3d=valid_3d, flip_keypoints=flip_keypoints)
    stats.add(pred_xyz, pred_uv, plausible)
    return stats.per_image(px_per_mm=px_per_mm, mode_xyz=mode_xyz)


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
    return summarize(per_image, visible, root, valid_3d=valid_3d, px_per_mm=px_per_mm)


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
    valid = validate(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root, valid_3d)
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
    best = masked_mean(err3d, mask3d).nan_to_num(nan=0.0).argmin(dim=1)
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
