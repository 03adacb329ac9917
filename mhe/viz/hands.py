"""Figures of trained hand models: hypotheses overlaid in 2D and in depth, per-joint diversity by
visibility, and accuracy against diversity across objectives.

Every function takes plain tensors / DataFrames (what :func:`mhe.models.hand.collect_predictions`
and :func:`mhe.metrics.per_joint_table` return) and returns a matplotlib figure.
"""

from __future__ import annotations

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


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _bones(ax: Any, pts: np.ndarray, color: str, alpha: float, lw: float = 1.0,
           parents: Sequence[int] = HAND_PARENTS) -> None:
    for j, p in enumerate(parents):
        if p >= 0:
            ax.plot(pts[[p, j], 0], pts[[p, j], 1], color=color, alpha=alpha, lw=lw, solid_capstyle="round")


def _hypothesis_bones(ax: Any, pts: np.ndarray, vis: np.ndarray, color: str, alpha: float,
                      parents: Sequence[int] = HAND_PARENTS) -> None:
    """Bones of every hypothesis pts (S, J, 2): to visible joints in ``color``, to occluded ones in red."""
    bones = [(p, j) for j, p in enumerate(parents) if p >= 0]
    for wanted, c in ((True, color), (False, OCCLUDED_COLOR)):
        segs = [pts[:, [p, j]] for p, j in bones if vis[j] == wanted]
        if segs:
            ax.add_collection(LineCollection(np.concatenate(segs), colors=c, alpha=alpha, linewidths=0.9,
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
    parents: Sequence[int] = HAND_PARENTS,
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
               Line2D([], [], color="#888888", lw=1.2, label="hypotheses: bones to visible joints (objective's colour)"),
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


def plot_accuracy_vs_diversity(metrics: pd.DataFrame) -> Figure:
    """Accuracy against diversity, one point per objective (rows of ``metrics`` indexed by objective,
    columns from :func:`mhe.metrics.evaluate`).

    Left: best-hypothesis 3D error vs 3D diversity of occluded joints (down-right is better: diverse
    *and* one hypothesis close to the truth). Right: worst-hypothesis 2D error on visible joints (AH) vs
    2D diversity of visible joints (down-left is better: every hypothesis explains what is seen).
    Models that read the image crop (names ending in ``_image``) are squares, the others dots.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    panels = ((axes[0], "pjd_3d_occ", "mpjpe_bh", "PJD 3D occluded (mm)", "BH-MPJPE (mm)"),
              (axes[1], "pjd_2d_vis", "ah", "PJD 2D visible (px)", "AH: worst hypothesis, visible (px)"))
    for ax, x, y, xl, yl in panels:
        for name, row in metrics.iterrows():
            # squares: models that read the image crop; dots: models that read the visible keypoints
            ax.scatter(row[x], row[y], s=80, color=OBJECTIVE_COLORS.get(str(name), "#555"), edgecolor="black",
                       marker="s" if str(name).endswith("_image") else "o", zorder=3)
        # labels of points that nearly coincide (in axis fractions) are stacked downwards, not overprinted
        ax.margins(x=0.08, y=0.14)  # room for labels shifted above the top point or below the lowest
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        placed: list[tuple[float, float]] = []
        for name, row in metrics.iterrows():
            u, v = (row[x] - x0) / (x1 - x0 or 1.0), (row[y] - y0) / (y1 - y0 or 1.0)
            near = [pv for pu, pv in placed if abs(u - pu) < 0.25 and abs(v - pv) < 0.06]
            shift = 12 * (sum(pv <= v for pv in near) - sum(pv > v for pv in near))  # away from the others
            placed.append((u, v))
            ax.annotate(LABELS.get(str(name), str(name)), (row[x], row[y]), textcoords="offset points",
                        xytext=(6, 5 + shift), fontsize=9, color=OBJECTIVE_COLORS.get(str(name), "#555"))
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    axes[0].set_title("accurate and diverse where occluded")
    axes[1].set_title("consistent where visible")
    fig.tight_layout()
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
