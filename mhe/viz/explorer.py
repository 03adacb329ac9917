"""Interactive explorer of a hand model's hypotheses: how diverse they are, where, and how accurate.

:class:`HypothesisExplorer` wraps trained hand models (:class:`mhe.models.hand.MultiHypothesisHand`,
one per objective) and a hand dataset. For one item and objective it draws S hypotheses on the
model's device, seeded by (seed, objective, item) so the same request always gives the same
hypotheses and every temperature scales the *same* base noise, and caches them. Its numbers are
:mod:`mhe.metrics`' (:func:`~mhe.metrics.item_metrics`, :func:`~mhe.metrics.per_item_metrics`,
:func:`~mhe.metrics.joint_diversity`) and its figures :mod:`mhe.viz.explorer_figures`' pure plotly
functions: :meth:`~HypothesisExplorer.item_figure` shows the hypotheses in 3D, projected into the
256-px crop, and the per-joint diversity (PJD 2D on visible joints, 3D on occluded ones) with the
item's metrics in the title (:meth:`~HypothesisExplorer.describe`: always over all S hypotheses, however
many are drawn; occluded joints counted without the root, :meth:`~HypothesisExplorer.occluded`);
:meth:`~HypothesisExplorer.dataset_figure` puts every item's accuracy
(BH-MPJPE) against its occluded-joint diversity (PJD 3D-occ); :meth:`~HypothesisExplorer.widget` puts
ipywidgets controls (objective, item, temperature, number of hypotheses) around a figure that is
updated in place (:class:`ExplorerWidget`). The live figure is a ``plotly.graph_objects.FigureWidget``
when ``anywidget`` is installed (plotly >= 6 needs it; clicking a point of the dataset scatter then
selects that item), else a plain figure re-rendered into an ``ipywidgets.Output``. A live figure holds
plain lists (:func:`_plain`; plotly's handler of the browser's reports fails on NumPy arrays) and stores
each update in its synced state (:func:`_sync_state`), so a reloaded page shows the current figure.

The figure functions and per-item metrics are re-exported here, so ``from mhe.viz.explorer import
hypotheses_figure, item_metrics, ...`` keeps working; note that :func:`item_metrics` now takes the
arguments in :mod:`mhe.metrics`' order ``(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root)``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import operator
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from copy import deepcopy
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
    SELECTED_TRACE,
    accuracy_diversity_figure,
    hypotheses_figure,
    metrics_text,
    occluded_phrase,
    plot_temperature_sweep,
    selected_point,
)
from mhe.viz.hands import LABELS

__all__ = [
    "GT_COLOR",
    "ITEM_TRACES",
    "METRIC_KEYS",
    "SELECTED_TRACE",
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
        self._truths: dict[int, tuple[Tensor, Tensor, Tensor]] = {}

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
        index = self._check_index(index)
        if index not in self._truths:  # an item can be costly to build (a rendered crop): keep what we read
            item = self.item(index)
            self._truths[index] = (item["joints_3d_mm"].float().cpu(), item["keypoints_2d_px"].float().cpu(),
                                   item["visible"].bool().cpu())
        return self._truths[index]

    def occluded(self, index: int) -> Tensor:
        """(J,) bool: the occluded joints of item ``index`` as every number of the explorer counts them —
        hidden and not the root (the root carries no diversity; the metrics leave it out)."""
        vis = self._ground_truth(index)[2]
        return ~vis & (torch.arange(len(vis)) != self.root)

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
        occluded = torch.stack([self.occluded(i) for i in range(n)]).sum(-1).numpy()
        rows = []
        for name in names:
            hyps = [self._shown(i, name, t, S)[0] for i in range(n)]
            per = per_item_metrics(torch.stack([h["xyz_mm"] for h in hyps]), gt_xyz,
                                   torch.stack([h["uv_px"] for h in hyps]), gt_uv, vis, self.root)
            frame = pd.DataFrame({k: per[k].cpu().numpy() for k in METRIC_KEYS})
            if all("plausible" in h for h in hyps):
                frame["plausible"] = torch.stack([h["plausible"].double().mean() for h in hyps]).numpy()
            frame.insert(0, "occluded", occluded)
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

    def describe(self, index: int, objective: str, temperature: float | None = None,
                 num_hypotheses: int | None = None) -> tuple[str, str]:
        """What the item figure's title and the widget's metrics line say, as two lines of text: the item,
        objective, T, how many hypotheses are drawn and how many joints are occluded; then the item's
        metrics (:func:`metrics_text`) over **all** S hypotheses at that temperature — drawing fewer
        hypotheses changes the picture, never the numbers."""
        _, t, n = self._shown(index, objective, temperature, num_hypotheses)
        S = len(self.hypotheses(index, objective, t)["xyz_mm"])
        if objective in self.mode_only:
            drawn, over = "its single prediction", "of its single prediction"
        else:
            drawn, over = f"T = {t:g} · {n} of {S} hypotheses drawn", f"over all {S} hypotheses"
        head = (f"item {index} · {LABELS.get(objective, objective)} · {drawn} · "
                f"{occluded_phrase(int(self.occluded(index).sum()), len(self.keypoint_names))}")
        return head, f"{metrics_text(self.item_metrics(index, objective, t))} ({over})"

    def title(self, index: int, objective: str, temperature: float | None = None,
              num_hypotheses: int | None = None) -> str:
        """The item figure's title: the two lines of :meth:`describe`."""
        return "<br>".join(self.describe(index, objective, temperature, num_hypotheses))

    def item_figure(self, index: int, objective: str, temperature: float | None = None,
                    num_hypotheses: int | None = None) -> Any:
        """:func:`hypotheses_figure` of item ``index`` under ``objective``: the first ``num_hypotheses``
        (default all S) hypotheses at ``temperature`` (default the explorer's) drawn; the per-joint
        diversity and the metrics in the title are those of all S (:meth:`describe`)."""
        hyp, t, n = self._shown(index, objective, temperature, num_hypotheses)
        return hypotheses_figure(hyp["xyz_mm"], hyp["uv_px"], *self._ground_truth(index),
                                 joint_names=self.keypoint_names, parents=self.parents, root=self.root,
                                 color=OBJECTIVE_COLORS.get(objective, "#555555"),
                                 title=self.title(index, objective, t, n),
                                 diversity=self.joint_diversity(index, objective, t),
                                 px_per_mm=self.px_per_mm(index))

    def px_per_mm(self, index: int) -> float | None:
        """The camera scale of item ``index`` (px of the crop per mm at the hand or body), or None when the
        item does not say: what turns its 2D spread (px) into mm."""
        index = self._check_index(index)
        cache = self.__dict__.setdefault("_scales", {})  # an item can be costly to build: read it once
        if index not in cache:
            value = self.item(index).get("px_per_mm")
            value = None if value is None else float(value)
            cache[index] = value if value is not None and value == value and value > 0 else None
        return cache[index]

    def dataset_figure(self, num_items: int | None = None, objectives: Sequence[str] | None = None,
                       temperature: float | None = None, num_hypotheses: int | None = None) -> Any:
        """:func:`accuracy_diversity_figure` of :meth:`dataset_metrics` (same arguments)."""
        frame = self.dataset_metrics(num_items, objectives, temperature, num_hypotheses)
        return accuracy_diversity_figure(frame, title=self._dataset_title(frame, temperature, num_hypotheses),
                                         num_joints=len(self.keypoint_names))

    def _dataset_title(self, frame: pd.DataFrame, temperature: float | None, num_hypotheses: int | None) -> str:
        t, n = self._resolve(temperature, num_hypotheses)
        over = f"over all {self.num_samples} hypotheses" if num_hypotheses is None else f"over the first {n} hypotheses"
        return (f"accuracy vs diversity per test item ({frame['index'].nunique()} items, T = {t:g}, {over}; "
                "a deterministic model: its single prediction)")

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


