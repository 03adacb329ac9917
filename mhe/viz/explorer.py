"""Interactive explorer of a hand model's hypotheses: how diverse they are, where, and how accurate.

:class:`HypothesisExplorer` wraps trained hand models (:class:`mhe.models.hand.MultiHypothesisHand`,
one per objective) and a hand dataset. For one item and objective it draws S hypotheses on the
model's device, seeded by (seed, objective, item) so the same request always gives the same
hypotheses and every temperature scales the *same* base noise, and caches them. The figures are
plotly: :meth:`~HypothesisExplorer.item_figure` shows the hypotheses in 3D, projected into the
256-px crop, and the per-joint diversity (PJD, :func:`mhe.metrics.pjd`: 2D on visible joints, 3D on
occluded ones) with the item's metrics in the title; :meth:`~HypothesisExplorer.dataset_figure`
puts every item's accuracy (BH-MPJPE) against its occluded-joint diversity (PJD 3D-occ);
:meth:`~HypothesisExplorer.widget` puts ipywidgets controls (objective, item, temperature, number of
hypotheses) around a figure that is updated in place. The figures are built by pure functions
(:func:`hypotheses_figure`, :func:`accuracy_diversity_figure`) of tensors and DataFrames, so they
are tested without a browser. The live figure is a ``plotly.graph_objects.FigureWidget`` when
``anywidget`` is installed (plotly >= 6 needs it; clicking a point of the dataset scatter then
selects that item), else a plain figure re-rendered into an ``ipywidgets.Output``.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import default_collate

from mhe.body import HAND_KEYPOINTS, HAND_PARENTS, HAND_ROOT
from mhe.metrics import evaluate_per_image, pjd
from mhe.models.hand import CROP_PIXELS, predict
from mhe.viz import OBJECTIVE_COLORS, OCCLUDED_COLOR, VISIBLE_COLOR
from mhe.viz.hands import LABELS

__all__ = [
    "ExplorerWidget",
    "HypothesisExplorer",
    "accuracy_diversity_figure",
    "figure_widget_available",
    "hypotheses_figure",
    "item_metrics",
    "joint_diversity",
    "metrics_text",
    "plot_temperature_sweep",
]

GT_COLOR = "#111111"
METRIC_KEYS = ("mpjpe_bh", "pa_mpjpe_bh", "ah", "pjd_2d_vis", "pjd_3d_occ", "rd")
_METRIC_FORMAT = (("mpjpe_bh", "BH-MPJPE", "mm"), ("ah", "AH", "px"), ("pjd_2d_vis", "PJD 2D-vis", "px"),
                  ("pjd_3d_occ", "PJD 3D-occ", "mm"), ("rd", "RD", ""))  # fmt: skip
# Trace names of the item figure, in order: the widget updates these traces in place.
ITEM_TRACES = (
    "hypotheses on visible joints",  # 3D bones to visible joints; legend entry of its group
    "hypotheses on occluded joints",  # 3D bones to occluded joints; legend entry of its group
    "hypotheses: occluded joints (3D)",
    "ground truth",  # 3D bones; legend entry of its group
    "ground truth: joints (3D)",
    "hypotheses: visible keypoints (2D)",
    "hypotheses: occluded keypoints (2D)",
    "ground truth: bones (2D)",
    "observed keypoints (visible)",
    "hidden keypoints (never observed)",
    "PJD 2D of a visible joint (px)",
    "PJD 3D of an occluded joint (mm)",
)


# -- pure functions: tensors in, numbers and figures out ---------------------------------------------


def joint_diversity(xyz_mm: Tensor, uv_px: Tensor, visible: Tensor) -> Tensor:
    """The explorer's per-joint bars for one item: xyz_mm (S, J, 3), uv_px (S, J, 2), visible (J,) -> (J,).

    PJD (:func:`mhe.metrics.pjd`) of the 2D projections in px on visible joints and of the 3D joints in
    mm on occluded ones: the two diversities the paper reports (2D Vis PJD, 3D Occ PJD), joint by joint.
    """
    if xyz_mm.dim() != 3 or uv_px.dim() != 3 or xyz_mm.shape[:2] != uv_px.shape[:2]:
        raise ValueError(f"expected xyz_mm (S, J, 3) and uv_px (S, J, 2), got {tuple(xyz_mm.shape)} "
                         f"and {tuple(uv_px.shape)}")
    d2, d3 = pjd(uv_px[None].double())[0], pjd(xyz_mm[None].double())[0]
    return torch.where(visible.to(d2.device).bool(), d2, d3)


def item_metrics(
    xyz_mm: Tensor, uv_px: Tensor, gt_xyz: Tensor, gt_uv: Tensor, visible: Tensor, root: int = HAND_ROOT
) -> dict[str, float]:
    """The paper's metrics of one item: xyz_mm (S, J, 3), uv_px (S, J, 2), gt_xyz (J, 3) mm, gt_uv (J, 2)
    px, visible (J,) bool -> ``mpjpe_bh``, ``pa_mpjpe_bh`` (mm), ``ah`` (px), ``pjd_2d_vis`` (px),
    ``pjd_3d_occ`` (mm) and ``rd`` = pjd_2d_vis / pjd_3d_occ (:func:`mhe.metrics.evaluate_per_image`);
    NaN where the item has no visible / occluded non-root joint."""
    per = evaluate_per_image(xyz_mm[None].float(), gt_xyz[None].float(), uv_px[None].float(),
                             gt_uv[None].float(), visible[None].bool(), root)
    out = {k: float(per[k][0]) for k in METRIC_KEYS if k != "rd"}
    occ = out["pjd_3d_occ"]
    out["rd"] = out["pjd_2d_vis"] / occ if occ > 0 else float("nan")
    return out


def metrics_text(metrics: Mapping[str, float], sep: str = " · ") -> str:
    """One line: ``BH-MPJPE 21.3 mm · AH 7.9 px · PJD 2D-vis 3.1 px · PJD 3D-occ 11.8 mm · RD 0.26``."""
    parts = []
    for key, label, unit in _METRIC_FORMAT:
        value = metrics.get(key, float("nan"))
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
    parents, children = (np.array(x) for x in zip(*bones))
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
) -> Any:
    """One item's hypotheses as a plotly figure with three panels.

    Args:
        xyz_mm: (S, J, 3) hypotheses, root-relative, mm, camera frame (x right, y down, z depth).
        uv_px: (S, J, 2) their projections in px of the ``crop_pixels`` crop.
        gt_xyz: (J, 3) ground truth in mm; gt_uv: (J, 2) ground-truth keypoints in px; visible: (J,) bool.
        color: the objective's colour; title: figure title.

    Left, 3D (mm, equal axes, seen roughly from the camera): every hypothesis's skeleton as thin
    translucent lines, bones to occluded joints and the occluded joints themselves in the occluded
    colour; the ground truth in black. Middle, the crop (px, y down): the hypotheses' projected
    keypoints, the observed visible keypoints as filled markers and the occluded ground-truth keypoints
    as crosses. Right, per-joint diversity (:func:`joint_diversity`; the root, which carries none, left
    out): PJD 2D in px on visible joints, PJD 3D in mm on occluded ones. The traces are named as in
    :data:`ITEM_TRACES`, in that order, whatever the inputs.
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

    fig = make_subplots(rows=1, cols=3, column_widths=[0.4, 0.34, 0.26], horizontal_spacing=0.06,
                        specs=[[{"type": "scene"}, {"type": "xy"}, {"type": "xy"}]],
                        subplot_titles=("3D hypotheses (mm)", f"crop ({crop_pixels} px)",
                                        "per-joint diversity"))
    names = iter(ITEM_TRACES)

    def add(trace: Any, col: int, group: str, legend: bool = False) -> None:
        # One legend entry per group: the 3D and 2D views of the same thing toggle together.
        fig.add_trace(trace.update(name=next(names), legendgroup=group, showlegend=legend), row=1, col=col)

    def lines3d(seg: np.ndarray, c: str, width: float, opacity: float) -> Any:
        return go.Scatter3d(x=seg[:, 0], y=seg[:, 1], z=seg[:, 2], mode="lines", opacity=opacity,
                            line=dict(color=c, width=width), hoverinfo="skip")

    occ_pts = xyz[:, ~vis].reshape(-1, 3)
    add(lines3d(_segments(xyz, bones_vis), color, 2, alpha), 1, "hyp_vis", True)
    add(lines3d(_segments(xyz, bones_occ), OCCLUDED_COLOR, 2, alpha), 1, "hyp_occ", True)
    add(go.Scatter3d(x=occ_pts[:, 0], y=occ_pts[:, 1], z=occ_pts[:, 2], mode="markers", opacity=alpha,
                     marker=dict(size=1.6, color=OCCLUDED_COLOR), hoverinfo="skip"), 1, "hyp_occ")
    add(lines3d(_segments(gxyz[None], bones), GT_COLOR, 5, 1.0), 1, "truth", True)
    add(go.Scatter3d(x=gxyz[:, 0], y=gxyz[:, 1], z=gxyz[:, 2], mode="markers",
                     marker=dict(size=2.5, color=[VISIBLE_COLOR if v else OCCLUDED_COLOR for v in vis]),
                     text=list(joint_names), hovertemplate="%{text}<extra>ground truth</extra>"), 1, "truth")

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
                   marker=dict(size=8, color=VISIBLE_COLOR, line=dict(color="white", width=1)),
                   hovertemplate="%{text}<extra>observed</extra>"), 2, "observed", True)
    add(go.Scatter(x=guv[~vis, 0], y=guv[~vis, 1], mode="markers", text=label[~vis],
                   marker=dict(size=8, color=OCCLUDED_COLOR, symbol="x-thin-open", line=dict(width=2)),
                   hovertemplate="%{text}<extra>occluded</extra>"), 2, "hidden", True)

    div = _np(joint_diversity(torch.as_tensor(xyz), torch.as_tensor(uv), torch.as_tensor(vis)))
    keep = np.arange(J) != root
    for mask, unit, c, group in ((vis, "px", VISIBLE_COLOR, "pjd_vis"), (~vis, "mm", OCCLUDED_COLOR, "pjd_occ")):
        add(go.Bar(x=np.where(mask, div, np.nan)[keep], y=label[keep], orientation="h", marker_color=c,
                   hovertemplate=f"%{{y}}: %{{x:.2f}} {unit}<extra></extra>"), 3, group, True)

    ranges = _cube(np.concatenate([xyz.reshape(-1, 3), gxyz]))
    axis = lambda t, r: dict(title=t, range=r, backgroundcolor="#f7f7f7")  # noqa: E731
    fig.update_layout(
        scene=dict(xaxis=axis("x (mm)", ranges[0]), yaxis=axis("y (mm, down)", ranges[1]),
                   zaxis=axis("z depth (mm)", ranges[2]), aspectmode="cube",
                   # Seen from in front of the image plane, image "down" (+y) pointing down on screen.
                   camera=dict(up=dict(x=0, y=-1, z=0), eye=dict(x=0.9, y=-0.8, z=-2.0))),
        barmode="overlay", height=560, width=1400, title=dict(text=title, x=0.5, font=dict(size=14)),
        legend=dict(orientation="h", y=-0.12, font=dict(size=10)), margin=dict(l=10, r=10, t=90, b=10),
        template="plotly_white",
    )
    pad = 0.04 * crop_pixels
    fig.update_xaxes(range=[-pad, crop_pixels + pad], title="u (px)", constrain="domain", row=1, col=2)
    fig.update_yaxes(range=[crop_pixels + pad, -pad], title="v (px)", scaleanchor="x", scaleratio=1,
                     constrain="domain", row=1, col=2)
    fig.add_shape(type="rect", x0=0, y0=0, x1=crop_pixels, y1=crop_pixels, line=dict(color="#999999", width=1),
                  row=1, col=2)
    fig.update_xaxes(title="PJD (px on visible, mm on occluded)", rangemode="tozero", row=1, col=3)
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=9), row=1, col=3)
    return fig


