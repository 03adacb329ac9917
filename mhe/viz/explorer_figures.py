"""The hypothesis explorer's figures, as pure functions: tensors and DataFrames in, figures out.

:func:`hypotheses_figure` draws one item's hypotheses as a plotly figure with three panels (3D, the
256-px crop, per-joint diversity); :func:`accuracy_diversity_figure` puts every item's accuracy
(BH-MPJPE) against its occluded-joint diversity (PJD 3D-occ), one colour per objective;
:func:`plot_temperature_sweep` is a matplotlib figure of what the sampling temperature does;
:func:`metrics_text` writes an item's metrics (:func:`mhe.metrics.item_metrics`) as one line.
Visible and occluded joints follow the house encoding of :mod:`mhe.viz` (filled blue dot, red cross).
The plotly figures have a height but no width: they take the width of the page or notebook they are
shown in (:func:`mhe.viz.save_figure` writes them as responsive, self-contained pages).
:mod:`mhe.viz.explorer` builds them from a model's hypotheses; nothing here draws or holds a model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from mhe.body import HAND_KEYPOINTS, HAND_PARENTS, HAND_ROOT
from mhe.metrics import joint_diversity
from mhe.models.hand import CROP_PIXELS
from mhe.viz import (
    GROUND_TRUTH_COLOR,
    OBJECTIVE_COLORS,
    OCCLUDED_COLOR,
    OCCLUDED_LABEL,
    OCCLUDED_SYMBOL,
    VISIBLE_COLOR,
    VISIBLE_LABEL,
    VISIBLE_SYMBOL,
)
from mhe.viz.hands import LABELS

__all__ = [
    "GT_COLOR",
    "ITEM_HEIGHT",
    "ITEM_TRACES",
    "SELECTED_TRACE",
    "accuracy_diversity_figure",
    "hypotheses_figure",
    "metrics_text",
    "occluded_phrase",
    "plot_temperature_sweep",
    "selected_point",
]

GT_COLOR = GROUND_TRUTH_COLOR
ITEM_HEIGHT = 640  # px; the width follows the page (read at 1000 px and up)
_METRIC_FORMAT = (("mpjpe_bh", "BH-MPJPE", "mm"), ("ah", "AH", "px"), ("pjd_2d_vis", "PJD 2D-vis", "px"),
                  ("pjd_3d_occ", "PJD 3D-occ", "mm"), ("rd", "RD", ""), ("plausible", "plausible", "%"))  # fmt: skip
# Trace names of the item figure, in order: the widget updates these traces in place. The legend shows
# one entry per group (3D and 2D views of the same thing toggle together), named by the first trace.
ITEM_TRACES = (
    "hypotheses: bones to visible joints",  # 3D; legend entry of its group (objective's colour)
    "hypotheses: bones to occluded joints",  # 3D; legend entry of its group (red)
    "hypotheses: occluded joints (3D)",
    "ground truth (black)",  # 3D bones; legend entry of its group
    "ground truth: joints (3D)",  # blue dots on visible joints, red crosses on occluded ones
    "hypotheses: visible keypoints (2D)",
    "hypotheses: occluded keypoints (2D)",
    "ground truth: bones (2D)",
    VISIBLE_LABEL,  # the observed keypoints, 2D; legend entry of the blue dots (3D too)
    OCCLUDED_LABEL,  # the hidden keypoints, 2D; legend entry of the red crosses (3D too)
    "PJD 2D of a visible joint (px)",
    "PJD 3D of an occluded joint (mm)",
)


def metrics_text(metrics: Mapping[str, float], sep: str = " · ") -> str:
    """One line: ``BH-MPJPE 21.3 mm · AH 7.9 px · PJD 2D-vis 3.1 px · PJD 3D-occ 11.8 mm · RD 0.26 · plausible 98.0 %``
    (the last only when ``metrics`` has ``plausible``, a fraction)."""
    parts = []
    for key, label, unit in _METRIC_FORMAT:
        if key not in metrics and key == "plausible":
            continue  # a body without joint limits
        value = metrics.get(key, float("nan"))
        if key == "plausible":
            value = 100 * value
        text = "n/a" if not math.isfinite(value) else (f"{value:.2f}" if key == "rd" else f"{value:.1f}")
        parts.append(f"{label} {text}{' ' + unit if unit and text != 'n/a' else ''}")
    return sep.join(parts)


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().double().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=np.float64)


def _segments(points: np.ndarray, bones: Sequence[tuple[int, int]]) -> np.ndarray:
    """Line segments parent -> child of every skeleton: points (S, J, D) -> (S·bones·3, D), NaN-separated."""
    S, _, D = points.shape
    if not bones:
        return np.zeros((0, D))
    parents, children = (np.array(x) for x in zip(*bones, strict=True))
    seg = np.stack([points[:, parents], points[:, children], np.full((S, len(bones), D), np.nan)], axis=2)
    return seg.reshape(-1, D)


def _cube(points: np.ndarray, pad: float = 0.08) -> list[list[float]]:
    """Equal ranges on every axis around points (N, 3): a cube scene keeps millimetres equal."""
    finite = points[np.isfinite(points).all(-1)]
    lo, hi = finite.min(0), finite.max(0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * (1 + pad) + 1e-6
    return [[float(c - half), float(c + half)] for c in centre]


def hypotheses_figure(
    xyz_mm: Tensor,
    uv_px: Tensor,
    gt_xyz: Tensor,
    gt_uv: Tensor,
    visible: Tensor,
    color: str = OBJECTIVE_COLORS["mhentropy"],
    title: str | None = None,
    joint_names: Sequence[str] = tuple(HAND_KEYPOINTS),
    parents: Sequence[int] = tuple(HAND_PARENTS),
    root: int = HAND_ROOT,
    crop_pixels: int = CROP_PIXELS,
    diversity: Tensor | None = None,
    px_per_mm: float | None = None,
) -> Any:
    """One item's hypotheses as a plotly figure with three panels.

    Args:
        xyz_mm: (S, J, 3) hypotheses, root-relative, mm, camera frame (x right, y down, z depth).
        uv_px: (S, J, 2) their projections in px of the ``crop_pixels`` crop.
        gt_xyz: (J, 3) ground truth in mm; gt_uv: (J, 2) ground-truth keypoints in px; visible: (J,) bool.
        color: the objective's colour; title: figure title.
        diversity: (J,) the per-joint diversity to draw in the third panel; by default
            :func:`mhe.metrics.joint_diversity` of the hypotheses drawn. The explorer passes that of all S
            hypotheses while drawing only some, so that the bars are the numbers of its title.
        px_per_mm: the item's camera scale (px of the crop per mm at the hand), when known: the bar panel's
            axis title gives it and a visible joint's hover also reads its 2D spread in mm, since the
            blue (px) and red (mm) bars share one axis but not one unit.

    Left, 3D (mm, equal axes, seen roughly from the camera): every hypothesis's skeleton as thin
    translucent lines, bones to visible joints in ``color``, bones to occluded joints and the occluded
    joints themselves in red; the ground truth in black, its joints as blue dots (visible) and red
    crosses (occluded). Middle, the crop (px, y down): the hypotheses' projected keypoints (``color`` on
    visible joints, red on occluded ones), the observed keypoints as blue dots and the hidden ones as red
    crosses. Right, per-joint diversity (:func:`mhe.metrics.joint_diversity`; the root, which carries
    none, left out): PJD 2D in px on visible joints (blue), PJD 3D in mm on occluded ones (red). The
    traces are named as in :data:`ITEM_TRACES`, in that order, whatever the inputs. No fixed width: the
    figure fills its page.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    xyz, uv, gxyz, guv = _np(xyz_mm), _np(uv_px), _np(gt_xyz), _np(gt_uv)
    vis = _np(visible).astype(bool)
    S, J = xyz.shape[:2]
    bones = [(int(p), j) for j, p in enumerate(parents) if p >= 0]
    bones_vis = [(p, j) for p, j in bones if vis[j]]
    bones_occ = [(p, j) for p, j in bones if not vis[j]]
    # Fainter lines the more hypotheses overlap, so that where they agree still reads as one dark line.
    alpha = float(np.clip(3.0 / max(S, 1) ** 0.5, 0.06, 0.7))

    fig = make_subplots(rows=1, cols=3, column_widths=[0.38, 0.33, 0.29], horizontal_spacing=0.09,
                        specs=[[{"type": "scene"}, {"type": "xy"}, {"type": "xy"}]],
                        subplot_titles=("3D (mm): x right, y down, z depth",
                                        f"image crop ({crop_pixels} × {crop_pixels} px)",
                                        "per-joint diversity (PJD)"))
    names = iter(ITEM_TRACES)

    def add(trace: Any, col: int, group: str, legend: bool = False) -> None:
        # One legend entry per group: the 3D and 2D views of the same thing toggle together.
        fig.add_trace(trace.update(name=next(names), legendgroup=group, showlegend=legend), row=1, col=col)

    def lines3d(seg: np.ndarray, c: str, width: float, opacity: float) -> Any:
        return go.Scatter3d(x=seg[:, 0], y=seg[:, 1], z=seg[:, 2], mode="lines", opacity=opacity,
                            line=dict(color=c, width=width), hoverinfo="skip")

    def joints(c: str | list[str], symbol: str | list[str], size: float) -> dict[str, Any]:
        return dict(size=size, color=c, symbol=symbol, line=dict(color="white", width=1))

    occ_pts = xyz[:, ~vis].reshape(-1, 3)
    add(lines3d(_segments(xyz, bones_vis), color, 2, alpha), 1, "hyp_vis", True)
    add(lines3d(_segments(xyz, bones_occ), OCCLUDED_COLOR, 2, alpha), 1, "hyp_occ", True)
    add(go.Scatter3d(x=occ_pts[:, 0], y=occ_pts[:, 1], z=occ_pts[:, 2], mode="markers", opacity=alpha,
                     marker=dict(size=1.6, color=OCCLUDED_COLOR), hoverinfo="skip"), 1, "hyp_occ")
    add(lines3d(_segments(gxyz[None], bones), GT_COLOR, 5, 1.0), 1, "truth", True)
    add(go.Scatter3d(x=gxyz[:, 0], y=gxyz[:, 1], z=gxyz[:, 2], mode="markers",
                     marker=joints([VISIBLE_COLOR if v else OCCLUDED_COLOR for v in vis],
                                   [VISIBLE_SYMBOL if v else OCCLUDED_SYMBOL for v in vis], 5),
                     text=[f"{n} ({'visible' if v else 'occluded'})" for n, v in zip(joint_names, vis, strict=True)],
                     hovertemplate="%{text}<extra>ground truth</extra>"), 1, "truth")

    hv, ho = uv[:, vis].reshape(-1, 2), uv[:, ~vis].reshape(-1, 2)
    small = dict(size=3, opacity=float(np.clip(alpha * 1.5, 0.1, 0.8)))
    add(go.Scatter(x=hv[:, 0], y=hv[:, 1], mode="markers", hoverinfo="skip", marker=dict(color=color, **small)),
        2, "hyp_vis")
    add(go.Scatter(x=ho[:, 0], y=ho[:, 1], mode="markers", hoverinfo="skip",
                   marker=dict(color=OCCLUDED_COLOR, **small)), 2, "hyp_occ")
    gseg = _segments(guv[None], bones)
    add(go.Scatter(x=gseg[:, 0], y=gseg[:, 1], mode="lines", hoverinfo="skip", line=dict(color=GT_COLOR, width=1.2)),
        2, "truth")
    label = np.array(joint_names, dtype=object)
    add(go.Scatter(x=guv[vis, 0], y=guv[vis, 1], mode="markers", text=label[vis],
                   marker=joints(VISIBLE_COLOR, VISIBLE_SYMBOL, 9),
                   hovertemplate="%{text}: u %{x:.0f} px, v %{y:.0f} px<extra>visible</extra>"), 2, "observed", True)
    add(go.Scatter(x=guv[~vis, 0], y=guv[~vis, 1], mode="markers", text=label[~vis],
                   marker=joints(OCCLUDED_COLOR, OCCLUDED_SYMBOL, 10),
                   hovertemplate="%{text}: u %{x:.0f} px, v %{y:.0f} px<extra>occluded</extra>"), 2, "hidden", True)

    if diversity is None:
        div = _np(joint_diversity(torch.as_tensor(xyz), torch.as_tensor(uv), torch.as_tensor(vis)))
    else:
        div = _np(diversity)
        if div.shape != (J,):
            raise ValueError(f"diversity must have one value per joint, shape ({J},), got {div.shape}")
    keep = np.arange(J) != root
    scale = float(px_per_mm) if px_per_mm is not None and np.isfinite(px_per_mm) and px_per_mm > 0 else None
    for mask, unit, c, group in ((vis, "px", VISIBLE_COLOR, "pjd_vis"), (~vis, "mm", OCCLUDED_COLOR, "pjd_occ")):
        in_mm = " (≈ %{customdata:.2f} mm)" if unit == "px" and scale else ""
        add(go.Bar(x=np.where(mask, div, np.nan)[keep], y=label[keep], orientation="h", marker_color=c,
                   customdata=(div / scale)[keep] if in_mm else None,
                   hovertemplate=f"%{{y}}: %{{x:.2f}} {unit}{in_mm}<extra></extra>"), 3, group, True)

    ranges = _cube(np.concatenate([xyz.reshape(-1, 3), gxyz]))
    axis = lambda t, r: dict(title=t, range=r, backgroundcolor="#f7f7f7")  # noqa: E731
    fig.update_layout(
        scene=dict(xaxis=axis("x (mm)", ranges[0]), yaxis=axis("y (mm, down)", ranges[1]),
                   zaxis=axis("z, depth (mm)", ranges[2]), aspectmode="cube",
                   # Seen from in front of the image plane, image "down" (+y) pointing down on screen.
                   # Far enough back that the axes and their titles fit the panel at 1000 px.
                   camera=dict(up=dict(x=0, y=-1, z=0), eye=dict(x=1.2, y=-1.05, z=-2.6))),
        barmode="overlay", autosize=True, height=ITEM_HEIGHT,
        title=dict(text=title, x=0.5, xanchor="center", font=dict(size=14)),
        # Below the panels, in the page's (not the plot's) coordinates: it never covers an axis title.
        legend=dict(orientation="h", yref="container", y=0.01, yanchor="bottom", x=0.5, xanchor="center",
                    font=dict(size=11), itemsizing="constant"),
        margin=dict(l=10, r=10, t=100, b=120), template="plotly_white",
    )
    pad = 0.04 * crop_pixels
    fig.update_xaxes(range=[-pad, crop_pixels + pad], title="u (px)", constrain="domain", row=1, col=2)
    fig.update_yaxes(range=[crop_pixels + pad, -pad], title="v (px, down)", scaleanchor="x", scaleratio=1,
                     constrain="domain", row=1, col=2)
    fig.add_shape(type="rect", x0=0, y0=0, x1=crop_pixels, y1=crop_pixels, line=dict(color="#999999", width=1),
                  row=1, col=2)
    # Two units on one axis: say so, and how to convert, rather than let bar lengths be compared as they are.
    bar_title = "PJD: blue 2D px, red 3D mm"
    if scale:
        bar_title += f"<br>({scale:.2f} px per mm at this hand)"
    fig.update_xaxes(title=bar_title, rangemode="tozero", row=1, col=3)
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=9), row=1, col=3)
    return fig


