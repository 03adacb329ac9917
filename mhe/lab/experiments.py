"""Whole runs: train an experiment, evaluate a checkpoint, load or train a shipped model.

A newcomer can follow a run from here: :func:`train_experiment` builds the experiment a config names
(:func:`mhe.lab.builders.build_experiment`: the model, the splits and the evaluation function) and hands it to
:class:`mhe.lab.train.Trainer`; :func:`evaluate_checkpoint` rebuilds a checkpoint's experiment and scores one
split; :func:`export_checkpoint_meshes` writes the meshes of one item's hypotheses; :func:`load_model`,
:func:`export_checkpoint` and :func:`load_or_train` serve the notebooks and the shipped checkpoints (whose
names are :data:`SHIPPED`: :data:`HAND_OBJECTIVES`, :data:`HAND_VARIANTS`, :data:`HAND_IMAGE_MODELS` and
:data:`BODY_MODELS`).

This module imports models, data, the trainer and the metrics; none of them imports it.
"""

from __future__ import annotations

import numbers
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from mhe.config import ConfigError, ExperimentConfig, validate_config
from mhe.evaluation import EVAL_BATCH_SIZE, EVAL_SAMPLES, EVAL_SEED, EVAL_TEMPERATURE
from mhe.lab.builders import (
    BODY_MODELS,
    DATA_KEYS,
    GENERATED_DATASETS,
    HAND_IMAGE_MODELS,
    HAND_OBJECTIVES,
    HAND_VARIANTS,
    ROOT_CONTENT,
    SHIPPED,
    Experiment,
    build_experiment,
    build_model,
    cap_items,
    check_overrides_type,
    check_root_applies,
    check_settings_apply,
    input_label,
    missing_split_error,
    skipped_items,
    split_of,
)
from mhe.lab.checkpoint import (
    SHIPPED_DIR,
    checkpoint_config,
    checkpoint_dir,
    load_checkpoint,
    load_model_state,
    resolve_checkpoint_path,
)
from mhe.lab.config_io import apply_overrides, config_from_dict, config_to_dict, load_config
from mhe.lab.distributed import DistInfo, init_distributed
from mhe.lab.train import Trainer, TrainResult
from mhe.utils import atomic_torch_save, data_dir, default_device, seed_everything

# the shipped models' names are part of this module's API: they are what load_or_train accepts
__all__ = [
    "BODY_MODELS",
    "EVALUATION_OVERRIDES",
    "HAND_IMAGE_MODELS",
    "HAND_OBJECTIVES",
    "HAND_VARIANTS",
    "SHIPPED",
    "evaluate_checkpoint",
    "export_checkpoint",
    "export_checkpoint_meshes",
    "load_model",
    "load_or_train",
    "train_experiment",
]


def train_experiment(
    cfg: ExperimentConfig, *, resume: bool = False, overwrite: bool = False, dist: DistInfo | None = None
) -> TrainResult:
    """Seed, build the experiment for ``cfg.data.dataset`` and train it (:class:`mhe.lab.train.Trainer`)."""
    info = dist if dist is not None else init_distributed(cfg.device)
    # every rank builds the same initial model (DDP also broadcasts rank 0's weights)
    seed_everything(cfg.seed)
    exp = build_experiment(cfg)
    if exp.train_set is not None and len(exp.train_set) == 0 and cfg.data.dataset in ROOT_CONTENT:  # type: ignore[arg-type]
        raise missing_split_error(cfg, exp, "train")
    if info.is_main:
        for name, data in (("train", exp.train_set), ("val", exp.val_set)):
            n = skipped_items(data)
            if n:
                print(f"[mhe] {cfg.data.dataset} {name} split: {n} item{'s' if n != 1 else ''} skipped (nothing usable "
                      "in them); "
                      f"{len(data)} used", flush=True)  # type: ignore[arg-type]
    _check_labels(cfg, exp.train_set)
    trainer = Trainer.from_config(exp.model, exp.train_set, cfg, val_set=exp.val_set, evaluate_fn=exp.evaluate_fn,
                                  dist=info)
    return trainer.fit(resume=resume, overwrite=overwrite)


# weighted terms that score pose labels (SMPL parameters) or 3D keypoints, by objective ("*": any objective)
_LABEL_TERMS = {
    "items_with_smpl": ("pose labels (SMPL parameters)",
                        {"nll": ("w_nll",), "prohmr": ("w_nll", "w_params", "w_betas")}),
    "items_with_3d": ("3D keypoints", {"prohmr": ("w_3d_mode", "w_3d_samples"), "*": ("w_3d",)}),
}


