"""Figures of trained hand models: hypotheses overlaid in 2D and in depth, per-joint diversity by
visibility, and accuracy against diversity across objectives.

Every function takes plain tensors / DataFrames (what :func:`mhe.models.hand.collect_predictions`
and :func:`mhe.metrics.per_joint_table` return) and returns a matplotlib figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mhe.body import HAND_PARENTS
from mhe.viz import GROUND_TRUTH_COLOR, OBJECTIVE_COLORS, OCCLUDED_COLOR, VISIBLE_COLOR
from mhe.viz.body import draw_joints, visibility_handles

LABELS = {
    "mhentropy": "MHEntropy",
    "mhentropy_aa": "MHEntropy (axis-angle flow)",
    "mhentropy_rot": "MHEntropy (rotation in the flow)",
    "mhentropy_tempered": "MHEntropy, tempered target",
    "mhentropy_long": "MHEntropy, 3 × the steps",
    "mhentropy_3d": "MHEntropy + 3D",
    "nll_3d": "NLL + 3D (ProHMR-style)",
    "prohmr_2d": "ProHMR, 2D only",
    "no_entropy": "no entropy",
    "nll": "NLL (ProHMR-style)",
    "min_of_n": "min-of-N",
    "deterministic": "deterministic",
    "mhentropy_image": "MHEntropy, image",
    "nll_image": "NLL, image",
    "deterministic_image": "deterministic, image",
}


# The hand's kinematic parents as plain ints (the default skeleton of every plot here).
_HAND_PARENTS: tuple[int, ...] = tuple(int(p) for p in HAND_PARENTS)


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _bones(ax: Any, pts: np.ndarray, color: str, alpha: float, lw: float = 1.0,
           parents: Sequence[int] = _HAND_PARENTS) -> None:
    for j, p in enumerate(parents):
        if p >= 0:
            ax.plot(pts[[p, j], 0], pts[[p, j], 1], color=color, alpha=alpha, lw=lw, solid_capstyle="round")


def _hypothesis_bones(ax: Any, pts: np.ndarray, vis: np.ndarray, color: str, alpha: float,
                      parents: Sequence[int] = _HAND_PARENTS) -> None:
    """Bones of every hypothesis pts (S, J, 2): to visible joints in ``color``, to occluded ones in red."""
    bones = [(p, j) for j, p in enumerate(parents) if p >= 0]
    for wanted, c in ((True, color), (False, OCCLUDED_COLOR)):
        segs = [pts[:, [p, j]] for p, j in bones if vis[j] == wanted]
        if segs:
            ax.add_collection(LineCollection(list(np.concatenate(segs)), colors=c, alpha=alpha, linewidths=0.9,
                                             capstyle="round"))


def _limits(points: Sequence[np.ndarray], pad: float = 0.06) -> tuple[tuple[float, float], tuple[float, float]]:
    """x and y limits around every (..., 2) array of ``points``, padded."""
    pts = np.concatenate([p.reshape(-1, 2) for p in points])
    pts = pts[np.isfinite(pts).all(-1)]
    lo, hi = pts.min(0), pts.max(0)
    margin = (hi - lo).max() * pad + 1e-6
    return (lo[0] - margin, hi[0] + margin), (lo[1] - margin, hi[1] + margin)


def plot_hypotheses(
    predictions: Mapping[str, Mapping[str, Any]],
    gt_uv: Any,
    gt_xyz: Any,
    visible: Any,
    num_show: int = 20,
    title: str | None = None,
    parents: Sequence[int] = _HAND_PARENTS,
) -> Figure:
    """One input, every objective: a row per objective with the hypotheses overlaid in the image
    (left, px) and seen from the side (right, mm: depth z horizontal, y down).

    Args:
        predictions: ``{objective: {"uv": (S, J, 2) px, "xyz": (S, J, 3) mm root-relative}}``.
        gt_uv: (J, 2) ground-truth keypoints in px; gt_xyz: (J, 3) in mm; visible: (J,) bool.
        num_show: at most this many hypotheses drawn per panel.
        parents: the skeleton's parent of each keypoint (hands: ``HAND_PARENTS``; bodies: ``BODY_PARENTS``).

    The house encoding of :mod:`mhe.viz`, in both panels and in the legend: the ground truth in black,
    its visible joints as blue dots and its occluded joints as red crosses; each hypothesis as thin lines,
    bones to visible joints in the objective's colour and bones to occluded joints in red. All rows share
    the limits of their column, so spreads compare across objectives. Agreement on visible joints and
    spread on occluded ones (and in depth) is what MHEntropy aims for.
    """
    gt_uv, gt_xyz, vis = _np(gt_uv), _np(gt_xyz), _np(visible).astype(bool)
    names = list(predictions)
    side = lambda xyz: np.stack([xyz[..., 2], xyz[..., 1]], -1)  # noqa: E731  (depth z, y)
    shown = {n: (_np(predictions[n]["uv"])[:num_show], side(_np(predictions[n]["xyz"])[:num_show])) for n in names}
    lim_img = _limits([gt_uv, *(uv for uv, _ in shown.values())])
    lim_side = _limits([side(gt_xyz), *(zy for _, zy in shown.values())])
    fig, axes = plt.subplots(len(names), 2, figsize=(8.6, 3.7 * len(names) + 1.0), squeeze=False,
                             layout="constrained")
    count = 0
    for row, name in enumerate(names):
        (uv, zy), color, label = shown[name], OBJECTIVE_COLORS.get(name, "#555555"), LABELS.get(name, name)
        count = max(count, len(uv))
        ax_img, ax_side = axes[row]
        alpha = float(np.clip(6.0 / max(len(uv), 1) ** 0.5, 0.2, 0.6))
        for ax, hyp, gt, (xlim, ylim) in ((ax_img, uv, gt_uv, lim_img), (ax_side, zy, side(gt_xyz), lim_side)):
            _hypothesis_bones(ax, hyp, vis, color, alpha, parents)
            _bones(ax, gt, GROUND_TRUTH_COLOR, alpha=0.95, lw=1.6, parents=parents)
            draw_joints(ax, gt, vis, size=22)
            ax.set_xlim(*xlim)
            ax.set_ylim(ylim[1], ylim[0])  # y grows downwards, as in the image
            ax.set_aspect("equal", adjustable="box")
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.2)
        ax_img.set_title(f"{label}: image plane", color=color, fontsize=10, fontweight="bold")
        ax_side.set_title(f"{label}: side view (depth →)", color=color, fontsize=10, fontweight="bold")
        ax_img.set_xlabel("u (px)", fontsize=8)
        ax_img.set_ylabel("v (px, down)", fontsize=8)
        ax_side.set_xlabel("depth z (mm, root-relative; away from the camera →)", fontsize=8)
        ax_side.set_ylabel("y (mm, root-relative, down)", fontsize=8)
    handles = [Line2D([], [], color=GROUND_TRUTH_COLOR, lw=1.6, label="ground truth"),
               *visibility_handles(),
               Line2D([], [], color="#888888", lw=1.2,
                      label="hypotheses: bones to visible joints (objective's colour)"),
               Line2D([], [], color=OCCLUDED_COLOR, lw=1.2, alpha=0.7, label="hypotheses: bones to occluded joints")]
    # the title heads the legend: a suptitle and an outside legend would overlap in a constrained layout
    fig.legend(handles=handles, loc="outside upper center", ncol=2, fontsize=8, frameon=False,
               title=title or f"{count} hypotheses per objective", title_fontsize=11)
    return fig


def diversity_frame(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Concatenate :func:`mhe.metrics.per_joint_table` outputs, one per objective, without the root."""
    frames = [t.assign(objective=name) for name, t in tables.items()]
    df = pd.concat(frames, ignore_index=True)
    return df[~df["is_root"]]