def _plain(value: Any) -> Any:
    """``value`` with every NumPy array and scalar turned into plain Python (lists, floats), NaN into None.

    A ``FigureWidget`` must hold plain lists: the browser reports each redraw's trace defaults back with
    typed arrays encoded as ``{"0": ..., "1": ...}`` objects, and plotly's handler of that report
    (``_remove_overlapping_props``) fails on a NumPy array in the trace ("The truth value of an array ...
    is ambiguous"), a traceback in JupyterLab's log console on every redraw. None is plotly's gap (the
    NaN of a line that separates two bones) and, unlike NaN, valid JSON.
    """
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, dict) and {"dtype", "bdata"} <= set(value):  # plotly >= 6 encodes arrays so
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        if value.get("shape"):
            array = array.reshape([int(n) for n in str(value["shape"]).split(",")])
        return _plain(array)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plain_figure(fig: Any) -> dict[str, Any]:
    return _plain(fig.to_plotly_json())


def _sync_state(live: Any) -> None:
    """Store a ``FigureWidget``'s current data and layout in its synced widget state.

    plotly sends in-place updates to the browser as one-off messages and keeps the figure the page rebuilds
    its view from (``_widget_data``, ``_widget_layout``) as it was when first displayed: after a page
    reload the figure would show its first state while the controls show the current one. plotly sets
    the same two traits when a figure is displayed (``_repr_mimebundle_``); this does it after each update.
    """
    if hasattr(live, "_widget_data"):
        live._widget_data = deepcopy(live._data)
        live._widget_layout = deepcopy(live._layout_obj._props)