SELECTED_TRACE = "chosen item"  # the accuracy-vs-diversity scatter's last trace: a ring around the explored point


def occluded_phrase(count: int | str, num_joints: int) -> str:
    """How every figure and line of the explorer counts occluded joints: ``"13 of 20 joints occluded (root
    not counted)"`` — the non-root joints, as the metrics (PJD 3D-occ) count them. ``count`` may be a
    plotly hover placeholder."""
    return f"{count} of {int(num_joints) - 1} joints occluded (root not counted)"


def accuracy_diversity_figure(frame: pd.DataFrame, title: str | None = None,
                              selected: tuple[str, int] | None = None, num_joints: int | None = None) -> Any:
    """Per-item accuracy against diversity, one colour per objective.

    ``frame`` has one row per (objective, item) with columns ``objective``, ``index``, ``mpjpe_bh``,
    ``pjd_3d_occ`` (mm), ``ah``, ``pjd_2d_vis`` (px), ``rd`` and ``occluded`` (number of occluded
    non-root joints), as :meth:`mhe.viz.explorer.HypothesisExplorer.dataset_metrics` returns. x: PJD
    3D-occ, y: BH-MPJPE; hovering a point shows its item index and metrics. Traces follow the order of
    first appearance of the objectives, each with ``meta`` = the objective's name and ``customdata`` rows
    (index, ah, pjd_2d_vis, rd, occluded). Items with no occluded joint have no x and are not drawn.
    With ``selected = (objective, index)`` a last trace, :data:`SELECTED_TRACE`, rings that item's point
    (empty when the item is not drawn; the explorer's widget moves it). ``num_joints`` (J, root included)
    lets the hover say "k of J − 1 joints occluded", as the explorer's titles do. No fixed width: the
    figure fills its page.
    """
    import plotly.graph_objects as go

    missing = {"objective", "index", "mpjpe_bh", "pjd_3d_occ", "ah", "pjd_2d_vis", "rd", "occluded"} - set(frame)
    if missing:
        raise ValueError(f"frame lacks the columns {sorted(missing)}; build it with HypothesisExplorer.dataset_metrics")
    count = "%{customdata[4]:.0f}"
    occluded = (f"{count} joints occluded (root not counted)" if num_joints is None
                else occluded_phrase(count, num_joints))
    fig = go.Figure()
    for name in pd.unique(frame["objective"]):
        part = frame[frame["objective"] == name]
        fig.add_trace(go.Scatter(
            x=part["pjd_3d_occ"].to_numpy(float), y=part["mpjpe_bh"].to_numpy(float), mode="markers",
            name=LABELS.get(name, name), meta=name,
            marker=dict(size=7, color=OBJECTIVE_COLORS.get(name, "#555555"), opacity=0.75,
                        line=dict(color="white", width=0.5)),
            customdata=part[["index", "ah", "pjd_2d_vis", "rd", "occluded"]].to_numpy(float),
            hovertemplate=(f"item %{{customdata[0]:.0f}}: {occluded}<br>"
                           "BH-MPJPE %{y:.1f} mm<br>PJD 3D-occ %{x:.1f} mm<br>AH %{customdata[1]:.1f} px<br>"
                           "PJD 2D-vis %{customdata[2]:.1f} px<br>RD %{customdata[3]:.2f}"
                           f"<extra>{LABELS.get(name, name)}</extra>"),
        ))
    if selected is not None:
        fig.add_trace(go.Scatter(**selected_point(frame, *selected), mode="markers", name=SELECTED_TRACE,
                                 hoverinfo="skip", showlegend=True,
                                 marker=dict(size=20, symbol="circle-open", color=GT_COLOR, line=dict(width=2.5))))
    fig.update_layout(
        title=dict(text=title or "accuracy vs diversity, one point per test item (click a point to explore it)",
                   font=dict(size=14)),
        xaxis_title="PJD 3D of occluded joints (mm): diversity where the hand or body is hidden",
        yaxis_title="BH-MPJPE (mm): error of the best hypothesis",
        template="plotly_white", autosize=True, height=560, legend=dict(title="objective"),
        margin=dict(l=70, r=20, t=70, b=60),
    )
    return fig