def accuracy_diversity_figure(frame: pd.DataFrame, title: str | None = None) -> Any:
    """Per-item accuracy against diversity, one colour per objective.

    ``frame`` has one row per (objective, item) with columns ``objective``, ``index``, ``mpjpe_bh``,
    ``pjd_3d_occ`` (mm), ``ah``, ``pjd_2d_vis`` (px), ``rd`` and ``occluded`` (number of occluded
    non-root joints), as :meth:`HypothesisExplorer.dataset_metrics` returns. x: PJD 3D-occ, y:
    BH-MPJPE; hovering a point shows its item index and metrics. Traces follow the order of first
    appearance of the objectives, each with ``meta`` = the objective's name and ``customdata`` rows
    (index, ah, pjd_2d_vis, rd, occluded). Items with no occluded joint have no x and are not drawn.
    """
    import plotly.graph_objects as go

    missing = {"objective", "index", "mpjpe_bh", "pjd_3d_occ", "ah", "pjd_2d_vis", "rd", "occluded"} - set(frame)
    if missing:
        raise ValueError(f"frame lacks the columns {sorted(missing)}; build it with HypothesisExplorer.dataset_metrics")
    fig = go.Figure()
    for name in pd.unique(frame["objective"]):
        part = frame[frame["objective"] == name]
        fig.add_trace(go.Scatter(
            x=part["pjd_3d_occ"].to_numpy(float), y=part["mpjpe_bh"].to_numpy(float), mode="markers",
            name=LABELS.get(name, name), meta=name,
            marker=dict(size=7, color=OBJECTIVE_COLORS.get(name, "#555555"), opacity=0.75,
                        line=dict(color="white", width=0.5)),
            customdata=part[["index", "ah", "pjd_2d_vis", "rd", "occluded"]].to_numpy(float),
            hovertemplate=("item %{customdata[0]:.0f} (%{customdata[4]:.0f} occluded joints)<br>"
                           "BH-MPJPE %{y:.1f} mm<br>PJD 3D-occ %{x:.1f} mm<br>AH %{customdata[1]:.1f} px<br>"
                           "PJD 2D-vis %{customdata[2]:.1f} px<br>RD %{customdata[3]:.2f}"
                           f"<extra>{LABELS.get(name, name)}</extra>"),
        ))
    fig.update_layout(
        title=title or "accuracy vs diversity, one point per test item (click a point to explore it)",
        xaxis_title="PJD 3D of occluded joints (mm): diversity where the hand is hidden",
        yaxis_title="BH-MPJPE (mm): error of the best hypothesis",
        template="plotly_white", height=480, width=900, legend=dict(title="objective"),
    )
    return fig


