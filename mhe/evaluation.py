"""One evaluation path: a model's hypotheses on a data loader → the paper's metrics.

The trainer's validation, ``mhe evaluate``, the notebooks and the explorer all go through
:func:`collect_predictions` (hypotheses in metric units, gathered on the CPU) and
:func:`evaluate_model` (those, scored by :func:`mhe.metrics.evaluate`). The official evaluation
settings are defined here once: S = :data:`EVAL_SAMPLES` hypotheses at temperature
:data:`EVAL_TEMPERATURE`, drawn in batches of :data:`EVAL_BATCH_SIZE` from generators seeded with
:data:`EVAL_SEED` (so a number printed anywhere is reproduced by the same call elsewhere).

A model here is anything with ``predict(batch, num_samples, temperature) -> {"xyz_mm", "uv_px"}`` and
a ``spec`` whose ``root`` names the root keypoint (:class:`mhe.models.multi_hypothesis.MultiHypothesisModel`).
A deterministic model returns S = 1 and the metrics take it as it is (zero diversity, RD undefined).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from mhe.metrics import evaluate
from mhe.objectives import labelled_3d
from mhe.rng import isolated_rng

EVAL_SAMPLES = 200  # hypotheses per item (official evaluation)
EVAL_TEMPERATURE = 0.8  # sampling temperature (official evaluation)
EVAL_BATCH_SIZE = 50  # items per forward pass; the sampling noise depends on it, so it is fixed too
EVAL_SEED = 0  # generators are seeded with this before the first batch


def move_to_device(batch: Any, device: torch.device | str) -> Any:
    """Tensors in a (nested) batch moved to ``device``; everything else unchanged."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@torch.no_grad()
def collect_predictions(
    model: Any,
    loader: Iterable[dict],
    *,
    num_samples: int = EVAL_SAMPLES,
    temperature: float = EVAL_TEMPERATURE,
    max_items: int | None = None,
    seed: int | None = EVAL_SEED,
) -> dict[str, Tensor]:
    """Run ``model.predict`` over ``loader`` (batches moved to the model's device).

    Returns CPU tensors ``pred_xyz (N, S, J, 3)`` mm, ``pred_uv (N, S, J, 2)`` px, ``gt_xyz (N, J, 3)``,
    ``gt_uv (N, J, 2)``, ``visible (N, J)`` bool, ready for :func:`mhe.metrics.evaluate`; and, when the
    model or the data give them, ``mode_xyz (N, 1, J, 3)`` mm, ``plausible (N, S)`` bool and
    ``px_per_mm (N,)`` (the dataset's camera scale) and ``ambiguous (N,)`` bool (the dataset's ambiguous
    subset, e.g. truncated or heavily occluded bodies); ``valid_3d (N, J)`` bool when some joint has no 3D
    label (a NaN in ``joints_3d_mm``, or an item whose ``has_3d`` is false: real files), so that the 3D
    metrics leave those joints out (:func:`mhe.metrics.evaluate`). Every random
    generator is seeded with ``seed`` for the call and restored afterwards (``None``: not touched).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    device = model_device(model)
    keep: dict[str, list[Tensor]] = {k: [] for k in ("pred_xyz", "pred_uv", "gt_xyz", "gt_uv", "visible")}
    seen = 0
    was_training = getattr(model, "training", False)
    if was_training:
        model.eval()
    try:
        with isolated_rng(seed):
            for batch in loader:
                missing = [k for k in ("joints_3d_mm", "keypoints_2d_px", "visible")
                           if not isinstance(batch, Mapping) or k not in batch]
                if missing:
                    have = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
                    raise ValueError(f"the evaluation needs items with {', '.join(missing)} (the ground truth: 3D "
                                   f"keypoints in mm, 2D in crop pixels, visibility); the loader's batches have {have}")
                batch = move_to_device(batch, device)
                out = model.predict(batch, num_samples, temperature)
                keep["pred_xyz"].append(out["xyz_mm"].float().cpu())
                keep["pred_uv"].append(out["uv_px"].float().cpu())
                keep["gt_xyz"].append(batch["joints_3d_mm"].float().cpu())
                keep["gt_uv"].append(batch["keypoints_2d_px"].float().cpu())
                keep["visible"].append(batch["visible"].bool().cpu())
                keep.setdefault("valid_3d", []).append(labelled_3d(batch, "joints_3d_mm").cpu())
                optional = {"mode_xyz": out.get("mode_xyz_mm"), "plausible": out.get("plausible"),
                            "px_per_mm": batch.get("px_per_mm"), "ambiguous": batch.get("ambiguous")}
                for key, value in optional.items():
                    if value is not None:
                        keep.setdefault(key, []).append(value.cpu() if value.dtype == torch.bool else value.float().cpu())
                seen += len(batch["visible"])
                if max_items is not None and seen >= max_items:
                    break
    finally:
        if was_training:
            model.train()
    if not keep["visible"]:
        raise ValueError("the loader yielded no items to evaluate")
    n = len(keep["visible"])
    out = {k: torch.cat(v) for k, v in keep.items() if len(v) == n}  # optional keys only when every batch had them
    if bool(out["valid_3d"].all()):  # every joint labelled (synthetic data, HO3D): the metrics need no mask
        del out["valid_3d"]
    if max_items is not None:
        out = {k: v[:max_items] for k, v in out.items()}
    return out


def score_predictions(
    predictions: dict[str, Tensor], root: int, flip_keypoints: Sequence[int] | None = None
) -> dict[str, float]:
    """The metrics (:func:`mhe.metrics.evaluate`) of :func:`collect_predictions`' output, its optional
    keys included; ``flip_keypoints``: the rigid part whose depth flip is counted (a hand's palm). When
    the data mark an ambiguous subset, its count ``n_ambiguous`` and every metric on it as
    ``<name>_ambiguous`` are added."""
    def score(p: dict[str, Tensor]) -> dict[str, float]:
        return evaluate(p["pred_xyz"], p["gt_xyz"], p["pred_uv"], p["gt_uv"], p["visible"], root=root,
                        px_per_mm=p.get("px_per_mm"), mode_xyz=p.get("mode_xyz"), plausible=p.get("plausible"),
                        flip_keypoints=flip_keypoints, valid_3d=p.get("valid_3d"))

    out = score(predictions)
    if "ambiguous" in predictions:
        subset = predictions["ambiguous"].bool()
        out["n_ambiguous"] = float(subset.sum())
        if subset.any():
            picked = {k: v[subset] for k, v in predictions.items() if k != "ambiguous"}
            out.update({f"{k}_ambiguous": v for k, v in score(picked).items() if not k.startswith("n_")})
    return out


def evaluate_model(
    model: Any,
    loader: Iterable[dict],
    *,
    num_samples: int = EVAL_SAMPLES,
    temperature: float = EVAL_TEMPERATURE,
    max_items: int | None = None,
    seed: int | None = EVAL_SEED,
) -> dict[str, float]:
    """BH-MPJPE / PA-MPJPE / mean / mode MPJPE in mm, AH in px, PJD 2D-vis (px and mm) / 3D-occ (mm), RD and
    ``rd_mm``, the plausible fraction and the depth-flip split of ``model`` over ``loader`` (see
    :func:`collect_predictions` for the arguments and :func:`mhe.metrics.evaluate` for the names)."""
    predictions = collect_predictions(
        model, loader, num_samples=num_samples, temperature=temperature, max_items=max_items, seed=seed
    )
    return score_predictions(predictions, root=model.spec.root,
                             flip_keypoints=getattr(model.spec, "flip_keypoints", None))
