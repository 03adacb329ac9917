"""Interactive explorer of a hand model's hypotheses: how diverse they are, where, and how accurate.

:class:`HypothesisExplorer` wraps trained hand models (:class:`mhe.models.hand.MultiHypothesisHand`,
one per objective) and a hand dataset. For one item and objective it draws S hypotheses on the
model's device, seeded by (seed, objective, item) so the same request always gives the same
hypotheses and every temperature scales the *same* base noise, and caches them. Its numbers are
:mod:`mhe.metrics`' (:func:`~mhe.metrics.item_metrics`, :func:`~mhe.metrics.per_item_metrics`,
:func:`~mhe.metrics.joint_diversity`) and its figures :mod:`mhe.viz.explorer_figures`' pure plotly
functions: :meth:`~HypothesisExplorer.item_figure` shows the hypotheses in 3D, projected into the
256-px crop, and the per-joint diversity (PJD 2D on visible joints, 3D on occluded ones) with the
item's metrics in the title; :meth:`~HypothesisExplorer.dataset_figure` puts every item's accuracy
(BH-MPJPE) against its occluded-joint diversity (PJD 3D-occ); :meth:`~HypothesisExplorer.widget` puts
ipywidgets controls (objective, item, temperature, number of hypotheses) around a figure that is
updated in place (:class:`ExplorerWidget`). The live figure is a ``plotly.graph_objects.FigureWidget``
when ``anywidget`` is installed (plotly >= 6 needs it; clicking a point of the dataset scatter then
selects that item), else a plain figure re-rendered into an ``ipywidgets.Output``.

The figure functions and per-item metrics are re-exported here, so ``from mhe.viz.explorer import
hypotheses_figure, item_metrics, ...`` keeps working; note that :func:`item_metrics` now takes the
arguments in :mod:`mhe.metrics`' order ``(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root)``.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import default_collate

from mhe.body import HAND_KEYPOINTS, HAND_PARENTS, HAND_ROOT
from mhe.metrics import ITEM_METRICS, item_metrics, joint_diversity, per_item_metrics, ratio_of_diversity
from mhe.viz import OBJECTIVE_COLORS
from mhe.viz.explorer_figures import (
    GT_COLOR,
    ITEM_TRACES,
    accuracy_diversity_figure,
    hypotheses_figure,
    metrics_text,
    plot_temperature_sweep,
)
from mhe.viz.hands import LABELS

__all__ = [
    "GT_COLOR",
    "ITEM_TRACES",
    "METRIC_KEYS",
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

METRIC_KEYS = ITEM_METRICS  # the per-item metrics, as mhe.metrics names them


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
            (or anything with ``predict(batch, num_samples, temperature) -> {"xyz_mm", "uv_px"}``, as
            :mod:`mhe.evaluation` scores), in eval mode, on any device.
        dataset: items with ``obs``, ``visible (J,)``, ``keypoints_2d_px (J, 2)``, ``joints_3d_mm (J, 3)``,
            ``scale`` (e.g. :class:`mhe.data.SyntheticHands`).
        num_samples: S hypotheses drawn per item (the official evaluation: 200).
        temperature: default sampling temperature T > 0 (official: 0.8).
        seed: hypotheses of (objective, item) come from the noise seeded by (seed, objective, item),
            whatever else was drawn before; all temperatures scale that same base noise.
        cache_size: number of (objective, item, temperature) draws kept in memory.
    """

    def __init__(
        self,
        models: Mapping[str, nn.Module],
        dataset: Any,
        num_samples: int = 200,
        temperature: float = 0.8,
        seed: int = 0,
        cache_size: int = 512,
    ) -> None:
        if not isinstance(models, Mapping) or len(models) == 0:
            raise ValueError("models must be a non-empty mapping {objective: model}, e.g. {'mhentropy': model}")
        if len(dataset) == 0:
            raise ValueError("the dataset is empty; pass a dataset with at least one item")
        if int(num_samples) < 2:
            raise ValueError(f"num_samples must be at least 2 (diversity needs two hypotheses), got {num_samples}")
        self.models = dict(models)
        specs = {name: getattr(m, "spec", None) for name, m in self.models.items()}
        kinds = {(s.num_keypoints, s.root) for s in specs.values() if s is not None}
        if len(kinds) > 1:
            raise ValueError("the models decode different bodies (keypoints, root): explore hands and bodies "
                             "in separate explorers")
        spec = next(iter(specs.values()))
        # the body the hypotheses are of (hands by default: models without a spec are hand models)
        self.root = int(spec.root) if spec is not None else HAND_ROOT
        self.keypoint_names = tuple(spec.keypoint_names) if spec is not None else tuple(HAND_KEYPOINTS)
        self.parents = tuple(spec.parents) if spec is not None else tuple(int(p) for p in HAND_PARENTS)
        self.dataset = dataset
        self.num_samples = int(num_samples)
        self.temperature = self._check_temperature(temperature)
        self.seed = int(seed)
        # deterministic models (``model.deterministic``) predict their mode alone: S = 1, no temperature
        self.mode_only = frozenset(o for o, m in self.models.items() if getattr(m, "deterministic", False))
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
        ``uv_px (S, J, 2)`` px of the 256 crop, float32 on the CPU (drawn on the model's device), and
        ``plausible (S,)`` bool when the model tests its hypotheses against joint limits (hands).

        Seeded by (seed, objective, index) and cached: the same call returns the same tensors.
        """
        objective, index = self._check_objective(objective), self._check_index(index)
        t, _ = self._resolve(temperature, None)
        mode = objective in self.mode_only
        key = (objective, index, None if mode else t)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        # S = 1 for a deterministic model
        out = self._seeded(index, objective, lambda m, b: m.predict(b, self.num_samples, t))
        result = {"xyz_mm": out["xyz_mm"][0].float().cpu(), "uv_px": out["uv_px"][0].float().cpu()}
        if "plausible" in out:  # hands: whether each hypothesis keeps every finger joint within its limits
            result["plausible"] = out["plausible"][0].cpu()
        self._cache[key] = result
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return result

    def _seeded(self, index: int, objective: str, draw: Any) -> Any:
        """``draw(model, batch)`` on item ``index``'s batch under the noise seeded by (seed, objective, index)."""
        model = self.models[objective]
        device = next(model.parameters()).device
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in default_collate([self.item(index)]).items()}
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self._noise_seed(objective, index))
            return draw(model, batch)

    def export_meshes(self, path: str | Any, index: int, objective: str, temperature: float | None = None,
                      num_hypotheses: int | None = 10, ground_truth: bool = True) -> Any:
        """Write the meshes of the first ``num_hypotheses`` hypotheses of item ``index`` — the same hypotheses
        :meth:`item_figure` shows — to ``path`` (``.ply``, ``.obj`` or ``.glb``: one colour per hypothesis,
        the ground truth in dark grey when the item holds its parameters), for MeshLab or Blender. mm,
        root-relative, camera frame (y down). Returns the path."""
        from mhe.viz.meshes import export_hypothesis_meshes

        objective, index = self._check_objective(objective), self._check_index(index)
        t, n = self._resolve(temperature, num_hypotheses)
        verts = self._seeded(index, objective, lambda m, b: m.predict_meshes(b, self.num_samples, t))[0, :n]
        model = self.models[objective]
        truth = self._seeded(index, objective, lambda m, b: m.ground_truth_meshes(b)) if ground_truth else None
        return export_hypothesis_meshes(path, verts.cpu(), model.spec.faces,
                                        ground_truth=None if truth is None else truth[0].cpu())

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
        """:func:`mhe.metrics.item_metrics` of the first ``num_hypotheses`` (default all S) hypotheses of item ``index``."""
        hyp, _, _ = self._shown(index, objective, temperature, num_hypotheses)
        gt_xyz, gt_uv, visible = self._ground_truth(index)
        out = item_metrics(hyp["xyz_mm"], gt_xyz, hyp["uv_px"], gt_uv, visible, self.root)
        if "plausible" in hyp:  # the fraction of the shown hypotheses within the joint limits
            out["plausible"] = float(hyp["plausible"].double().mean())
        return out

    def joint_diversity(self, index: int, objective: str, temperature: float | None = None,
                        num_hypotheses: int | None = None) -> Tensor:
        """:func:`mhe.metrics.joint_diversity` (J,) of the first ``num_hypotheses`` hypotheses of item ``index``."""
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
        keep[self.root] = False
        rows = []
        for name in names:
            hyps = [self._shown(i, name, t, S)[0] for i in range(n)]
            per = per_item_metrics(torch.stack([h["xyz_mm"] for h in hyps]), gt_xyz,
                                   torch.stack([h["uv_px"] for h in hyps]), gt_uv, vis, self.root)
            frame = pd.DataFrame({k: per[k].cpu().numpy() for k in METRIC_KEYS})
            if all("plausible" in h for h in hyps):
                frame["plausible"] = torch.stack([h["plausible"].double().mean() for h in hyps]).numpy()
            frame.insert(0, "occluded", (~vis & keep).sum(-1).numpy())
            frame.insert(0, "index", np.arange(n))
            frame.insert(0, "objective", name)
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
                row["rd"] = ratio_of_diversity(row["pjd_2d_vis"], row["pjd_3d_occ"])  # of the means
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
                                 joint_names=self.keypoint_names, parents=self.parents, root=self.root,
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

