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

**Streaming.** :func:`evaluate_model` never holds a batch's S hypotheses at once: it scores them
:data:`EVAL_SAMPLE_CHUNK` at a time (:func:`predict_chunks`, :class:`mhe.metrics.HypothesisStats`) and keeps
per-image values only, so that ProHMR's S = 4096 fits in a few GB (``benchmarks/bench_eval_memory.py``). A model
with ``predict_chunks(batch, num_samples, temperature, chunk)`` draws the random numbers of all S first and
decodes them chunk by chunk, so the hypotheses, and the metrics up to rounding, are those of
:func:`collect_predictions` whatever the chunk size; any other model is asked for all S at once.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from typing import Any

import torch
from torch import Tensor

from mhe.metrics import HypothesisStats, evaluate_per_image, summarize
from mhe.objectives import labelled_3d
from mhe.rng import isolated_rng

EVAL_SAMPLES = 200  # hypotheses per item (official evaluation)
EVAL_TEMPERATURE = 0.8  # sampling temperature (official evaluation)
EVAL_BATCH_SIZE = 50  # items per forward pass; the sampling noise depends on it, so it is fixed too
EVAL_SEED = 0  # generators are seeded with this before the first batch
# hypotheses per item decoded and scored at once by evaluate_model: bounds memory, changes no result (the
# official S = 200 / 25 is one chunk; S = 4096 bodies, 50 items: 1.1 GiB peak RSS, 4.2 GiB before streaming)
EVAL_SAMPLE_CHUNK = 256
_PER_HYPOTHESIS = ("xyz_mm", "uv_px", "plausible")  # predict's outputs with one entry per hypothesis
_TRUTH = ("joints_3d_mm", "keypoints_2d_px", "visible")  # what the evaluation needs of every batch


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
    _check_sampling(num_samples, temperature)
    keep: dict[str, list[Tensor]] = {k: [] for k in ("pred_xyz", "pred_uv", "gt_xyz", "gt_uv", "visible")}
    with closing(_eval_batches(model, loader, seed, max_items)) as batches:
        for batch in batches:
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
                    value = value.cpu() if value.dtype == torch.bool else value.float().cpu()
                    keep.setdefault(key, []).append(value)
    if not keep["visible"]:
        raise ValueError("the loader yielded no items to evaluate")
    n = len(keep["visible"])
    out = {k: torch.cat(v) for k, v in keep.items() if len(v) == n}  # optional keys only when every batch had them
    if bool(out["valid_3d"].all()):  # every joint labelled (synthetic data, HO3D): the metrics need no mask
        del out["valid_3d"]
    if max_items is not None:
        out = {k: v[:max_items] for k, v in out.items()}
    return out


def _eval_batches(
    model: Any, loader: Iterable[dict], seed: int | None, max_items: int | None
) -> Generator[dict, None, None]:
    """The loader's batches, checked and moved to the model's device, until ``max_items`` items were given; the
    model is in eval mode and every random generator seeded with ``seed`` meanwhile (both restored after)."""
    device = model_device(model)
    seen = 0
    was_training = getattr(model, "training", False)
    if was_training:
        model.eval()
    try:
        with isolated_rng(seed):
            for batch in loader:
                _check_truth(batch)
                yield move_to_device(batch, device)
                seen += len(batch["visible"])
                if max_items is not None and seen >= max_items:
                    break
    finally:
        if was_training:
            model.train()


def _check_sampling(num_samples: int, temperature: float, chunk: int = 1) -> None:
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"sample_chunk must be a positive int (hypotheses scored at once), got {chunk!r}")


def _check_truth(batch: Any) -> None:
    missing = [k for k in _TRUTH if not isinstance(batch, Mapping) or k not in batch]
    if missing:
        have = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise ValueError(f"the evaluation needs items with {', '.join(missing)} (the ground truth: 3D "
                         f"keypoints in mm, 2D in crop pixels, visibility); the loader's batches have {have}")


def predict_chunks(model: Any, batch: dict, num_samples: int, temperature: float, chunk: int) -> Iterator[dict]:
    """The model's predictions (``predict``'s dict) of ``num_samples`` hypotheses in consecutive chunks of at
    most ``chunk`` along S; the per-item outputs (``mode_xyz_mm``) come with every chunk. A model with
    ``predict_chunks`` draws the random numbers of all S first, so the chunks join into the hypotheses of
    ``model.predict`` whatever ``chunk``; another model is asked for all S at once and its answer cut up."""
    own = getattr(model, "predict_chunks", None)
    if own is not None:
        yield from own(batch, num_samples, temperature, chunk)
        return
    out = model.predict(batch, num_samples, temperature)
    for start in range(0, out["xyz_mm"].shape[1], chunk):
        yield {k: v[:, start : start + chunk] if k in _PER_HYPOTHESIS else v for k, v in out.items()}