def plot_per_joint_diversity(tables: Mapping[str, pd.DataFrame]) -> Figure:
    """Per-joint diversity by visibility for each objective.

    Left: PJD 3D (mm) of visible vs occluded joints (mean over joints); middle: PJD 2D (px) likewise;
    right: PJD 3D of occluded joints, joint by joint. A good multi-hypothesis model is diverse where
    the joint is occluded and consistent where it is seen.
    """
    import seaborn as sns

    df = diversity_frame(tables)
    order = list(tables)
    palette = {"visible": VISIBLE_COLOR, "occluded": OCCLUDED_COLOR}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1, 1, 1.6]})
    for ax, col, unit in ((axes[0], "pjd_3d", "mm"), (axes[1], "pjd_2d", "px")):
        sns.barplot(df, x="objective", y=col, hue="visibility", order=order, palette=palette,
                    hue_order=["visible", "occluded"], errorbar=None, ax=ax)
        ax.set_xticks(range(len(order)), [LABELS.get(o, o) for o in order], rotation=25, ha="right")
        ax.set_xlabel("")
        ax.set_ylabel(f"{col.replace('pjd_', 'PJD ').upper()} ({unit})")
    axes[0].set_title("3D diversity by visibility")
    axes[1].set_title("2D diversity by visibility")
    occ = df[df["visibility"] == "occluded"]
    for name in order:
        part = occ[occ["objective"] == name].sort_values("joint")
        axes[2].plot(part["joint"], part["pjd_3d"], "o-", ms=3, color=OBJECTIVE_COLORS.get(name, "#555"),
                     label=LABELS.get(name, name))
    names = occ.drop_duplicates("joint").sort_values("joint")
    axes[2].set_xticks(names["joint"], names["name"], rotation=70, fontsize=7)
    axes[2].set_ylabel("PJD 3D of occluded joint (mm)")
    axes[2].set_title("occluded joints, one by one")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _place_labels(ax: Any, points: Sequence[tuple[float, float]], texts: Sequence[str], colors: Sequence[str],
                  obstacles: Sequence[tuple[float, float]] = (), fontsize: float = 9) -> None:
    """Write ``texts[i]`` next to ``points[i]`` (data coordinates), each label touching its point and
    overlapping no other label, point or obstacle where one of the candidate places allows it.

    Greedy in display space: points are labelled from the most crowded outwards; each tries the places
    right, left, above, below and the four diagonals of its point (then the same twice as far), and
    takes the first that overlaps nothing placed so far and stays inside the axes; when none is free,
    the one with the least overlap.
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    marker_px = 7.0  # half-size of a marker's box, in display pixels
    blocked = [tuple(to_px(p)) for p in [*points, *obstacles]]
    boxes = [(x - marker_px, y - marker_px, x + marker_px, y + marker_px) for x, y in blocked]
    frame = ax.get_window_extent(renderer)

    def overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        return w * h if w > 0 and h > 0 else 0.0

    pts_px = np.array([to_px(p) for p in points]) if len(points) else np.zeros((0, 2))
    crowd = [float(np.sort(np.hypot(*(pts_px - q).T))[1:3].sum()) if len(pts_px) > 2 else 0.0 for q in pts_px]
    # (dx, dy) in points and the text's alignment
    places = [(7, 0, "left", "center"), (-7, 0, "right", "center"), (0, 7, "center", "bottom"),
              (0, -7, "center", "top"), (6, 6, "left", "bottom"), (-6, 6, "right", "bottom"),
              (6, -6, "left", "top"), (-6, -6, "right", "top")]
    places += [(2 * dx, 2 * dy, ha, va) for dx, dy, ha, va in places]
    placed: list[tuple[float, ...]] = []
    for i in sorted(range(len(points)), key=lambda k: crowd[k]):
        own = boxes[i]
        best, best_cost = None, math.inf
        for dx, dy, ha, va in places:
            t = ax.annotate(texts[i], points[i], textcoords="offset points", xytext=(dx, dy), ha=ha, va=va,
                            fontsize=fontsize, color=colors[i], zorder=4)
            bb = t.get_window_extent(renderer)
            box = (bb.x0 - 1, bb.y0 - 1, bb.x1 + 1, bb.y1 + 1)
            outside = max(0.0, frame.x0 - box[0]) + max(0.0, box[2] - frame.x1) \
                + max(0.0, frame.y0 - box[1]) + max(0.0, box[3] - frame.y1)
            cost = sum(overlap(box, b) for b in placed) + sum(overlap(box, b) for b in boxes if b is not own) \
                + 50.0 * outside
            if cost < best_cost:
                if best is not None:
                    best[0].remove()
                best, best_cost = (t, box), cost
            else:
                t.remove()
            if cost == 0:
                break
        if best is not None:
            placed.append(best[1])


def plot_accuracy_vs_diversity(metrics: pd.DataFrame, samples: int | None = None) -> Figure:
    """The error a user gets against how diverse the hypotheses are, one point per model (rows of ``metrics``
    indexed by model name, the columns of :func:`metrics_table`).

    Left: 3D error against the 3D diversity of occluded joints (PJD 3D-occ). The filled marker is the mean
    MPJPE, the error of a hypothesis drawn at random: what a user gets without the ground truth. The
    hollow marker below it, joined by a line, is BH-MPJPE, the best of the S hypotheses: an oracle's
    choice that needs the ground truth, so it is a bound on what selecting one hypothesis could reach, not
    an accuracy a user gets. For a one-hypothesis model the two coincide. Right: the worst hypothesis'
    2D error on visible joints (AH) against the 2D diversity of visible joints (down-left: every hypothesis
    explains what is seen). Models that read the image crop (names ending in ``_image``) are squares.
    ``samples`` (S) only enters the legend's wording.
    """
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    names = [str(n) for n in metrics.index]
    colors = [OBJECTIVE_COLORS.get(n, "#555") for n in names]
    markers = ["s" if n.endswith("_image") else "o" for n in names]
    labels = [LABELS.get(n, n) for n in names]
    best_of = f"best of {samples}" if samples else "best hypothesis"
    # left: the mean over hypotheses (filled) and the oracle's best (hollow), joined
    ax = axes[0]
    x, mean, bh = metrics["pjd_3d_occ"].to_numpy(float), metrics["mpjpe_mean"].to_numpy(float), \
        metrics["mpjpe_bh"].to_numpy(float)
    for k in range(len(names)):
        ax.plot([x[k], x[k]], [bh[k], mean[k]], color=colors[k], lw=1.2, alpha=0.7, zorder=2)
        ax.scatter(x[k], bh[k], s=55, facecolor="white", edgecolor=colors[k], linewidth=1.8, marker=markers[k],
                   zorder=3)
        ax.scatter(x[k], mean[k], s=85, color=colors[k], edgecolor="black", marker=markers[k], zorder=3)
    ax.margins(x=0.12, y=0.1)
    ax.set_xlabel("PJD 3D of occluded joints (mm): diversity where the hand is hidden")
    ax.set_ylabel("3D error, MPJPE (mm)")
    ax.set_title("3D error against diversity where occluded", fontsize=11)
    ax.grid(alpha=0.3)
    key = [Line2D([], [], marker="o", ls="", color="#777", markeredgecolor="black", ms=8,
                  label="mean MPJPE: a hypothesis picked at random (what a user gets)"),
           Line2D([], [], marker="o", ls="", markerfacecolor="white", markeredgecolor="#777", mew=1.8, ms=7,
                  label=f"BH-MPJPE, {best_of} (an oracle's choice: needs the truth)"),
           Line2D([], [], marker="s", ls="", color="#bbb", markeredgecolor="black", ms=8,
                  label="squares: models that read the image crop")]
    ax.legend(handles=key, loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8.5, frameon=False)
    # right: every hypothesis must explain the visible joints
    ax = axes[1]
    x2, ah = metrics["pjd_2d_vis"].to_numpy(float), metrics["ah"].to_numpy(float)
    for k in range(len(names)):
        ax.scatter(x2[k], ah[k], s=85, color=colors[k], edgecolor="black", marker=markers[k], zorder=3)
    ax.margins(x=0.12, y=0.1)
    ax.set_xlabel("PJD 2D of visible joints (px): spread where the hand is seen")
    ax.set_ylabel("AH: worst hypothesis' 2D error on visible joints (px)")
    ax.set_title("every hypothesis must explain what is seen (down-left is better)", fontsize=11)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.canvas.draw()  # the labels are placed where the final layout puts the points
    joins = [(xk, bh[k] + f * (mean[k] - bh[k])) for k, xk in enumerate(x) for f in (0.25, 0.5, 0.75)]
    _place_labels(axes[0], list(zip(x, mean, strict=True)), labels, colors,
                  obstacles=list(zip(x, bh, strict=True)) + joins)
    _place_labels(axes[1], list(zip(x2, ah, strict=True)), labels, colors)
    return fig


# The columns of the hand table (figures/04_hand_metrics.csv), in order.
TABLE_COLUMNS = ("mpjpe_bh", "pa_mpjpe_bh", "mpjpe_mean", "mpjpe_mode", "ah", "pjd_2d_vis", "pjd_3d_occ", "rd",
                 "pjd_2d_vis_mm", "rd_mm", "px_per_mm", "plausible", "flip_rate", "mpjpe_bh_flip", "mpjpe_bh_noflip")


def metrics_table(results: Mapping[str, Mapping[str, float]], columns: Sequence[str] | None = None,
                  inputs: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The hand table: one row per objective, columns :data:`TABLE_COLUMNS` (the paper's BH-MPJPE, PA-MPJPE,
    AH, PJD 2D-vis, PJD 3D-occ, RD, then the fair single-answer errors, the scale-free diversity, the
    plausible fraction and the depth-flip split); a metric a model lacks is NaN. ``inputs`` (model name →
    what it reads, e.g. ``"image (64 px crop)"``) adds a first column ``input``."""
    columns = list(columns or TABLE_COLUMNS)
    df = pd.DataFrame({name: {c: r.get(c, float("nan")) for c in columns} for name, r in results.items()}).T
    df = df.astype(float)
    if inputs is not None:
        missing = [name for name in df.index if name not in inputs]
        if missing:
            raise ValueError(f"inputs names no input for {missing}")
        df.insert(0, "input", [inputs[name] for name in df.index])
    df.index.name = "objective"
    return df
