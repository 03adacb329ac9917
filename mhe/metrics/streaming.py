"""The metrics of hypotheses that arrive in chunks, exactly: per-image running statistics, then dataset means.

At S = 4096 hypotheses per image (ProHMR's protocol) a batch of predictions no longer fits in memory
at once, so :class:`HypothesisStats` takes them a chunk of hypotheses at a time. Every per-image figure
is a reduction over the hypotheses that two chunks' partial results combine into exactly:

* minima (BH-MPJPE, PA-MPJPE: the best hypothesis of the union is the better of the two bests) and a
  maximum (AH, the worst hypothesis);
* sums (the means over hypotheses: mean MPJPE, mean 2D error; the plausible and the flipped counts);
* PJD's per-joint, per-axis standard deviation, from each chunk's count, mean and sum of squared
  deviations merged by Chan, Golub and LeVeque's pairwise update (:func:`mhe.metrics.core.merge_moments`):
  the same number as the standard deviation over all S at once, up to rounding, without the
  cancellation of a one-pass sum of squares.

No figure needs two hypotheses at once (no pairwise distance), so nothing is approximated and no second
pass is needed: the result does not depend on the chunking beyond rounding (float64 throughout).
:func:`mhe.metrics.evaluate_per_image` is this class fed one chunk; :func:`summarize` turns per-image
values of any number of batches into the dataset's figures (:func:`mhe.metrics.evaluate`'s keys).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from mhe.metrics.core import (
    depth_flip,
    diversity_from_moments,
    joint_errors,
    masked_joint_mean,
    masked_mean,
    masked_pa_mpjpe,
    merge_moments,
    moments,
    pa_mpjpe,
    ratio_of_diversity,
    validate,
    visibility_sets,
)

__all__ = ["HypothesisStats", "summarize"]


class HypothesisStats:
    """Per-image metrics of one batch of B images whose S hypotheses are added in chunks.

    Args:
        gt_xyz: (B, J, 3) ground truth, root-relative, mm (NaN allowed where ``valid_3d`` is False).
        gt_uv: (B, J, 2) ground-truth 2D keypoints, px (NaN allowed where ``visible`` is False).
        visible: (B, J) bool; root: the root joint (left out of the visible / occluded sets).
        valid_3d: (B, J) bool, True where the joint has a 3D label (None: every joint).
        flip_keypoints: the rigid part whose depth flip is counted (None: no flip figures).

    Call :meth:`add` with each chunk ``pred_xyz (B, s, J, 3)``, ``pred_uv (B, s, J, 2)`` (and ``plausible
    (B, s)`` bool, in every chunk or none), then :meth:`per_image`. Each chunk is checked as
    :func:`mhe.metrics.evaluate` checks its inputs.
    """

    def __init__(self, gt_xyz: Tensor, gt_uv: Tensor, visible: Tensor, root: int, *,
                 valid_3d: Tensor | None = None, flip_keypoints: Sequence[int] | None = None) -> None:
        self._truth = (gt_xyz, gt_uv, visible, root, valid_3d)
        self.flip_keypoints = None if flip_keypoints is None else list(flip_keypoints)
        self.count = 0  # hypotheses added so far
        self._plausible: Tensor | None = None
        self._running: dict[str, Tensor] = {}
        self._moments: dict[str, tuple[int, Tensor, Tensor]] = {}

    def add(self, pred_xyz: Tensor, pred_uv: Tensor, plausible: Tensor | None = None) -> None:
        """Take the next chunk of hypotheses (any number s >= 1 of them)."""
        gt_xyz, gt_uv, visible, root, valid_3d = self._truth
        valid = validate(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root, valid_3d)
        B, s = pred_xyz.shape[:2]
        if (plausible is None) != (self._plausible is None) and self.count:
            raise ValueError("plausible must be given with every chunk of hypotheses or with none")
        if plausible is not None:
            if tuple(plausible.shape) != (B, s) or plausible.dtype != torch.bool:
                raise ValueError(f"plausible must be a (B, S) = ({B}, {s}) bool tensor, got {plausible.dtype} "
                                 f"{tuple(plausible.shape)}")
            counted = plausible.double().sum(1)
            self._plausible = counted if self._plausible is None else self._plausible + counted
        if not self.count:
            self._prepare(valid)
        gt_xyz, gt_uv = self.gt_xyz, self.gt_uv
        # values outside the masks are never read: replaced by 0 so that no NaN can reach a sum
        pred_xyz, pred_uv = pred_xyz.double(), pred_uv.double()
        if self.mask3d is not None:
            pred_xyz = torch.where(valid[:, None, :, None], pred_xyz, pred_xyz.new_zeros(()))
        err3d = masked_mean(joint_errors(pred_xyz, gt_xyz.unsqueeze(1)), self.mask3d)  # (B, s)
        pa = pa_mpjpe(pred_xyz, gt_xyz) if self.mask3d is None else masked_pa_mpjpe(pred_xyz, gt_xyz, self.mask3d)
        err2d = masked_joint_mean(joint_errors(pred_uv, gt_uv.unsqueeze(1)), self.vis)  # (B, s): AH per hypothesis
        chunk = {"best": err3d.min(1).values, "best_pa": pa.min(1).values, "worst_2d": err2d.max(1).values,
                 "sum_3d": err3d.sum(1), "sum_2d": err2d.sum(1)}
        if self.flip_keypoints is not None:
            chunk["flipped"] = depth_flip(pred_xyz, gt_xyz, self.flip_keypoints).double().sum(1)
        for key, value in chunk.items():
            if key not in self._running:
                self._running[key] = value
            elif key.startswith("best"):
                self._running[key] = torch.minimum(self._running[key], value)  # NaN (no 3D label) stays NaN
            elif key == "worst_2d":
                self._running[key] = torch.maximum(self._running[key], value)  # NaN (nothing visible) stays NaN
            else:
                self._running[key] = self._running[key] + value
        for name, points in (("2d", pred_uv), ("3d", pred_xyz)):
            mean, m2 = moments(points)
            part = (s, mean, m2)
            self._moments[name] = part if name not in self._moments else merge_moments(self._moments[name], part)
        self.count += s

    def _prepare(self, valid: Tensor) -> None:
        """The ground truth in float64 with the unread entries zeroed, and the joint sets (first chunk)."""
        gt_xyz, gt_uv, visible, root, _ = self._truth
        self.valid = valid
        # None: every joint has its 3D label, and the figures are computed exactly as without a mask
        self.mask3d = None if bool(valid.all()) else valid
        gt_xyz, gt_uv = gt_xyz.double(), gt_uv.double()
        if self.mask3d is not None:
            gt_xyz = torch.where(valid[..., None], gt_xyz, gt_xyz.new_zeros(()))
        self.gt_xyz = gt_xyz
        self.gt_uv = torch.where(visible[..., None], gt_uv, gt_uv.new_zeros(()))
        self.vis, self.occ = visibility_sets(visible, root)

    def per_image(self, *, px_per_mm: Tensor | None = None, mode_xyz: Tensor | None = None) -> dict[str, Tensor]:
        """Every metric per image, name -> (B,) float64, as :func:`mhe.metrics.evaluate_per_image` documents
        them (``px_per_mm (B,)`` and ``mode_xyz (B, 1, J, 3)`` add ``pjd_2d_vis_mm`` and ``mpjpe_mode``)."""
        if not self.count:
            raise ValueError("no hypotheses were added: call add(pred_xyz, pred_uv) with at least one chunk")
        B, J = self.valid.shape
        extra: dict[str, Tensor] = {}
        if px_per_mm is not None:
            # NaN: the scale is unknown for that image (e.g. a ProHMR npz has no intrinsics); its mm figures are NaN
            if tuple(px_per_mm.shape) != (B,) or not bool(((px_per_mm > 0) | px_per_mm.isnan()).all()):
                raise ValueError(f"px_per_mm must be (B,) = ({B},) positive pixels per millimetre (or NaN where "
                                 f"unknown), got shape {tuple(px_per_mm.shape)} with minimum "
                                 f"{float(px_per_mm.min()):g}")
        if mode_xyz is not None:
            if tuple(mode_xyz.shape) != (B, 1, J, 3):
                raise ValueError(f"mode_xyz must be (B, 1, J, 3) = {(B, 1, J, 3)}, got {tuple(mode_xyz.shape)}")
            mode_xyz = mode_xyz.double()
            if self.mask3d is not None:
                mode_xyz = torch.where(self.valid[:, None, :, None], mode_xyz, mode_xyz.new_zeros(()))
            extra["mpjpe_mode"] = masked_mean(joint_errors(mode_xyz, self.gt_xyz.unsqueeze(1)), self.mask3d)[:, 0]
        if self._plausible is not None:
            extra["plausible"] = self._plausible / self.count
        run = self._running
        if "flipped" in run:
            flipped = (run["flipped"] / self.count > 0.5).double()
            if self.mask3d is not None:  # the part's mirror image is judged on all of its keypoints or not at all
                whole = self.valid[:, self.flip_keypoints].all(-1)
                flipped = torch.where(whole, flipped, torch.full_like(flipped, float("nan")))
            extra["flipped"] = flipped
        pjd2d = diversity_from_moments(self.count, self._moments["2d"][2])
        pjd3d = diversity_from_moments(self.count, self._moments["3d"][2])
        out = {
            "mpjpe_bh": run["best"],
            "pa_mpjpe_bh": run["best_pa"],
            "mpjpe_mean": run["sum_3d"] / self.count,
            "ah": run["worst_2d"],
            "ah_mean": run["sum_2d"] / self.count,
            "pjd_2d_vis": masked_joint_mean(pjd2d, self.vis),
            "pjd_3d_occ": masked_joint_mean(pjd3d, self.occ & self.valid),
            "pjd_2d_occ": masked_joint_mean(pjd2d, self.occ),
            "pjd_3d_vis": masked_joint_mean(pjd3d, self.vis & self.valid),
        }
        if px_per_mm is not None:
            out["pjd_2d_vis_mm"] = out["pjd_2d_vis"] / px_per_mm.to(out["pjd_2d_vis"])
        return {**out, **extra}


def summarize(per_image: Mapping[str, Tensor], visible: Tensor, root: int, *, valid_3d: Tensor | None = None,
              px_per_mm: Tensor | None = None) -> dict[str, float]:
    """The dataset's figures from per-image values ``name -> (N,)`` (:meth:`HypothesisStats.per_image` of
    one or several batches, concatenated) and the images' ``visible (N, J)``: the means that skip NaN
    images, RD of the means, the depth-flip split and the image counts, as :func:`mhe.metrics.evaluate`
    returns them (``valid_3d`` adds ``n_images_3d``, ``px_per_mm (N,)`` its mean and ``rd_mm``)."""
    per = dict(per_image)
    flipped = per.pop("flipped", None)
    out = {name: nanmean(values) for name, values in per.items()}
    out["rd"] = ratio_of_diversity(out["pjd_2d_vis"], out["pjd_3d_occ"])
    if px_per_mm is not None:
        out["rd_mm"] = ratio_of_diversity(out["pjd_2d_vis_mm"], out["pjd_3d_occ"])
        out["px_per_mm"] = nanmean(px_per_mm.double())
    if flipped is not None:
        is_flip, judged = flipped > 0.5, ~flipped.isnan()
        out["flip_rate"] = nanmean(flipped)
        out["mpjpe_bh_flip"] = nanmean(per["mpjpe_bh"][is_flip])
        out["mpjpe_bh_noflip"] = nanmean(per["mpjpe_bh"][judged & ~is_flip])
        out["flip_gap"] = out["mpjpe_bh_flip"] - out["mpjpe_bh_noflip"]
    vis, occ = visibility_sets(visible, root)
    out["n_images"] = float(visible.shape[0])
    out["n_images_vis"] = float(vis.any(-1).sum())
    out["n_images_occ"] = float(occ.any(-1).sum())
    if valid_3d is not None:
        out["n_images_3d"] = float(valid_3d.any(-1).sum())
    return out


def nanmean(values: Tensor) -> float:
    """Mean over the non-NaN entries; NaN when there are none."""
    return float(values.nanmean()) if (~values.isnan()).any() else float("nan")