def _check_labels(cfg: ExperimentConfig, train_set: Any) -> None:
    """A term that scores labels the training files do not have would train on nothing, silently: refuse it.

    Readers of real files count their items with pose labels (``items_with_smpl``) and with 3D keypoints
    (``items_with_3d``); generated data has every label and no such count.
    """
    name = cfg.objective.name
    kwargs = cfg.objective.kwargs()
    for count, (what, by_objective) in _LABEL_TERMS.items():
        if getattr(train_set, count, None) != 0:
            continue
        keys = by_objective.get(name, ()) + by_objective.get("*", ())
        # nll's own weight is implicit: its loss is the NLL
        weighted = [k for k in keys if kwargs.get(k, 1.0 if (name, k) == ("nll", "w_nll") else 0.0)]
        if weighted:
            raise ConfigError(
                f"objective {name!r} weighs {', '.join(weighted)}, which score {what}, but no item of the training "
                f"files has them; use an objective that needs only 2D keypoints (e.g. --config body_mhentropy or "
                f"body_prohmr_2d){_zero_hint(name, weighted)}")


def _zero_hint(name: str, weighted: list[str]) -> str:
    settable = [f"objective.{k}=0" for k in weighted if (name, k) != ("nll", "w_nll")]
    return f", or set {' and '.join(settable)}" if settable else ""


# what an evaluation may change: the data, and the settings the model uses only at evaluation
EVALUATION_OVERRIDES = ("data.", "model.flip_temperature=")


def _checkpoint_experiment(
    path: str | os.PathLike, dataset: str | None, root: str | None, data_seed: int | None,
    data_overrides: Sequence[str],
) -> tuple[Experiment, dict, ExperimentConfig, Path]:
    """A checkpoint's experiment rebuilt (optionally on another dataset, root, data seed or data setting):
    ``(experiment, checkpoint, config, resolved path)``; the weights are not loaded yet."""
    data_overrides = check_overrides_type(data_overrides, "data_overrides")
    for name, value in (("dataset", dataset), ("root", root)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"{name} must be a str, got {type(value).__name__} ({value!r})")
    if data_seed is not None and (not isinstance(data_seed, numbers.Integral) or isinstance(data_seed, bool)
                                  or data_seed < 0):
        raise TypeError(f"data_seed must be a non-negative int, got {data_seed!r}")
    given = {o.split("=", 1)[0].strip(): o for o in data_overrides}
    for option, key, value in (("--data", "data.dataset", dataset), ("--root", "data.root", root),
                               ("--data-seed", "data.data_seed", data_seed)):
        if value is not None and key in given:  # one would silently win over the other
            raise ConfigError(f"{option} {value} and {given[key]} both set {key}: give it once")
    path = resolve_checkpoint_path(path)
    ckpt = load_checkpoint(path)
    cfg = checkpoint_config(ckpt, source=str(path))
    if dataset is not None:
        cfg.data.dataset = dataset
        if "root" not in DATA_KEYS.get(dataset, ("root",)):
            cfg.data.root = None  # the checkpoint's folder means nothing to a generated dataset
    if root is not None:
        cfg.data.root = os.fspath(root)
        check_root_applies(cfg, os.fspath(root))
    if data_overrides:
        bad = [o for o in data_overrides if not o.strip().startswith(EVALUATION_OVERRIDES)]
        if bad:
            raise ConfigError(f"evaluation overrides may only change the data section (data.key=value) or "
                              f"model.flip_temperature (an evaluation-time setting), got "
                              f"{' '.join(bad)}; the model is the checkpoint's")
        data = apply_overrides(config_to_dict(cfg), list(data_overrides))
        cfg = config_from_dict(data)
        validate_config(cfg)
    check_settings_apply(cfg, data_overrides)
    if data_seed is not None:
        if cfg.data.root is not None or cfg.data.dataset not in GENERATED_DATASETS:
            raise ConfigError(f"--data-seed draws a fresh split of a generated benchmark "
                              f"({', '.join(GENERATED_DATASETS)}); {cfg.data.dataset!r} is read from files")
        cfg.data.data_seed = int(data_seed)
    seed_everything(cfg.seed)
    exp = build_experiment(cfg)
    return exp, ckpt, cfg, path