def _copy_into(live: Any, new: Any) -> None:
    """Replace the data and layout of ``live`` by those of ``new`` (same trace structure), in one update."""
    spec = _plain_figure(new)
    with live.batch_update():
        for trace, fresh in zip(live.data, spec["data"]):
            trace.update(fresh, overwrite=True)
        live.layout.update(spec["layout"], overwrite=True)
    _sync_state(live)


_HELPER_ESM = """
function render({ model, el }) {
  // Bring the explored item's figure into view when asked (a click on the scatter far below it).
  model.on("change:requests", () => el.scrollIntoView({ behavior: "smooth", block: "start" }));
  // Refit the figures whenever the explorer's width changes (a sidebar opened or closed, a cell shown
  // after being drawn while hidden): plotly's responsive figures listen to the window's resize event.
  let observer = null, last = 0, timer = null;
  const watch = (tries) => {
    const box = el.closest(".widget-vbox");
    if (!box) { if (tries > 0) setTimeout(() => watch(tries - 1), 200); return; }
    observer = new ResizeObserver((entries) => {
      const width = Math.round(entries[0].contentRect.width);
      if (width === 0 || width === last) return;
      last = width;
      clearTimeout(timer);
      timer = setTimeout(() => window.dispatchEvent(new Event("resize")), 150);
    });
    observer.observe(box);
  };
  watch(50);
  return () => { if (observer) observer.disconnect(); clearTimeout(timer); };
}
export default { render };
"""


def _page_helper() -> Any:
    """A zero-height widget for what only the page can do: scroll to itself each time its ``requests``
    counter grows, and refit the explorer's figures to the width of the explorer whenever it changes."""
    import anywidget
    import traitlets

    class ExplorerPageHelper(anywidget.AnyWidget):
        _esm = _HELPER_ESM
        requests = traitlets.Int(0).tag(sync=True)

    return ExplorerPageHelper()