def selected_point(frame: pd.DataFrame, objective: str, index: int) -> dict[str, list[float]]:
    """``{"x": [...], "y": [...]}`` of item ``index`` under ``objective`` in :func:`accuracy_diversity_figure`'s
    scatter (empty lists when the frame does not hold it or it is not drawn: no occluded joint)."""
    row = frame[(frame["objective"] == objective) & (frame["index"] == int(index))]
    if row.empty or not np.isfinite(row["pjd_3d_occ"].iloc[0]) or not np.isfinite(row["mpjpe_bh"].iloc[0]):
        return {"x": [], "y": []}
    return {"x": [float(row["pjd_3d_occ"].iloc[0])], "y": [float(row["mpjpe_bh"].iloc[0])]}


def plot_temperature_sweep(frame: pd.DataFrame, reference: float | None = 0.8) -> Any:
    """What the sampling temperature does: a matplotlib figure of PJD 3D-occ, PJD 2D-vis, BH-MPJPE and AH
    against the temperature, one line per objective (``frame`` from
    :meth:`mhe.viz.explorer.HypothesisExplorer.temperature_sweep`); ``reference`` marks the official
    evaluation's T."""
    import matplotlib.pyplot as plt

    panels = (("pjd_3d_occ", "PJD 3D occluded (mm)"), ("pjd_2d_vis", "PJD 2D visible (px)"),
              ("mpjpe_bh", "BH-MPJPE (mm)"), ("ah", "AH: worst hypothesis (px)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.3))
    for ax, (col, label) in zip(axes, panels, strict=True):
        for name, part in frame.groupby("objective", sort=False):
            part = part.sort_values("temperature")
            ax.plot(part["temperature"], part[col], "o-", ms=4, color=OBJECTIVE_COLORS.get(name, "#555555"),
                    label=LABELS.get(name, name))
        if reference is not None:
            ax.axvline(reference, color="#999999", ls="--", lw=1)
        ax.set_xlabel("temperature T")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.suptitle("sampling temperature T: the base noise is z ~ N(0, T²); dashed: the official evaluation's T",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