def evaluate_checkpoint(
    path: str | os.PathLike,
    *,
    split: str = "test",
    dataset: str | None = None,
    root: str | None = None,
    num_samples: int | None = None,
    temperature: float = EVAL_TEMPERATURE,
    batch_size: int = EVAL_BATCH_SIZE,
    max_items: int | None = None,
    device: str | None = None,
    data_seed: int | None = None,
    data_overrides: Sequence[str] = (),
    sample_chunk: int | None = None,
) -> dict[str, Any]:
    """Rebuild a checkpoint's experiment (optionally on another dataset / root) and score ``split``.

    ``data_seed`` draws the generated benchmark's splits from another seed (a fresh test split that no
    setting was chosen on); the seed the model was trained with when None. Real datasets have none.
    ``data_overrides`` (``"data.rotation=ho3d"``, ...) evaluate on another setting of the data; only keys
    of the ``data`` section are accepted, and ``model.flip_temperature`` (the depth-flip weight's
    evaluation-time temperature, e.g. ``"model.flip_temperature=1"`` for the weight as trained).

    ``num_samples``: hypotheses per item; None takes the body's protocol (``model.spec.eval_samples``:
    200 for hands, 25 for bodies). ``sample_chunk``: hypotheses scored at once (memory only, not results;
    None: :data:`mhe.evaluation.EVAL_SAMPLE_CHUNK`), e.g. a smaller one for ProHMR's S = 4096 on a small machine.

    ``path`` is a checkpoint file or a shipped checkpoint's name (``"hand_mhentropy"``). The split is
    drawn in batches of ``batch_size`` with generators seeded by :data:`mhe.evaluation.EVAL_SEED`, so
    the same call gives the same numbers (on the same device).

    Every setting applies or is refused: a ``data.*`` override the dataset does not read,
    ``model.flip_temperature`` on a model without the flip mixture, ``root`` for a generated dataset, a
    setting given twice (``data_seed`` and ``data.data_seed=``) or a split the dataset's folder lacks is a
    :class:`~mhe.errors.ConfigError` saying what to do; arguments of the wrong type are a ``TypeError``.

    Returns ``{"checkpoint", "dataset", "input", "root", "split", "num_samples", "temperature", "batch_size",
    "seed", "data_overrides", "data_seed", "step", "items", "skipped_items", "metrics"}``; ``skipped_items``
    counts the items of the split its reader found nothing usable in (not scored); an undefined metric (RD
    of a deterministic model) is ``None``.
    """
    _check_int("num_samples", num_samples, optional=True)
    _check_number("temperature", temperature)
    _check_int("batch_size", batch_size)
    _check_int("max_items", max_items, optional=True)
    _check_int("sample_chunk", sample_chunk, optional=True)
    exp, ckpt, cfg, path = _checkpoint_experiment(path, dataset, root, data_seed, data_overrides)
    if exp.evaluate_fn is None:
        raise ConfigError(f"the experiment for {cfg.data.dataset!r} has no evaluation function")
    data = split_of(exp, cfg, split)
    skipped = skipped_items(data)
    load_model_state(exp.model, ckpt, source=str(path))
    model = exp.model.to(default_device(device)).eval()
    if num_samples is None:  # the body's protocol: 200 hypotheses for hands, the best of 25 for bodies
        num_samples = int(getattr(model.spec, "eval_samples", EVAL_SAMPLES))
    data = cap_items(data, max_items)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    chunk = {} if sample_chunk is None else {"sample_chunk": sample_chunk}  # an evaluate_fn may not stream
    metrics = exp.evaluate_fn(model, loader, num_samples=num_samples, temperature=temperature, **chunk)
    return {
        "checkpoint": str(path),
        "dataset": cfg.data.dataset,
        "input": input_label(cfg),
        "root": cfg.data.root,
        "split": split,
        "num_samples": num_samples,
        "temperature": temperature,
        "batch_size": batch_size,
        "seed": EVAL_SEED,
        "data_overrides": list(data_overrides),
        "data_seed": cfg.data.data_seed if cfg.data.dataset in GENERATED_DATASETS else None,
        "step": ckpt["step"],
        "items": len(data),  # type: ignore[arg-type]
        "skipped_items": skipped,  # items of the split the reader found nothing usable in (not scored)
        "metrics": {k: (None if v != v else float(v)) for k, v in metrics.items()},  # NaN -> None (JSON null)
    }


def _check_int(name: str, value: Any, *, optional: bool = False, minimum: int = 1) -> None:
    """An integer argument of a library call: a clear TypeError for another type, ValueError below ``minimum``."""
    if value is None and optional:
        return
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