def plot_temperature_sweep(frame: pd.DataFrame, reference: float | None = 0.8) -> Any:
    """What the sampling temperature does: a matplotlib figure of PJD 3D-occ, PJD 2D-vis, BH-MPJPE and AH
    against the temperature, one line per objective (``frame`` from
    :meth:`HypothesisExplorer.temperature_sweep`); ``reference`` marks the official evaluation's T."""
    import matplotlib.pyplot as plt

    panels = (("pjd_3d_occ", "PJD 3D occluded (mm)"), ("pjd_2d_vis", "PJD 2D visible (px)"),
              ("mpjpe_bh", "BH-MPJPE (mm)"), ("ah", "AH: worst hypothesis (px)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.3))
    for ax, (col, label) in zip(axes, panels):
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


def figure_widget_available() -> bool:
    """Whether ``plotly.graph_objects.FigureWidget`` works here (plotly >= 6 needs ``anywidget``)."""
    import importlib.util

    import plotly

    return int(plotly.__version__.split(".")[0]) < 6 or importlib.util.find_spec("anywidget") is not None


def _mimebundle(fig: Any) -> dict[str, Any]:
    """A display_data output of a plotly figure (rendered by JupyterLab's plotly mime renderer)."""
    spec = json.loads(fig.to_json())
    spec["config"] = {"responsive": True}
    return {"output_type": "display_data", "metadata": {},
            "data": {"application/vnd.plotly.v1+json": spec, "text/plain": ["<plotly figure>"]}}


# -- the explorer ------------------------------------------------------------------------------------


class HypothesisExplorer:
    """Hypotheses of several hand models on one dataset, drawn on demand, seeded and cached.

    Args:
        models: ``{objective: model}``; each model is a :class:`mhe.models.hand.MultiHypothesisHand`
            (or anything :func:`mhe.models.hand.predict` accepts), in eval mode, on any device.
        dataset: items with ``obs``, ``visible (J,)``, ``keypoints_2d_px (J, 2)``, ``joints_3d_mm (J, 3)``,
            ``scale`` (e.g. :class:`mhe.data.SyntheticHands`).
        num_samples: S hypotheses drawn per item (the official evaluation: 200).
        temperature: default sampling temperature T > 0 (official: 0.8).
        seed: hypotheses of (objective, item) come from the noise seeded by (seed, objective, item),
            whatever else was drawn before; all temperatures scale that same base noise.
        mode_only: objectives evaluated by their single mode (the deterministic model): their S
            hypotheses are copies of it and the temperature does not apply.
        cache_size: number of (objective, item, temperature) draws kept in memory.
    """

    def __init__(
        self,
        models: Mapping[str, nn.Module],
        dataset: Any,
        num_samples: int = 200,
        temperature: float = 0.8,
        seed: int = 0,
        mode_only: Iterable[str] = ("deterministic",),
        cache_size: int = 512,
    ) -> None:
        if not isinstance(models, Mapping) or len(models) == 0:
            raise ValueError("models must be a non-empty mapping {objective: model}, e.g. {'mhentropy': model}")
        if len(dataset) == 0:
            raise ValueError("the dataset is empty; pass a dataset with at least one item")
        if int(num_samples) < 2:
            raise ValueError(f"num_samples must be at least 2 (diversity needs two hypotheses), got {num_samples}")
        self.models = dict(models)
        self.dataset = dataset
        self.num_samples = int(num_samples)
        self.temperature = self._check_temperature(temperature)
        self.seed = int(seed)
        self.mode_only = frozenset(mode_only)
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[tuple, dict[str, Tensor]] = OrderedDict()

    # -- checks -------------------------------------------------------------------------------------

    @property
    def objectives(self) -> list[str]:
        """The objectives' names, in the order the models were given."""
        return list(self.models)

    def _check_objective(self, objective: str) -> str:
        if objective not in self.models:
            raise ValueError(f"unknown objective {objective!r}; available: {', '.join(self.objectives)}")
        return objective

    def _check_index(self, index: int) -> int:
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(f"item index must be an integer, got {type(index).__name__}") from None
        n = len(self.dataset)
        if not 0 <= i < n:
            raise IndexError(f"item index {i} is out of range: the dataset has {n} items, valid indices are 0..{n - 1}")
        return i

    @staticmethod
    def _check_temperature(temperature: float) -> float:
        t = float(temperature)
        if not (math.isfinite(t) and t > 0):
            raise ValueError(f"temperature must be a finite number > 0 (it scales the base noise), got {temperature}")
        return t

    def _resolve(self, temperature: float | None, num_hypotheses: int | None) -> tuple[float, int]:
        t = self.temperature if temperature is None else self._check_temperature(temperature)
        n = self.num_samples if num_hypotheses is None else int(num_hypotheses)
        if n < 1:
            raise ValueError(f"num_hypotheses must be at least 1, got {num_hypotheses}")
        return t, n

    # -- drawing ------------------------------------------------------------------------------------

    def item(self, index: int) -> dict[str, Tensor]:
        """The dataset's item ``index`` (checked against the valid range)."""
        return self.dataset[self._check_index(index)]

    def _noise_seed(self, objective: str, index: int) -> int:
        # A stable hash (Python's hash() of a str changes between processes).
        digest = hashlib.sha256(f"{self.seed}/{objective}/{index}".encode()).digest()
        return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)

    def hypotheses(self, index: int, objective: str, temperature: float | None = None) -> dict[str, Tensor]:
        """The S hypotheses of item ``index`` under ``objective``: ``xyz_mm (S, J, 3)`` root-relative mm and
        ``uv_px (S, J, 2)`` px of the 256 crop, float32 on the CPU (drawn on the model's device).

        Seeded by (seed, objective, index) and cached: the same call returns the same tensors.
        """
        objective, index = self._check_objective(objective), self._check_index(index)
        t, _ = self._resolve(temperature, None)
        mode = objective in self.mode_only
        key = (objective, index, None if mode else t)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        model = self.models[objective]
        device = next(model.parameters()).device
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in default_collate([self.item(index)]).items()}
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self._noise_seed(objective, index))
            out = predict(model, batch, self.num_samples, t, mode_only=mode)
        result = {"xyz_mm": out["xyz_mm"][0].float().cpu(), "uv_px": out["uv_px"][0].float().cpu()}
        self._cache[key] = result
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return result

    def _shown(self, index: int, objective: str, temperature: float | None,
               num_hypotheses: int | None) -> tuple[dict[str, Tensor], float, int]:
        t, n = self._resolve(temperature, num_hypotheses)
        hyp = self.hypotheses(index, objective, t)
        return {k: v[:n] for k, v in hyp.items()}, t, min(n, len(hyp["xyz_mm"]))

    def _ground_truth(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        item = self.item(index)
        return item["joints_3d_mm"].float().cpu(), item["keypoints_2d_px"].float().cpu(), item["visible"].bool().cpu()

    # -- numbers ------------------------------------------------------------------------------------

    def item_metrics(self, index: int, objective: str, temperature: float | None = None,
                     num_hypotheses: int | None = None) -> dict[str, float]:
        """:func:`item_metrics` of the first ``num_hypotheses`` (default all S) hypotheses of item ``index``."""
        hyp, _, _ = self._shown(index, objective, temperature, num_hypotheses)
        return item_metrics(hyp["xyz_mm"], hyp["uv_px"], *self._ground_truth(index))

    def joint_diversity(self, index: int, objective: str, temperature: float | None = None,
                        num_hypotheses: int | None = None) -> Tensor:
        """:func:`joint_diversity` (J,) of the first ``num_hypotheses`` hypotheses of item ``index``."""
        hyp, _, _ = self._shown(index, objective, temperature, num_hypotheses)
        return joint_diversity(hyp["xyz_mm"], hyp["uv_px"], self._ground_truth(index)[2])

    def dataset_metrics(self, num_items: int | None = None, objectives: Sequence[str] | None = None,
                        temperature: float | None = None, num_hypotheses: int | None = None) -> pd.DataFrame:
        """Per-item metrics of the first ``num_items`` items (default all) for each objective: one row per
        (objective, item) with ``objective``, ``index``, ``occluded`` (occluded non-root joints) and
        :data:`METRIC_KEYS`; the same hypotheses as :meth:`item_figure` shows."""
        n = len(self.dataset) if num_items is None else int(num_items)
        if not 1 <= n <= len(self.dataset):
            raise ValueError(f"num_items must be between 1 and {len(self.dataset)} (the dataset's size), "
                             f"got {num_items}")
        names = self.objectives if objectives is None else [self._check_objective(o) for o in objectives]
        t, S = self._resolve(temperature, num_hypotheses)
        gt = [self._ground_truth(i) for i in range(n)]
        gt_xyz, gt_uv, vis = (torch.stack(x) for x in zip(*gt))
        keep = torch.ones(vis.shape[1], dtype=torch.bool)
        keep[HAND_ROOT] = False
        rows = []
        for name in names:
            hyps = [self._shown(i, name, t, S)[0] for i in range(n)]
            per = evaluate_per_image(torch.stack([h["xyz_mm"] for h in hyps]), gt_xyz,
                                     torch.stack([h["uv_px"] for h in hyps]), gt_uv, vis, HAND_ROOT)
            with np.errstate(divide="ignore", invalid="ignore"):
                rd = np.where(per["pjd_3d_occ"].numpy() > 0, per["pjd_2d_vis"].numpy() / per["pjd_3d_occ"].numpy(),
                              np.nan)
            frame = pd.DataFrame({k: per[k].numpy() for k in METRIC_KEYS if k != "rd"})
            frame.insert(0, "occluded", (~vis & keep).sum(-1).numpy())
            frame.insert(0, "index", np.arange(n))
            frame.insert(0, "objective", name)
            frame["rd"] = rd
            rows.append(frame)
        return pd.concat(rows, ignore_index=True)

    def temperature_sweep(self, temperatures: Sequence[float], num_items: int | None = None,
                          objectives: Sequence[str] | None = None) -> pd.DataFrame:
        """Dataset metrics at each temperature: one row per (objective, temperature) with :data:`METRIC_KEYS`
        over the first ``num_items`` items, as :func:`mhe.metrics.evaluate` averages them (images without a
        visible / occluded joint skipped, RD the ratio of the two means). ``objectives`` default to the
        sampled ones (not ``mode_only``)."""
        if objectives is None:
            objectives = [o for o in self.objectives if o not in self.mode_only]
        temps = [self._check_temperature(t) for t in temperatures]
        if not temps:
            raise ValueError("temperatures is empty; pass e.g. [0.2, 0.4, 0.8, 1.2]")
        rows = []
        for t in temps:
            frame = self.dataset_metrics(num_items, objectives, t)
            for name, part in frame.groupby("objective", sort=False):
                row = {"objective": name, "temperature": t}
                row.update({k: float(np.nanmean(part[k])) if part[k].notna().any() else float("nan")
                            for k in METRIC_KEYS if k != "rd"})
                occ = row["pjd_3d_occ"]
                row["rd"] = row["pjd_2d_vis"] / occ if occ > 0 else float("nan")
                rows.append(row)
        return pd.DataFrame(rows)

    # -- figures ------------------------------------------------------------------------------------

    def title(self, index: int, objective: str, temperature: float | None = None,
              num_hypotheses: int | None = None) -> str:
        """The item figure's title: item, objective, T, S, occluded joints and :func:`metrics_text`."""
        _, t, n = self._shown(index, objective, temperature, num_hypotheses)
        vis = self._ground_truth(index)[2]
        drawn = "its single prediction" if objective in self.mode_only else f"T = {t:g} · {n} hypotheses"
        head = (f"item {index} · {LABELS.get(objective, objective)} · {drawn} · "
                f"{int((~vis).sum())} of {len(vis)} joints occluded")
        return f"{head}<br>{metrics_text(self.item_metrics(index, objective, t, n))}"

    def item_figure(self, index: int, objective: str, temperature: float | None = None,
                    num_hypotheses: int | None = None) -> Any:
        """:func:`hypotheses_figure` of item ``index`` under ``objective``: the first ``num_hypotheses``
        (default all S) hypotheses at ``temperature`` (default the explorer's), metrics in the title."""
        hyp, t, n = self._shown(index, objective, temperature, num_hypotheses)
        return hypotheses_figure(hyp["xyz_mm"], hyp["uv_px"], *self._ground_truth(index),
                                 color=OBJECTIVE_COLORS.get(objective, "#555555"),
                                 title=self.title(index, objective, t, n))

    def dataset_figure(self, num_items: int | None = None, objectives: Sequence[str] | None = None,
                       temperature: float | None = None, num_hypotheses: int | None = None) -> Any:
        """:func:`accuracy_diversity_figure` of :meth:`dataset_metrics` (same arguments)."""
        frame = self.dataset_metrics(num_items, objectives, temperature, num_hypotheses)
        t, _ = self._resolve(temperature, None)
        title = (f"accuracy vs diversity per test item ({frame['index'].nunique()} items, T = {t:g}; "
                 "a deterministic model: its single prediction)")
        return accuracy_diversity_figure(frame, title=title)

    def widget(self, index: int = 0, objective: str | None = None, num_hypotheses: int = 50,
               dataset_items: int = 0, use_figure_widget: bool | None = None) -> ExplorerWidget:
        """The interactive explorer (:class:`ExplorerWidget`; display it, or its ``box``, in a notebook).

        Args:
            index, objective: what it opens on (default: item 0 of the first objective).
            num_hypotheses: how many of the S hypotheses it draws at first (a slider changes it).
            dataset_items: when > 0, also the accuracy-vs-diversity scatter of that many items, clickable.
            use_figure_widget: force (True) or avoid (False) plotly's FigureWidget; default when available.
        """
        return ExplorerWidget(self, index, objective, num_hypotheses, dataset_items, use_figure_widget)


def _copy_into(live: Any, new: Any) -> None:
    """Replace the data and layout of ``live`` by those of ``new`` (same trace structure), in one update."""
    with live.batch_update():
        for trace, fresh in zip(live.data, new.data):
            trace.update(fresh.to_plotly_json(), overwrite=True)
        live.layout.update(new.layout.to_plotly_json(), overwrite=True)


class ExplorerWidget:
    """Controls around a live item figure (and optionally the dataset scatter) of a :class:`HypothesisExplorer`.

    ``box`` (an ``ipywidgets.VBox``, what a notebook displays; the object itself displays as it) holds a
    Dropdown ``objective``, IntSliders ``item`` and ``hypotheses`` (how many of the S are shown), a
    FloatSlider ``temperature``, an HTML line ``metrics`` and the item figure ``figure``, updated in
    place whenever a control changes. With ``dataset_items > 0`` the accuracy-vs-diversity scatter of
    the first ``dataset_items`` items sits below (``scatter``); clicking one of its points selects that
    item and objective. ``figure`` and ``scatter`` are ``FigureWidget``\\ s when ``use_figure_widget``
    (default: when :func:`figure_widget_available`), else plain figures shown through ``ipywidgets.Output``
    views that are re-rendered on each change (then clicking is not available).
    """

    def __init__(self, explorer: HypothesisExplorer, index: int = 0, objective: str | None = None,
                 num_hypotheses: int = 50, dataset_items: int = 0, use_figure_widget: bool | None = None) -> None:
        import ipywidgets as widgets
        import plotly.graph_objects as go

        self.explorer = ex = explorer
        objective = ex.objectives[0] if objective is None else ex._check_objective(objective)
        index = ex._check_index(index)
        if int(num_hypotheses) < 1:
            raise ValueError(f"num_hypotheses must be at least 1, got {num_hypotheses}")
        self.interactive = figure_widget_available() if use_figure_widget is None else bool(use_figure_widget)
        style = {"description_width": "initial"}
        self.objective = widgets.Dropdown(options=[(LABELS.get(o, o), o) for o in ex.objectives], value=objective,
                                          description="objective", style=style)
        self.item = widgets.IntSlider(value=index, min=0, max=len(ex.dataset) - 1, description="item",
                                      continuous_update=False, style=style)
        self.temperature = widgets.FloatSlider(value=ex.temperature, min=0.05, max=2.0, step=0.05,
                                               description="temperature", continuous_update=False, style=style)
        self.hypotheses = widgets.IntSlider(value=min(int(num_hypotheses), ex.num_samples), min=1,
                                            max=ex.num_samples, description="hypotheses shown",
                                            continuous_update=False, style=style)
        self.metrics = widgets.HTML()
        first = ex.item_figure(index, objective, self.temperature.value, self.hypotheses.value)
        self.figure, self._view = self._live(first, go, widgets)
        self.scatter, scatter_view = None, None
        if dataset_items > 0:
            self.scatter, scatter_view = self._live(ex.dataset_figure(dataset_items), go, widgets)
            if self.interactive:
                for trace in self.scatter.data:
                    trace.on_click(self.on_scatter_click)
        self._hold = False
        for control in (self.objective, self.item, self.temperature, self.hypotheses):
            control.observe(self.refresh, names="value")
        self._show_metrics()
        rows = [widgets.HBox([self.objective, self.item]), widgets.HBox([self.temperature, self.hypotheses]),
                self.metrics, self._view]
        if scatter_view is not None:
            rows.append(scatter_view)
        self.box = widgets.VBox(rows)

    def _live(self, fig: Any, go: Any, widgets: Any) -> tuple[Any, Any]:
        if self.interactive:
            live = go.FigureWidget(fig)
            return live, live
        view = widgets.Output()
        view.outputs = (_mimebundle(fig),)
        return fig, view

    def _show_metrics(self) -> None:
        ex, o, i = self.explorer, self.objective.value, self.item.value
        m = ex.item_metrics(i, o, self.temperature.value, self.hypotheses.value)
        self.metrics.value = f"<b>item {i} · {LABELS.get(o, o)}</b>: {metrics_text(m)}"

    def refresh(self, change: Any = None) -> None:
        """Redraw the item figure (in place) and the metrics line from the controls' values."""
        if self._hold:
            return
        ex = self.explorer
        new = ex.item_figure(self.item.value, self.objective.value, self.temperature.value, self.hypotheses.value)
        _copy_into(self.figure, new)
        if not self.interactive:
            self._view.outputs = (_mimebundle(self.figure),)
        self._show_metrics()

    def select(self, index: int, objective: str) -> None:
        """Show item ``index`` under ``objective`` (one redraw)."""
        index, objective = self.explorer._check_index(index), self.explorer._check_objective(objective)
        self._hold = True
        try:
            self.objective.value, self.item.value = objective, index
        finally:
            self._hold = False
        self.refresh()

    def on_scatter_click(self, trace: Any, points: Any, state: Any = None) -> None:
        """Callback of the dataset scatter: select the clicked point's item and objective."""
        inds = list(getattr(points, "point_inds", []) or [])
        if not inds or trace.customdata is None or trace.meta not in self.explorer.models:
            return
        self.select(int(round(float(trace.customdata[inds[0]][0]))), trace.meta)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.box._repr_mimebundle_(**kwargs)