def _summaries(per_image: dict[str, Tensor], visible: Tensor, root: int, valid_3d: Tensor | None,
               px_per_mm: Tensor | None, ambiguous: Tensor | None) -> dict[str, float]:
    """The dataset figures of per-image values (:func:`mhe.metrics.summarize`) and, when the data mark an
    ambiguous subset, its count ``n_ambiguous`` and every figure on it as ``<name>_ambiguous``."""
    out = summarize(per_image, visible, root, valid_3d=valid_3d, px_per_mm=px_per_mm)
    if ambiguous is not None:
        subset = ambiguous.bool()
        out["n_ambiguous"] = float(subset.sum())
        if subset.any():
            picked = summarize({k: v[subset] for k, v in per_image.items()}, visible[subset], root,
                               valid_3d=None if valid_3d is None else valid_3d[subset],
                               px_per_mm=None if px_per_mm is None else px_per_mm[subset])
            out.update({f"{k}_ambiguous": v for k, v in picked.items() if not k.startswith("n_")})
    return out


def score_predictions(
    predictions: dict[str, Tensor], root: int, flip_keypoints: Sequence[int] | None = None
) -> dict[str, float]:
    """The metrics (:func:`mhe.metrics.evaluate`) of :func:`collect_predictions`' output, its optional
    keys included; ``flip_keypoints``: the rigid part whose depth flip is counted (a hand's palm). When
    the data mark an ambiguous subset, its count ``n_ambiguous`` and every metric on it as
    ``<name>_ambiguous`` are added."""
    p = predictions
    per_image = evaluate_per_image(p["pred_xyz"], p["gt_xyz"], p["pred_uv"], p["gt_uv"], p["visible"], root=root,
                                   px_per_mm=p.get("px_per_mm"), mode_xyz=p.get("mode_xyz"),
                                   plausible=p.get("plausible"), flip_keypoints=flip_keypoints,
                                   valid_3d=p.get("valid_3d"))
    return _summaries(per_image, p["visible"], root, p.get("valid_3d"), p.get("px_per_mm"), p.get("ambiguous"))


@torch.no_grad()
def evaluate_model(
    model: Any,
    loader: Iterable[dict],
    *,
    num_samples: int = EVAL_SAMPLES,
    temperature: float = EVAL_TEMPERATURE,
    max_items: int | None = None,
    seed: int | None = EVAL_SEED,
    sample_chunk: int = EVAL_SAMPLE_CHUNK,
) -> dict[str, float]:
    """BH-MPJPE / PA-MPJPE / mean / mode MPJPE in mm, AH in px, PJD 2D-vis (px and mm) / 3D-occ (mm), RD and
    ``rd_mm``, the plausible fraction and the depth-flip split of ``model`` over ``loader`` (see
    :func:`collect_predictions` for the arguments and :func:`mhe.metrics.evaluate` for the names).

    The same numbers as ``score_predictions(collect_predictions(...))`` (up to rounding), computed in streaming
    form: each batch's hypotheses are predicted and scored ``sample_chunk`` at a time and only per-image
    values are kept, so memory grows with the batch size times ``sample_chunk``, not times S."""
    _check_sampling(num_samples, temperature, sample_chunk)
    root, flip = model.spec.root, getattr(model.spec, "flip_keypoints", None)
    with closing(_eval_batches(model, loader, seed, max_items)) as batches:
        kept = [_score_batch(model, batch, root, flip, num_samples, temperature, sample_chunk) for batch in batches]
    if not kept:
        raise ValueError("the loader yielded no items to evaluate")
    # an optional value counts only when every batch had it (as in collect_predictions)
    cat = {k: torch.cat([b[k] for b in kept])[:max_items] for k in kept[0] if all(k in b for b in kept)}
    visible, valid = cat.pop("visible"), cat.pop("valid_3d")
    px_per_mm, ambiguous = cat.pop("px_per_mm", None), cat.pop("ambiguous", None)
    return _summaries(cat, visible, root, None if bool(valid.all()) else valid, px_per_mm, ambiguous)


def _score_batch(model: Any, batch: dict, root: int, flip: Sequence[int] | None, num_samples: int,
                 temperature: float, chunk: int) -> dict[str, Tensor]:
    """One batch's per-image metrics (CPU, float64) and what :func:`evaluate_model` needs besides: ``visible``,
    ``valid_3d`` and, when the batch has them, ``px_per_mm`` and ``ambiguous``."""
    visible, valid = batch["visible"].bool().cpu(), labelled_3d(batch, "joints_3d_mm").cpu()
    stats = HypothesisStats(batch["joints_3d_mm"].float().cpu(), batch["keypoints_2d_px"].float().cpu(), visible,
                            root, valid_3d=valid, flip_keypoints=flip)
    mode = None
    for part in predict_chunks(model, batch, num_samples, temperature, chunk):
        plausible = part.get("plausible")
        stats.add(part["xyz_mm"].float().cpu(), part["uv_px"].float().cpu(),
                  None if plausible is None else plausible.cpu())
        mode = part.get("mode_xyz_mm", mode)
    px_per_mm = batch.get("px_per_mm")
    px_per_mm = None if px_per_mm is None else px_per_mm.float().cpu()
    out = stats.per_image(px_per_mm=px_per_mm, mode_xyz=None if mode is None else mode.float().cpu())
    out.update({"visible": visible, "valid_3d": valid})
    if px_per_mm is not None:
        out["px_per_mm"] = px_per_mm
    if batch.get("ambiguous") is not None:
        out["ambiguous"] = batch["ambiguous"].cpu()
    return out