def _check_number(name: str, value: Any) -> None:
    """A positive finite number argument (temperatures): TypeError for a string, ValueError otherwise."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, e.g. 0.8, got {type(value).__name__} ({value!r})")
    if not (float(value) > 0 and float(value) != float("inf")):
        raise ValueError(f"{name} must be positive, got {value}")


def export_checkpoint_meshes(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    index: int = 0,
    split: str = "test",
    num_samples: int = 10,
    temperature: float = EVAL_TEMPERATURE,
    dataset: str | None = None,
    root: str | None = None,
    data_seed: int | None = None,
    data_overrides: Sequence[str] = (),
    device: str | None = None,
    seed: int = EVAL_SEED,
    overwrite: bool = False,
) -> Path:
    """Write the meshes of ``num_samples`` hypotheses of item ``index`` of a checkpoint's ``split`` (and its
    ground truth) to ``out`` (``.ply``, ``.obj`` or ``.glb``; one colour per hypothesis, mm, root-relative):
    what ``mhe meshes`` does. Seeded by ``seed``. An existing ``out`` is replaced only with ``overwrite``
    (and only if it is a regular file); checked before any sampling."""
    from mhe.errors import check_output_path
    from mhe.rng import isolated_rng
    from mhe.viz.meshes import MESH_FORMATS, export_hypothesis_meshes

    check_output_path(os.fspath(out), overwrite=overwrite, option="out", suffixes=MESH_FORMATS,
                      overwrite_hint="overwrite=True")
    _check_int("num_samples", num_samples)
    _check_int("index", index, minimum=0)
    _check_number("temperature", temperature)
    exp, ckpt, cfg, path = _checkpoint_experiment(path, dataset, root, data_seed, data_overrides)
    data = split_of(exp, cfg, split)
    if not 0 <= index < len(data):  # type: ignore[arg-type]
        raise ConfigError(f"item {index} is out of range: the {split} split has {len(data)} items")  # type: ignore[arg-type]
    load_model_state(exp.model, ckpt, source=str(path))
    model: Any = exp.model.to(default_device(device)).eval()  # a MultiHypothesisModel: predict_meshes, spec
    dev = next(model.parameters()).device
    item = data[index]
    batch = {k: v[None].to(dev) for k, v in item.items() if isinstance(v, torch.Tensor)}
    with isolated_rng(seed):
        verts = model.predict_meshes(batch, num_samples, temperature)[0].cpu()
    truth = model.ground_truth_meshes(batch)
    return export_hypothesis_meshes(out, verts, model.spec.faces,
                                    ground_truth=None if truth is None else truth[0].cpu())


# ---------------------------------------------------------------------------------------------------
# shipped checkpoints: load, export, load or train


def load_model(path: str | os.PathLike, device: str | None = None) -> tuple[nn.Module, ExperimentConfig]:
    """Rebuild the model a checkpoint (a path or a shipped name) was trained with, weights loaded, in eval mode."""
    path = resolve_checkpoint_path(path)
    ckpt = load_checkpoint(path)
    cfg = checkpoint_config(ckpt, source=str(path))
    model = build_model(cfg)
    load_model_state(model, ckpt, source=str(path))
    return model.to(default_device(device)).eval(), cfg


def export_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, name: str | None = None, *,
                      overwrite: bool = False) -> Path:
    """Copy a training checkpoint without its optimizer state (what ships in ``mhe/checkpoints``);
    ``name`` renames the run (e.g. a candidate run chosen on validation becomes ``hand_mhentropy``).
    An existing ``dst`` is replaced only with ``overwrite=True`` (and only if it is a regular file)."""
    from mhe.errors import check_output_path

    check_output_path(os.fspath(dst), overwrite=overwrite, option="dst", overwrite_hint="overwrite=True")
    state = load_checkpoint(src)
    if name is not None:
        state["config"]["name"] = name
    state["optimizer"] = None
    state["rng"] = state["rng"][:1]
    # the run folder was local to the machine that trained it; a fresh run of this config uses the default
    state["config"]["train"]["out_dir"] = "runs/{name}"
    return atomic_torch_save(state, dst)


#: What ``load_or_train(..., smoke=True)`` sets (the caller's overrides win): a few steps on a few items, and a
#: narrow network of the model's architecture (every layer kind, fewer and thinner). A smoke run checks that
#: the code runs end to end, not what it learns; the notebooks' smoke runs train about thirty of them.
SMOKE_SETTINGS = ("train.steps=4", "data.train_size=32", "data.val_size=16", "data.test_size=16",
                  "train.batch_size=16", "train.eval_every=0",
                  "model.context_dim=32", "model.encoder_hidden=[32,32]", "model.flow_transforms=2",
                  "model.flow_hidden=[32,32]", "model.head_hidden=32", "model.cnn_channels=[8,8,16,16]",
                  "train.init_from=null")  # a tiny smoke model starts fresh: no shipped weights fit it


def load_or_train(
    objective: str,
    *,
    body: str = "hand",
    smoke: bool = False,
    overrides: tuple[str, ...] | list[str] = (),
    directory: str | os.PathLike | None = None,
    device: str | None = None,
    progress: bool = True,
) -> tuple[nn.Module, ExperimentConfig]:
    """The ``body`` ("hand" or "body") model trained with ``objective`` (hands: one of
    :data:`HAND_OBJECTIVES`, :data:`HAND_VARIANTS` or :data:`HAND_IMAGE_MODELS`; bodies: one of
    :data:`BODY_MODELS`).

    Loads ``<directory>/<body>_<objective>.pt`` (default :func:`mhe.lab.checkpoint.checkpoint_dir`) when it
    exists; otherwise trains the packaged config ``<body>_<objective>`` with a progress bar and keeps the
    result there. ``smoke=True`` always trains a tiny run (a few steps on a few items, a narrow network:
    :data:`SMOKE_SETTINGS`) in a temporary folder, removed afterwards.

    ``overrides`` (``["train.steps=200", ...]``) train a variant, never loaded from nor exported to the
    shipped checkpoints. Runs go to ``<directory>/runs/<run>`` when ``directory`` is given, else to
    ``<data folder>/runs/<run>`` (never into the package), unless the overrides set ``train.out_dir``. A run
    folder that already holds a run is continued (resumed; a finished run ends at once), never
    overwritten: a run of another config there is refused with a message.
    """
    overrides = check_overrides_type(overrides)
    if body not in SHIPPED:
        raise ValueError(f"body must be one of {tuple(SHIPPED)}, got {body!r}")
    if objective not in SHIPPED[body]:
        raise ValueError(f"objective must be one of {SHIPPED[body]} for body={body!r}, got {objective!r}")
    base = Path(directory) if directory is not None else None
    path = (base if base is not None else checkpoint_dir()) / f"{body}_{objective}.pt"
    if base is None and not path.exists() and (SHIPPED_DIR / path.name).exists():
        path = SHIPPED_DIR / path.name  # $MHE_DATA/checkpoints lacks it: the one shipped in the package
    if path.exists() and not smoke and not overrides:
        return load_model(path, device)
    extra = list(overrides)
    user_keys = {o.split("=", 1)[0].strip() for o in overrides}
    user_out = "train.out_dir" in user_keys
    temp: str | None = None
    if smoke:  # a tiny run; the caller's own settings win over these
        extra += [o for o in SMOKE_SETTINGS if o.split("=")[0] not in user_keys]
        if not user_out:
            temp = tempfile.mkdtemp(prefix=f"mhe_smoke_{body}_{objective}_")
            extra += [f"train.out_dir={temp}"]
    elif not user_out:
        run = objective if body == "hand" else f"{body}_{objective}"
        extra += [f"train.out_dir={(base if base is not None else data_dir()) / 'runs' / run}"]
    try:
        cfg = load_config(f"{body}_{objective}", extra)
        if device is not None:
            cfg.device = device
        cfg.train.progress = progress
        out = cfg.out_path()
        resume = temp is None and (out / "last.pt").exists()
        if not smoke and not overrides:
            # No silent hours: a missing checkpoint means a full training run, so say so before it starts.
            print(f"[mhe] no checkpoint at {path}: training {body}_{objective} from scratch, {cfg.train.steps} steps "
                  f"(the shipped models took 20-80 CPU-minutes each on 2 cores; "
                  f"{'the progress bar shows the time left' if progress else 'progress=False: no progress bar'}). "
                  f"Ctrl-C saves the run; `mhe train --config {body}_{objective} train.out_dir={cfg.train.out_dir} "
                  "--resume` continues it." + (f" Continuing the run in {out}." if resume else ""), flush=True)
        elif resume and progress:
            print(f"[mhe] continuing the run in {out} (it is never overwritten; pass another train.out_dir "
                  "for a fresh one)", flush=True)
        result = train_experiment(cfg, resume=resume)
        if not smoke and not overrides:
            export_checkpoint(result.checkpoint, path)
        return load_model(result.checkpoint, device)
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
