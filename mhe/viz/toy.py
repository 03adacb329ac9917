"""Figures for the toy notebooks: 2D densities, the two-link arm and its four modes, the
objective ablation (the paper's toy figure), coverage bars, and flow diagnostics (warped grids,
tempered samples, log q of samples). Every function takes tensors or tables and returns a
matplotlib figure; nothing is shown or saved here (see :func:`mhe.viz.save_figure`).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from torch import Tensor

from mhe.viz import OBJECTIVE_COLORS

_GT = OBJECTIVE_COLORS["ground_truth"]
# One per exact arm solution: shades of blue, so that they never read as one of the objectives'
# colours (OBJECTIVE_COLORS: green, orange, purple, pink), which colour the hypotheses.
MODE_COLORS = ("#08306b", "#2171b5", "#6baed6", "#c6dbef")
#: Samples whose spread (largest per-coordinate std) is below this are drawn as one marked point.
COLLAPSE_SPREAD = 0.02
# Readable names of the toy notebook's runs (figure titles, tick labels); others are shown as given.
ARM_LABELS = {
    "exact posterior": "exact posterior",
    "mhentropy": "MHEntropy",
    "no_entropy": "no entropy term",
    "no_reconstruction": "no reconstruction term",
    "no_prior": "no prior term",
    "nll": "NLL, 10k unbiased labels",
    "nll_elbow_right": "NLL, labels always elbow-right",
}


def arm_label(name: str) -> str:
    """The readable name of a run (:data:`ARM_LABELS`), else the name with spaces for underscores."""
    return ARM_LABELS.get(str(name), str(name).replace("_", " "))


def _color(name: str) -> str:
    for key, value in OBJECTIVE_COLORS.items():
        if name.startswith(key):
            return value
    return "#555555"


def mark_collapse(ax, points: np.ndarray, color: str, scale: float = 1.0, what: str = "samples",
                  count: int | None = None, text_color: str | None = None) -> bool:
    """If ``points`` (N, 2) are (nearly) all one point, ring it and say so; return whether they were.

    A collapsed set of samples is otherwise invisible (N dots on top of each other, or under a marker).
    "Nearly" means a spread (largest per-coordinate std) under :data:`COLLAPSE_SPREAD` × ``scale``.
    The label reads "all ``count`` ``what`` on this one point" (``count`` default: N).
    """
    if len(points) < 2 or float(points.std(0).max()) >= COLLAPSE_SPREAD * scale:
        return False
    centre = np.median(points, 0)
    ax.scatter([centre[0]], [centre[1]], s=420, facecolors="none", edgecolors=color, lw=2.2, zorder=5)
    ax.annotate(f"all {len(points) if count is None else count} {what}\non this one point", centre, xytext=(0.5, 0.9),
                textcoords="axes fraction", ha="center", va="top", fontsize=8, color=text_color or color,
                fontweight="bold",
                arrowprops=dict(arrowstyle="->", color=color, lw=1.2), zorder=6,
                bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.85))
    return True


def plot_densities(
    densities: Mapping[str, Tensor],
    extent: float,
    points: Mapping[str, Tensor] | None = None,
    ncols: int | None = None,
    depth: float = 6.0,
) -> Figure:
    """One panel per density on the square [-extent, extent]².

    Args:
        densities: title -> log-density on a grid (G, G), indexed [x, y] (``indexing="ij"``);
            each panel shows log p - max log p clipped at ``-depth`` (log scale, so that both
            sharp and broad densities stay visible).
        extent: half-width of the grid square.
        points: optional title -> (N, 2) points drawn on the panel of the same title (e.g. the
            training samples of an NLL fit).
        ncols: panels per row (default: all in one row).
    """
    names = list(densities)
    ncols = ncols or len(names)
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.6 * nrows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names, strict=False):  # the last row may have spare panels
        log_p = densities[name].detach().float().cpu()
        image = (log_p - log_p.max()).clamp(min=-depth).T.numpy()  # imshow wants [y, x]
        ax.imshow(image, origin="lower", extent=(-extent, extent, -extent, extent), cmap="magma",
                  vmin=-depth, vmax=0)
        if points and name in points:
            pts = points[name].detach().cpu().numpy()
            ax.scatter(pts[:, 0], pts[:, 1], s=7, c="#4fc3f7", edgecolors="none")
            mark_collapse(ax, pts, "#4fc3f7", scale=extent, text_color="black")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def _draw_arms(ax, keypoints: np.ndarray, color: str, alpha: float, lw: float = 1.2) -> None:
    """keypoints (N, 2, 2): root -> elbow -> tip polylines."""
    for kp in keypoints:
        xs = [0.0, kp[0, 0], kp[1, 0]]
        ys = [0.0, kp[0, 1], kp[1, 1]]
        ax.plot(xs, ys, color=color, alpha=alpha, lw=lw, solid_capstyle="round")


def _arm_axes(ax, heights: np.ndarray) -> None:
    for h, style in zip(heights, ("--", ":"), strict=True):
        ax.axhline(h, color="#999999", ls=style, lw=0.8)
    ax.plot([0], [0], "ks", ms=4)
    ax.set_xlim(-2.1, 2.1)
    ax.set_ylim(-2.1, 2.1)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def _radians(x: float) -> str:
    """An angle as text: π, π/2, ... when it is one, else in rad with two decimals."""
    for k, text in ((1, "π"), (2, "π/2"), (3, "π/3"), (4, "π/4")):
        if abs(x - math.pi / k) < 1e-6:
            return text
    return f"{x:.2f} rad"


def _angle_axes(ax, half_width: tuple[float, float]) -> None:
    hw1, hw2 = half_width
    ax.add_patch(Rectangle((-hw1, -hw2), 2 * hw1, 2 * hw2, fill=False, ec="#999999", ls="--", lw=0.8))
    ax.set_xlim(-hw1 - 0.6, hw1 + 0.6)
    ax.set_ylim(-hw2 - 0.6, hw2 + 0.6)
    ax.set_xlabel("α1, shoulder (rad)")


def plot_arm_solutions(keypoints: Tensor, heights: Tensor) -> Figure:
    """The four exact solutions of one observation, each in its own colour.

    Args:
        keypoints: (4, 2, 2) elbow and tip of each solution (from ``TwoLinkArm.keypoints``).
        heights: (2,) the observed elbow and tip heights (dashed and dotted lines).
    """
    fig, ax = plt.subplots(figsize=(3.6, 3.6))
    kp = keypoints.detach().cpu().numpy()
    for i, color in enumerate(MODE_COLORS):
        _draw_arms(ax, kp[i : i + 1], color, 1.0, lw=2.4)
        ax.annotate(str(i), kp[i, 1], color="k", fontsize=10, fontweight="bold", xytext=(4, 4),
                    textcoords="offset points")
    _arm_axes(ax, heights.detach().cpu().numpy())
    ax.set_title("four exact solutions\n(dashed: elbow height, dotted: tip height)", fontsize=9)
    return fig


def plot_arm_ablation(
    samples: Mapping[str, Tensor],
    keypoints: Mapping[str, Tensor],
    modes: Tensor,
    heights: Tensor,
    half_width: tuple[float, float] = (math.pi / 2, math.pi),
    max_arms: int = 80,
) -> Figure:
    """The paper's toy figure: per objective, arm overlays (top) and (α1, α2) samples (bottom).

    Columns are titled by :func:`arm_label` ("MHEntropy", "no entropy term", ...); a legend below the
    panels explains every mark (exact solutions, samples, observed heights, prior box, shoulder).

    Args:
        samples: objective name -> (S, 2) sampled angles for one observation.
        keypoints: objective name -> (S, 2, 2) the samples' elbow and tip positions.
        modes: (4, 2) the exact solutions (stars; the first column draws them as arms).
        heights: (2,) the observation.
        half_width: prior box half-widths (dashed rectangle).
        max_arms: at most this many arms are drawn per panel.
    """
    names = list(samples)
    ncols = len(names) + 1
    fig, axes = plt.subplots(2, ncols, figsize=(2.4 * ncols, 5.9), squeeze=False)
    h = heights.detach().cpu().numpy()
    m = modes.detach().cpu().numpy()
    from mhe.toy import TwoLinkArm  # the figure draws exact solutions with the same arm

    mode_kp = TwoLinkArm().keypoints(modes.detach().cpu()).numpy()
    for i, color in enumerate(MODE_COLORS):
        _draw_arms(axes[0, 0], mode_kp[i : i + 1], color, 1.0, lw=2.2)
    _arm_axes(axes[0, 0], h)
    axes[0, 0].set_title("the 4 exact solutions", fontsize=9, fontweight="bold")
    axes[0, 0].set_ylabel("arms in the plane", fontsize=9)
    axes[1, 0].scatter(m[:, 0], m[:, 1], c=MODE_COLORS, marker="*", s=160, edgecolors="k", lw=0.5)
    for i in range(len(m)):
        axes[1, 0].annotate(str(i), m[i], xytext=(6, 4), textcoords="offset points", fontsize=9, fontweight="bold")
        axes[0, 0].annotate(str(i), mode_kp[i, 1], xytext=(3, 3), textcoords="offset points", fontsize=8,
                            fontweight="bold")
    _angle_axes(axes[1, 0], half_width)
    axes[1, 0].set_ylabel("α2, elbow (rad)")
    for col, name in enumerate(names, start=1):
        color = _color(name)
        s = samples[name].detach().cpu().numpy()
        kp = keypoints[name].detach().cpu().numpy()[:max_arms]
        _draw_arms(axes[0, col], kp, color, alpha=max(0.06, min(0.5, 8.0 / len(kp))))
        _arm_axes(axes[0, col], h)
        axes[0, col].set_title(arm_label(name), fontsize=9, fontweight="bold", color=color)
        axes[1, col].scatter(s[:, 0], s[:, 1], s=4, c=color, alpha=0.5, edgecolors="none")
        axes[1, col].scatter(m[:, 0], m[:, 1], c=MODE_COLORS, marker="*", s=110, edgecolors="k", lw=0.5)
        if mark_collapse(axes[1, col], s, color, what="hypotheses"):
            mark_collapse(axes[0, col], kp[:, 1], color, what="arms' tips", count=len(s))
        _angle_axes(axes[1, col], half_width)
        axes[1, col].set_yticklabels([])
    handles = [
        Line2D([], [], ls="", marker="*", ms=12, color=MODE_COLORS[1], mec="k", mew=0.5,
               label="exact solutions 0–3 (shades of blue, numbered in the first column)"),
        Line2D([], [], ls="", marker="o", ms=4, color="#777777", alpha=0.6, label="sampled hypotheses (α1, α2)"),
        Line2D([], [], color="#777777", alpha=0.6, lw=1.2, label="sampled arms: shoulder → elbow → tip"),
        Line2D([], [], ls="", marker="s", ms=5, color="k", label="shoulder (fixed)"),
        Line2D([], [], color="#999999", ls="--", lw=0.8, label="observed elbow height"),
        Line2D([], [], color="#999999", ls=":", lw=0.8, label="observed tip height"),
        Rectangle((0, 0), 1, 1, fill=False, ec="#999999", ls="--", lw=0.8,
                  label=f"prior support: |α1| ≤ {_radians(half_width[0])}, |α2| ≤ {_radians(half_width[1])}"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"{max(len(s) for s in samples.values())} hypotheses per objective for one observation "
                 "(colour of the hypotheses: the objective; blue stars: the exact solutions)", fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 0.96))
    return fig


def plot_mode_masses(
    table,
    band: tuple[float, float] | None = (0.15, 0.35),
    reference: str | None = None,
    tolerance: float = 0.05,
    ylabel: str = "mean mass within radius",
) -> Figure:
    """Grouped bars of the mean mass on each exact mode, one group per objective.

    Args:
        table: a pandas DataFrame indexed by objective with columns ``mass_0`` … ``mass_3`` (as
            from :func:`mhe.toy.arm_coverage` or :func:`mhe.toy.posterior_match`); other columns
            are ignored.
        band: the shaded target band for each mode's mass (None: no band).
        reference: the row whose masses are the target (e.g. ``"exact posterior"``): each bar gets
            a black mark at that row's mass of the same mode, with ± ``tolerance`` whiskers.
        ylabel: the y-axis label.
    """
    cols = [c for c in table.columns if str(c).startswith("mass_") and str(c)[5:].isdigit()]
    names = list(table.index)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(names), 3.2))
    if band is not None:
        ax.axhspan(*band, color="#dddddd", zorder=0, label=f"target {band[0]:.2f}–{band[1]:.2f}")
    width = 0.8 / len(cols)
    x = np.arange(len(names))
    for i, col in enumerate(cols):
        pos = x + (i - (len(cols) - 1) / 2) * width
        ax.bar(pos, table[col].to_numpy(), width, color=MODE_COLORS[i % len(MODE_COLORS)], label=f"solution {col[5:]}")
        if reference is not None:
            target = np.full(len(names), float(table.loc[reference, col]))
            ax.errorbar(pos, target, yerr=tolerance, fmt="_", color="black", markersize=8, capsize=2, lw=0.8,
                        label=f"{arm_label(reference)} ± {tolerance:g}" if i == 0 else None, zorder=3)
    ax.set_xticks(x, [textwrap.fill(arm_label(n), 14) for n in names], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda k: not labels[k].startswith("solution"))  # solutions first
    ax.legend([handles[k] for k in order], [labels[k] for k in order], fontsize=7, ncol=1, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def plot_warped_grid(before: Tensor, after: Tensor, title: str = "", stride: int = 4) -> Figure:
    """A square grid of points (N, N, 2) before and after a transformation, side by side.

    Every ``stride``-th line of each family is drawn (blue: constant first index, red: constant
    second index), at the full resolution of the other index.
    """
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 3.4))
    for ax, grid, name in zip(axes, (before, after), ("x", "y = f(x)"), strict=True):
        arr = grid.detach().cpu().numpy()
        for i in range(0, arr.shape[0], stride):
            ax.plot(arr[i, :, 0], arr[i, :, 1], color="#3b6ea5", lw=0.8)
            ax.plot(arr[:, i, 0], arr[:, i, 1], color="#c0504d", lw=0.8)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_sample_panels(
    panels: Mapping[str, Tensor],
    colors: Mapping[str, Tensor] | None = None,
    lim: float | None = None,
    cmap: str = "viridis",
    colorbar_label: str = "",
) -> Figure:
    """Scatter (N, 2) samples in one panel each; optional per-point values (N,) give the colour.

    Used for samples per context, per temperature, and coloured by log q.
    """
    names = list(panels)
    fig, axes = plt.subplots(1, len(names), figsize=(2.8 * len(names), 2.9), squeeze=False)
    scatter = None
    if colors:
        values = torch.cat([colors[n].detach().flatten().cpu() for n in names if n in colors])
        vmin, vmax = np.quantile(values.numpy(), [0.02, 0.98])
    for ax, name in zip(axes[0], names, strict=True):
        pts = panels[name].detach().cpu().numpy()
        if colors and name in colors:
            scatter = ax.scatter(pts[:, 0], pts[:, 1], s=3, c=colors[name].detach().cpu().numpy(),
                                 cmap=cmap, vmin=vmin, vmax=vmax, edgecolors="none")
        else:
            ax.scatter(pts[:, 0], pts[:, 1], s=3, c="#3b6ea5", alpha=0.5, edgecolors="none")
        mark_collapse(ax, pts, "#c0504d", scale=lim or 1.0)
        ax.set_title(name, fontsize=9)
        ax.set_aspect("equal")
        if lim is not None:
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
    fig.tight_layout()
    if scatter is not None:
        fig.colorbar(scatter, ax=list(axes[0]), shrink=0.85, label=colorbar_label)
    return fig


def plot_histograms(values: Mapping[str, Tensor], xlabel: str, bins: int = 40) -> Figure:
    """Overlaid histograms (densities) of 1D values, one per entry."""
    fig, ax = plt.subplots(figsize=(4.6, 3.0))
    for name, v in values.items():
        ax.hist(v.detach().flatten().cpu().numpy(), bins=bins, density=True, histtype="step", lw=1.5, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
