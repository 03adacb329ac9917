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
ipywidgets controls (objective, item, temperature, number of hypotheses) around a figure that follows
them (:class:`~mhe.viz.explorer_widget.ExplorerWidget`, in :mod:`mhe.viz.explorer_widget`).

The figure functions, the widget and the per-item metrics are re-exported here, so ``from mhe.viz.explorer import
hypotheses_figure, item_metrics, ...`` keeps working; note that :func:`item_metrics` now takes the
arguments in :mod:`mhe.metrics`' order ``(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root)``.
"""

from __future__ import annotations

import hashlib
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
    SELECTED_TRACE,
    accuracy_diversity_figure,
    hypotheses_figure,
    metrics_text,
    occluded_phrase,
    plot_temperature_sweep,
)
from mhe.viz.explorer_widget import ExplorerWidget, figure_widget_available
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
        self._specs = specs
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
        spec = self._specs[objective]
        if spec is None:
            raise ValueError(f"the {objective!r} model has no body spec (mesh faces): export_meshes needs a "
                             "mhe.models MultiHypothesisHand or MultiHypothesisBody")
        t, n = self._resolve(temperature, num_hypotheses)
        verts = self._seeded(index, objective, lambda m, b: m.predict_meshes(b, self.num_samples, t))[0, :n]
        truth = self._seeded(index, objective, lambda m, b: m.ground_truth_meshes(b)) if ground_truth else None
        return export_hypothesis_meshes(path, verts.cpu(), spec.faces,
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
        """:func:`mhe.metrics.item_metrics` of the first ``num_hypotheses`` (default all S) hypotheses of item
        ``index``."""
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
        gt_xyz, gt_uv, vis = (torch.stack(x) for x in zip(*gt, strict=True))
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
            raw = self.item(index).get("px_per_mm")
            value = None if raw is None else float(raw)
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
            dataset_items: when > 0, also the accuracy-vs-diversity scatter of that many items.
            use_figure_widget: make the scatter clickable through the page helper (True; needs anywidget) or
                not (False); default when :func:`figure_widget_available`.
        """
        return ExplorerWidget(self, index, objective, num_hypotheses, dataset_items, use_figure_widget)