class ExplorerWidget:
    """Controls around a live item figure (and optionally the dataset scatter) of a :class:`HypothesisExplorer`.

    ``box`` (an ``ipywidgets.VBox``, what a notebook displays; the object itself displays as it) holds a
    Dropdown ``objective``, IntSliders ``item`` (with ``previous`` / ``next`` buttons) and ``hypotheses``
    (how many of the S are drawn), a FloatSlider ``temperature``, an HTML line ``metrics`` (the figure
    title's text, :meth:`HypothesisExplorer.describe`) and the item figure ``figure``, updated in place
    whenever a control changes. The numbers are always those of all S hypotheses at the chosen temperature;
    the hypotheses slider only changes how many are drawn. With ``dataset_items > 0`` the
    accuracy-vs-diversity scatter of the first ``dataset_items`` items sits below (``scatter``, at the
    explorer's temperature, all S hypotheses); the explored item is ringed in it, and clicking a point
    selects that item and objective and scrolls the item figure into view. ``figure`` and ``scatter`` are
    ``FigureWidget``\\ s when ``use_figure_widget`` (default: when :func:`figure_widget_available`), else
    plain figures shown through ``ipywidgets.Output`` views that are re-rendered on each change (then
    clicking is not available). Every part of the state lives in the widgets' synced state, so a page
    reload shows the figure the controls describe.
    """

    def __init__(self, explorer: HypothesisExplorer, index: int = 0, objective: str | None = None,
                 num_hypotheses: int = 50, dataset_items: int = 0, use_figure_widget: bool | None = None) -> None:
        import ipywidgets as widgets

        self.explorer = ex = explorer
        objective = ex.objectives[0] if objective is None else ex._check_objective(objective)
        index = ex._check_index(index)
        if int(num_hypotheses) < 1:
            raise ValueError(f"num_hypotheses must be at least 1, got {num_hypotheses}")
        self.interactive = figure_widget_available() if use_figure_widget is None else bool(use_figure_widget)
        style = {"description_width": "initial"}
        wide = widgets.Layout(flex="1 1 auto", width="auto", min_width="260px")
        self.objective = widgets.Dropdown(options=[(LABELS.get(o, o), o) for o in ex.objectives], value=objective,
                                          description="objective", style=style, layout=widgets.Layout(width="auto"))
        self.item = widgets.IntSlider(value=index, min=0, max=len(ex.dataset) - 1, description="item",
                                      continuous_update=False, style=style, layout=wide)
        self.previous = widgets.Button(description="◀", tooltip="previous item", layout=widgets.Layout(width="36px"))
        self.next = widgets.Button(description="▶", tooltip="next item", layout=widgets.Layout(width="36px"))
        self.previous.on_click(lambda _: self.step(-1))
        self.next.on_click(lambda _: self.step(+1))
        self.temperature = widgets.FloatSlider(value=ex.temperature, min=0.05, max=2.0, step=0.05,
                                               description="temperature", continuous_update=False, style=style,
                                               layout=wide)
        self.hypotheses = widgets.IntSlider(value=min(int(num_hypotheses), ex.num_samples), min=1,
                                            max=ex.num_samples, description="hypotheses drawn",
                                            continuous_update=False, style=style, layout=wide)
        self.metrics = widgets.HTML()
        first = ex.item_figure(index, objective, self.temperature.value, self.hypotheses.value)
        self.figure, self._view = self._live(first, widgets)
        self.scatter, scatter_view, self._frame = None, None, None
        if dataset_items > 0:
            self._frame = ex.dataset_metrics(dataset_items)
            scatter = accuracy_diversity_figure(self._frame, title=ex._dataset_title(self._frame, None, None),
                                                selected=(objective, index), num_joints=len(ex.keypoint_names))
            self.scatter, scatter_view = self._live(scatter, widgets)
            if self.interactive:
                for trace in self.scatter.data:
                    trace.on_click(self.on_scatter_click)
        self._scatter_view = scatter_view
        self._anchor = _page_helper() if self.interactive else None
        self._hold = False
        for control in (self.objective, self.item, self.temperature, self.hypotheses):
            control.observe(self.refresh, names="value")
        self._show_metrics()
        full = widgets.Layout(width="100%")
        rows = [widgets.HBox([self.objective, self.item, self.previous, self.next], layout=full),
                widgets.HBox([self.temperature, self.hypotheses], layout=full)]
        rows += [self._anchor] if self._anchor is not None else []
        rows += [self.metrics, self._view]
        if scatter_view is not None:
            rows.append(scatter_view)
        self.box = widgets.VBox(rows, layout=full)

    def _live(self, fig: Any, widgets: Any) -> tuple[Any, Any]:
        import plotly.graph_objects as go

        if self.interactive:
            live = go.FigureWidget(_plain_figure(fig))
            live._config = {"responsive": True}  # fills the output area's width, and follows it
            return live, live
        view = widgets.Output()
        view.outputs = (_mimebundle(fig),)
        return fig, view

    def _show_metrics(self) -> None:
        head, numbers = self.explorer.describe(self.item.value, self.objective.value, self.temperature.value,
                                               self.hypotheses.value)
        note = ""
        if self.scatter is not None and self.objective.value not in self.explorer.mode_only \
                and abs(self.temperature.value - self.explorer.temperature) > 1e-9:
            note = f" The scatter below stays at T = {self.explorer.temperature:g}."
        self.metrics.value = f"<b>{head}</b><br>{numbers}.{note}"

    def _mark_selected(self) -> None:
        if self.scatter is None:
            return
        point = selected_point(self._frame, self.objective.value, self.item.value)
        ring = next(t for t in self.scatter.data if t.name == SELECTED_TRACE)
        ring.update(point)
        if self.interactive:
            _sync_state(self.scatter)
        else:
            self._scatter_view.outputs = (_mimebundle(self.scatter),)

    def refresh(self, change: Any = None) -> None:
        """Redraw the item figure (in place), the metrics line and the scatter's ring from the controls' values."""
        if self._hold:
            return
        ex = self.explorer
        new = ex.item_figure(self.item.value, self.objective.value, self.temperature.value, self.hypotheses.value)
        _copy_into(self.figure, new)
        if not self.interactive:
            self._view.outputs = (_mimebundle(self.figure),)
        self._show_metrics()
        self._mark_selected()

    def step(self, delta: int) -> None:
        """Show the item ``delta`` places on (the previous / next buttons), staying within the dataset."""
        self.item.value = min(max(self.item.value + int(delta), self.item.min), self.item.max)

    def select(self, index: int, objective: str) -> None:
        """Show item ``index`` under ``objective`` (one redraw) and bring its figure into view."""
        index, objective = self.explorer._check_index(index), self.explorer._check_objective(objective)
        self._hold = True
        try:
            self.objective.value, self.item.value = objective, index
        finally:
            self._hold = False
        self.refresh()
        if self._anchor is not None and self.scatter is not None:
            self._anchor.requests += 1

    def on_scatter_click(self, trace: Any, points: Any, state: Any = None) -> None:
        """Callback of the dataset scatter: select the clicked point's item and objective."""
        inds = list(getattr(points, "point_inds", []) or [])
        if not inds or trace.customdata is None or trace.meta not in self.explorer.models:
            return
        self.select(int(round(float(trace.customdata[inds[0]][0]))), trace.meta)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.box._repr_mimebundle_(**kwargs)
