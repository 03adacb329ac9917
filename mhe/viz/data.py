"""A first look at the hand benchmark: crops with visible/occluded joints, occlusion statistics, ambiguity.

Plots for :mod:`mhe.data`: :func:`plot_crop_grid` draws items (rendered crop, skeleton, visible
joints as blue dots and occluded ones as red crosses: the house encoding of :mod:`mhe.viz`),
:func:`plot_occlusion_stats` the fraction of items in which each keypoint is hidden, split by cause,
and :func:`plot_consistent_poses` one occluded input with two 3D poses that explain its visible
keypoints equally well -- the ambiguity a multi-hypothesis model must cover. :func:`first_look_figures`
makes all three. Every function returns a matplotlib figure and shows nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mhe.body import FINGERS, HAND_KEYPOINTS, HAND_PARENTS, TO_FREIHAND
from mhe.viz import OBJECTIVE_COLORS, OCCLUDED_COLOR, OCCLUDED_MARKER, VISIBLE_COLOR, VISIBLE_MARKER
from mhe.viz.body import draw_joints, visibility_handles

__all__ = ["FINGER_COLORS", "first_look_figures", "plot_consistent_poses", "plot_crop_grid", "plot_occlusion_stats"]

FINGER_COLORS = {"wrist": "#555555", "thumb": "#e6550d", "index": "#31a354", "middle": "#3182bd",
                 "ring": "#756bb1", "pinky": "#de2d26"}  # fmt: skip
_CAUSE_COLORS = {"object": "#8c6d31", "self_only": "#bd9e39", "outside_only": "#e7cb94"}


def _skeleton(
    ax: Any, xy: np.ndarray, color: str = "white", lw: float = 0.8, alpha: float = 0.9, ls: str = "-"
) -> None:
    for k, p in enumerate(HAND_PARENTS):
        if p >= 0:
            ax.plot(xy[[k, p], 0], xy[[k, p], 1], ls=ls, color=color, lw=lw, alpha=alpha)


def _joints(ax: Any, xy: np.ndarray, visible: np.ndarray, size: float = 14) -> None:
    draw_joints(ax, xy, visible, size=size, zorder=3)


def _crop_pixels(obs: torch.Tensor, n: int) -> np.ndarray:
    """Crop units (21, 2) -> imshow coordinates of an n-pixel crop (pixel centres at integers)."""
    return ((obs.double() + 1) / 2 * n - 0.5).numpy()


def plot_crop_grid(dataset: Any, indices: Sequence[int] | None = None, cols: int = 6, n: int = 12) -> Figure:
    """Items of ``dataset`` as a grid: rendered crop (if the items have ``image``), skeleton in white,
    visible joints as blue dots and occluded joints as red crosses; ``indices`` default to the first ``n``."""
    indices = list(range(min(n, len(dataset)))) if indices is None else list(indices)
    rows = int(np.ceil(len(indices) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, indices, strict=False):  # the last row may have spare panels
        item = dataset[i]
        if "image" in item:
            img = item["image"].permute(1, 2, 0).numpy()
            size = img.shape[0]
            ax.imshow(img)
        else:
            size = 128
            ax.imshow(np.full((size, size, 3), 0.3))
        xy, vis = _crop_pixels(item["obs"], size), item["visible"].numpy()
        _skeleton(ax, xy)
        _joints(ax, xy, vis, size=10)
        ax.set_xlim(-0.5, size - 0.5)
        ax.set_ylim(size - 0.5, -0.5)
        ax.set_title(f"#{i}: {int((~vis).sum())}/21 hidden", fontsize=8)
    fig.legend(handles=visibility_handles(), loc="lower center", ncol=2, frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def plot_occlusion_stats(stats: pd.DataFrame, title: str | None = None) -> Figure:
    """Stacked bars per keypoint (wrist, then thumb -> pinky, base -> tip) from
    :func:`mhe.data.occlusion_stats` (by joint): hidden behind the object, by the hand itself only,
    outside the crop only; a right panel gives the per-finger means. Tick labels are coloured by finger."""
    order = [HAND_KEYPOINTS[k] for k in TO_FREIHAND]
    table = stats.loc[order]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 3.6), gridspec_kw={"width_ratios": [4, 1.2]})
    x = np.arange(len(table))
    causes = [c for c in _CAUSE_COLORS if c in table]
    if causes and np.allclose(table[causes].sum(axis=1), table["occluded"]):
        bottom = np.zeros(len(table))
        for cause in causes:
            ax.bar(x, table[cause], bottom=bottom, color=_CAUSE_COLORS[cause], width=0.8,
                   label=cause.replace("_only", " only").replace("self", "hand itself"))
            bottom += table[cause].to_numpy()
    else:
        ax.bar(x, table["occluded"], color=OCCLUDED_COLOR, width=0.8, label="occluded")
    ax.set_xticks(x)
    ax.set_xticklabels([name.replace("_", " ") for name in order], rotation=70, fontsize=7)
    for tick, finger in zip(ax.get_xticklabels(), table["finger"], strict=True):
        tick.set_color(FINGER_COLORS[finger])
    ax.set_ylabel("fraction of items occluded")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, frameon=False, loc="upper left", ncol=3)
    ax.set_title(title or f"Occlusion per keypoint ({int(table['n_items'].iloc[0])} items)", fontsize=10)
    per_finger = table.groupby("finger", sort=False)["occluded"].mean()
    fingers = ["wrist", *FINGERS]
    ax2.bar(range(len(fingers)), [per_finger.get(f, np.nan) for f in fingers],
            color=[FINGER_COLORS[f] for f in fingers])
    ax2.set_xticks(range(len(fingers)))
    ax2.set_xticklabels(fingers, rotation=45, fontsize=8)
    ax2.set_ylim(0, 1)
    ax2.set_title("per finger (any cause)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_consistent_poses(item: dict[str, torch.Tensor], alternative: dict[str, torch.Tensor]) -> Figure:
    """One occluded input and two 3D poses that fit it: the crop with its observed keypoints, the
    camera view (identical on every visible joint) and the side view (depth), for the ground truth
    and ``alternative`` (from :func:`mhe.data.consistent_alternative`)."""
    gt_color, alt_color = OBJECTIVE_COLORS["ground_truth"], OBJECTIVE_COLORS["mhentropy"]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.9))
    vis = item["visible"].numpy()
    if "image" in item:
        img = item["image"].permute(1, 2, 0).numpy()
        size = img.shape[0]
        axes[0].imshow(img)
    else:
        size = 128
        axes[0].imshow(np.full((size, size, 3), 0.3))
    xy = _crop_pixels(item["obs"], size)
    _joints(axes[0], np.where(vis[:, None], xy, np.nan), vis)
    axes[0].set_xlim(-0.5, size - 0.5)
    axes[0].set_ylim(size - 0.5, -0.5)
    axes[0].set_title("the input: only the blue joints are seen", fontsize=9)
    axes[0].axis("off")
    gt, alt = item["joints_3d"].numpy(), alternative["joints_3d"].numpy()
    for ax, (i, j), name in ((axes[1], (0, 1), "camera view (x, y)"), (axes[2], (2, 1), "side view (depth z, y)")):
        _skeleton(ax, gt[:, [i, j]], color=gt_color, lw=2.0, alpha=0.8)
        _skeleton(ax, alt[:, [i, j]], color=alt_color, lw=1.6, alpha=0.9, ls="--")
        ax.scatter(gt[vis, i], gt[vis, j], s=18, c=VISIBLE_COLOR, edgecolors="white", linewidths=0.5, zorder=3)
        for pose, c in ((gt, gt_color), (alt, alt_color)):  # occluded joints: crosses in each pose's colour
            ax.scatter(pose[~vis, i], pose[~vis, j], s=30, c=c, marker=OCCLUDED_MARKER, edgecolors="white",
                       linewidths=0.5, zorder=3)
        ax.set_aspect("equal")
        ax.invert_yaxis()
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[1].set_xlabel("x / bone")
    axes[1].set_ylabel("y / bone")
    axes[2].set_xlabel("z / bone (away from the camera)")
    axes[2].set_ylabel("y / bone")
    moved = np.linalg.norm(alt - gt, axis=-1)
    handles = [Line2D([], [], color=gt_color, lw=2, label="ground truth"),
               Line2D([], [], color=alt_color, lw=1.6, ls="--",
                      label=f"alternative (hidden joints moved up to {moved.max():.1f} bones)"),
               Line2D([], [], ls="", marker=VISIBLE_MARKER, ms=7, color=VISIBLE_COLOR, mec="white",
                      label="visible joints (dots): identical in both"),
               Line2D([], [], ls="", marker=OCCLUDED_MARKER, ms=7, color="#777777", mec="white",
                      label="occluded joints (cross, in each pose's colour)")]  # fmt: skip
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, fontsize=8, bbox_to_anchor=(0.5, -0.04))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def first_look_figures(
    dataset: Any = None, n_grid: int = 12, n_stats: int = 200, seed: int = 0
) -> dict[str, Figure]:
    """The benchmark at a glance: ``{"crops", "occlusion", "ambiguity"}`` figures.

    ``dataset``: a :class:`mhe.data.SyntheticHands` (default: the test split with 96 px images).
    The ambiguity figure uses the first of the grid's items that has a freely rotating hidden finger.
    """
    from mhe.data import SyntheticHands, consistent_alternative, occlusion_stats

    if dataset is None:
        dataset = SyntheticHands("test", size=max(n_grid, n_stats), images=True, image_size=96)
    figures = {"crops": plot_crop_grid(dataset, n=n_grid)}
    figures["occlusion"] = plot_occlusion_stats(occlusion_stats(dataset, max_items=n_stats))
    for i in range(len(dataset)):
        alternative = consistent_alternative(dataset, i, seed=seed)
        if alternative is not None:
            figures["ambiguity"] = plot_consistent_poses(dataset[i], alternative)
            break
    return figures
