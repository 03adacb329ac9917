"""The experiment layer: which model and data a config names, and whole runs built from them.

A newcomer can follow a run from here: :func:`build_experiment` looks ``cfg.data.dataset`` up in
:data:`EXPERIMENTS` (one builder per dataset, listed below; plugins add theirs with
:func:`register_experiment`), which returns an :class:`Experiment` — the model (a
:class:`~mhe.models.multi_hypothesis.MultiHypothesisModel` for a body spec), the train / val / test
splits and the evaluation function (:func:`mhe.evaluation.evaluate_model`). :func:`train_experiment`
hands that to :class:`mhe.lab.train.Trainer`; :func:`evaluate_checkpoint` rebuilds a checkpoint's
experiment and scores one split; :func:`load_model`, :func:`export_checkpoint` and
:func:`load_or_train` serve the notebooks and the shipped checkpoints.

This module imports models, data, the trainer and the metrics; none of them imports it.
"""

from __future__ import annotations

import numbers
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from mhe.config import ConfigError, ExperimentConfig, validate_config
from mhe.evaluation import EVAL_BATCH_SIZE, EVAL_SAMPLES, EVAL_SEED, EVAL_TEMPERATURE, evaluate_model
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
from mhe.lab.train import EvaluateFn, Trainer, TrainResult
from mhe.utils import atomic_torch_save, data_dir, default_device, seed_everything

SPLITS = ("train", "val", "test")


class Experiment(NamedTuple):
    """What a builder returns: unpacks as ``model, train_set, val_set, evaluate_fn, test_set``.

    ``evaluate_fn(model, loader, *, num_samples, temperature) -> metrics`` scores a split.
    """

    model: nn.Module
    train_set: Dataset
    val_set: Dataset | None = None
    evaluate_fn: EvaluateFn | None = None
    test_set: Dataset | None = None

    def splits(self) -> dict[str, Dataset | None]:
        """``{"train": ..., "val": ..., "test": ...}``, None where the builder gave no split."""
        return {"train": self.train_set, "val": self.val_set, "test": self.test_set}

    def split(self, name: str) -> Dataset:
        """The dataset of split ``name`` ("train", "val" or "test"), with a clear error when absent."""
        if name not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {name!r}")
        data = self.splits()[name]
        if data is None:
            have = [s for s, d in self.splits().items() if d is not None]
            raise ConfigError(f"this experiment has no {name} split (its builder gave none); it has: "
                              f"{', '.join(have) or 'none'}")
        return data


ExperimentBuilder = Callable[[ExperimentConfig], Experiment]


# ---------------------------------------------------------------------------------------------------
# the builders


def _cap(dataset: Dataset, size: int | None) -> Dataset:
    """The first ``size`` items of ``dataset`` (all when None)."""
    if size is None or size >= len(dataset):  # type: ignore[arg-type]
        return dataset
    return Subset(dataset, range(size))


def mean_camera(dataset: Dataset, n: int = 16) -> tuple[float, float, float]:
    """The mean ``camera`` (log-scale, tx, ty) of the first ``n`` items (freshly generated when the
    dataset can, so building a model does not trigger generating a whole cached split)."""
    if len(dataset) == 0:  # type: ignore[arg-type]
        return (0.0, 0.0, 0.0)
    if "camera" not in dataset[0]:  # real data: no orthographic crop camera to start from
        return (0.0, 0.0, 0.0)
    get = getattr(dataset, "generate", dataset.__getitem__)
    cams = torch.stack([get(i)["camera"] for i in range(min(n, len(dataset)))])  # type: ignore[arg-type]
    return tuple(float(x) for x in cams.mean(0))  # type: ignore[return-value]


def build_hand_model(cfg: ExperimentConfig, train_set: Dataset | None = None) -> nn.Module:
    """The hand model for ``cfg``, its camera bias started at the training set's mean camera."""
    from mhe.models.hand import MultiHypothesisHand

    init = mean_camera(train_set) if train_set is not None else (0.0, 0.0, 0.0)
    return MultiHypothesisHand(cfg.model, init_camera=init)


def build_body_model(cfg: ExperimentConfig, train_set: Dataset | None = None) -> nn.Module:
    """The SMPL body model for ``cfg``, its camera bias started at the training set's mean camera."""
    from mhe.models.body import MultiHypothesisBody

    init = mean_camera(train_set) if train_set is not None else (0.0, 0.0, 0.0)
    return MultiHypothesisBody(cfg.model, init_camera=init)


#: One model builder per ``model.body``.
MODELS: dict[str, Callable[[ExperimentConfig, Dataset | None], nn.Module]] = {
    "hand": build_hand_model,
    "body": build_body_model,
}


def build_model(cfg: ExperimentConfig, train_set: Dataset | None = None) -> nn.Module:
    """The model ``cfg.model.body`` names (a hand or a body), camera bias from ``train_set`` when given."""
    if cfg.model.body not in MODELS:
        raise ConfigError(f"model.body must be one of {', '.join(MODELS)}, got {cfg.model.body!r}")
    return MODELS[cfg.model.body](cfg, train_set)


PLURAL = {"hand": "hands", "body": "bodies"}


def _need_body(cfg: ExperimentConfig, body: str) -> None:
    if cfg.model.body != body:
        mine = cfg.model.body
        others = [d for d, b in DATASET_BODY.items() if b == mine]
        shipped = ", ".join(f"{body}_{n}" for n in SHIPPED.get(body, ())[:3])
        raise ConfigError(
            f"data.dataset={cfg.data.dataset} holds {PLURAL.get(body, body)}, but this is a {mine} model "
            f"(model.body={mine}): use a {body} checkpoint (shipped: {shipped}, ...) or train one from a {body}_* "
            f"config" + (f"; a {mine} model reads data.dataset={' / '.join(others)}" if others else ""))


#: What the data of each built-in dataset are (the model's ``model.body`` must match).
DATASET_BODY = {"synthetic-hands": "hand", "ho3d": "hand", "synthetic-bodies": "body", "prohmr": "body",
                "3dpw": "body"}

_SIZES = ("train_size", "val_size", "test_size")
#: The ``data.*`` settings each built-in dataset reads: any other would change nothing, so an override of it
#: is refused (:func:`check_settings_apply`). Datasets added by plugins are not checked.
DATA_KEYS: dict[str, tuple[str, ...]] = {
    "synthetic-hands": ("dataset", *_SIZES, "data_seed", "occlusion", "images", "visibility", "rotation"),
    "ho3d": ("dataset", "root", *_SIZES, "images"),
    "synthetic-bodies": ("dataset", *_SIZES, "data_seed", "occlusion", "truncation"),
    "prohmr": ("dataset", "root", *_SIZES),
    "3dpw": ("dataset", "root", *_SIZES),
}
#: What ``data.root`` must hold for the datasets read from files (docs/formats.md).
ROOT_CONTENT = {
    "ho3d": "HO3D v3 (train.txt, evaluation.txt and the sequence folders)",
    "prohmr": "ProHMR dataset files named train.npz, val.npz and/or test.npz",
    "3dpw": "3DPW's sequenceFiles/{train,validation,test}/*.pkl",
}


IMAGE_ENCODERS = ("cnn", "resnet")  # the encoders that read image crops (data.images) instead of keypoints


def check_overrides_type(overrides: Any, name: str = "overrides") -> list[str]:
    """``overrides`` as a list of ``"key=value"`` strings; a single string (whose characters would be taken
    one by one) or anything else is a ``TypeError`` saying what to pass."""
    if overrides is None:
        return []
    if isinstance(overrides, (str, bytes)):
        raise TypeError(f"{name} must be a list of 'key=value' strings, e.g. [{overrides!r}], not a single string")
    try:
        items = list(overrides)
    except TypeError:
        raise TypeError(f"{name} must be a list of 'key=value' strings, got {type(overrides).__name__}") from None
    bad = [o for o in items if not isinstance(o, str)]
    if bad:
        raise TypeError(f"{name} must be a list of 'key=value' strings; {bad[0]!r} is a {type(bad[0]).__name__}")
    return items


def check_settings_apply(cfg: ExperimentConfig, overrides: Sequence[str]) -> None:
    """Refuse the ``key=value`` overrides that would change nothing for ``cfg``: a ``data.*`` key that
    ``cfg.data.dataset`` does not read (:data:`DATA_KEYS`), ``model.flip_temperature`` on a model without
    the depth-flip mixture, a key given twice with different values (the last would silently win). Raises
    :class:`ConfigError` saying why and what to do instead."""
    dataset = cfg.data.dataset
    seen: dict[str, str] = {}
    for text in overrides:
        key, _, value = text.partition("=")
        key = key.strip()
        if key in seen and seen[key] != value.strip():
            raise ConfigError(f"{key} is given twice ({key}={seen[key]} and {text.strip()}): give it once")
        seen[key] = value.strip()
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        parts = key.split(".")
        reads = DATA_KEYS.get(dataset)
        if len(parts) == 2 and parts[0] == "data" and reads is not None and parts[1] not in reads:
            users = [d for d, keys in DATA_KEYS.items() if parts[1] in keys]
            raise ConfigError(
                f"{key} is not read by data.dataset={dataset}, so it would change nothing"
                + (f" (it is a setting of {', '.join(users)})" if users else "")
                + f"; drop it. {dataset} reads: {', '.join('data.' + k for k in reads)}")
        if key == "data.images" and cfg.data.images and cfg.model.encoder not in IMAGE_ENCODERS:
            raise ConfigError(
                f"data.images=true renders image crops, and model.encoder={cfg.model.encoder} reads keypoints, so "
                f"nothing would read them; drop it, or use an image encoder (model.encoder=cnn, as the *_image "
                "configs)")
        if key == "model.flip_temperature" and not cfg.model.flip_mixture:
            raise ConfigError(
                "model.flip_temperature scales the weight of the depth-flip mixture, and this model has none "
                "(model.flip_mixture=false), so it would change nothing; drop it (the shipped model with the "
                "mixture: hand_mhentropy_rot)")


def _check_root_applies(cfg: ExperimentConfig, root: str) -> None:
    """``root`` given for a dataset that is not read from a folder: refuse (it would be ignored)."""
    reads = DATA_KEYS.get(cfg.data.dataset)
    if reads is None or "root" in reads:
        return
    options = [d for d, keys in DATA_KEYS.items() if "root" in keys and DATASET_BODY.get(d) == cfg.model.body]
    raise ConfigError(
        f"--root {root}: data.dataset={cfg.data.dataset} is generated, not read from a folder, so the folder "
        f"would be ignored; say which dataset it holds with --data (dataset=), e.g. "
        + " or ".join(f"--data {d} ({ROOT_CONTENT[d]})" for d in options))


def _missing_split(cfg: ExperimentConfig, exp: Experiment, split: str) -> ConfigError:
    """The error for a split the experiment lacks, saying what to add (files for a dataset read from files)."""
    have = [s for s, d in exp.splits().items() if d is not None and len(d) > 0]  # type: ignore[arg-type]
    alt = [s for s in have if s != "train" and s != split]
    other = f", or use --split {alt[0]} (the folder has it)" if alt and split != "train" else ""
    root = cfg.data.root
    if cfg.data.dataset == "prohmr":
        return ConfigError(f"data.root={root} holds no {split}.npz, so there is no {split} split: add {split}.npz "
                           f"there (a ProHMR dataset file, see docs/formats.md){other}")
    if cfg.data.dataset == "3dpw":
        folder = {"train": "train", "val": "validation", "test": "test"}[split]
        return ConfigError(f"data.root={root} holds no {split} split: add 3DPW's {folder} sequences there "
                           f"(sequenceFiles/{folder}/*.pkl){other}")
    return ConfigError(f"the experiment for data.dataset={cfg.data.dataset} has no {split} split"
                       + (f"; it has: {', '.join(have)}" if have else ""))


def _split_of(exp: Experiment, cfg: ExperimentConfig, split: str) -> Dataset:
    if split in SPLITS and exp.splits()[split] is None:
        raise _missing_split(cfg, exp, split)
    return exp.split(split)


def skipped_items(dataset: Any) -> int:
    """How many items a dataset reader skipped as unusable (its ``skipped_items``; 0 when it has none),
    looking through :class:`~torch.utils.data.Subset` wrappers."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    n = getattr(dataset, "skipped_items", 0)
    return int(n) if isinstance(n, int) and not isinstance(n, bool) else 0


def input_label(cfg: ExperimentConfig) -> str:
    """What a model reads, for tables and ``mhe evaluate``: ``"visible 2D keypoints"`` (the keypoint
    encoders, which make it a 2D→3D lifting model) or ``"image (64 px crop)"`` (the image encoders)."""
    if cfg.model.encoder in ("cnn", "resnet"):
        return f"image ({cfg.model.image_size} px crop)"
    return "visible 2D keypoints" if cfg.model.encoder in ("mlp", "resmlp") else str(cfg.model.encoder)


# datasets generated from ``data.data_seed`` (``mhe evaluate --data-seed`` draws a fresh split of them)
GENERATED_DATASETS = ("synthetic-hands", "synthetic-bodies")


def build_synthetic_hands(cfg: ExperimentConfig) -> Experiment:
    """Synthetic occluded hands (:class:`mhe.data.SyntheticHands`), generated once and cached."""
    from mhe.data import SyntheticHands

    _need_body(cfg, "hand")
    d = cfg.data
    common = dict(seed=d.data_seed, occlusion=d.occlusion, images=d.images, image_size=cfg.model.image_size,
                  visibility=d.visibility, rotation=d.rotation, cache_dir=data_dir() / "cache",
                  progress=cfg.train.progress)
    train = SyntheticHands("train", size=d.train_size, **common)
    val = SyntheticHands("val", size=d.val_size, **common)
    test = SyntheticHands("test", size=d.test_size, **common)
    return Experiment(build_hand_model(cfg, train), train, val, evaluate_model, test)


def build_ho3d(cfg: ExperimentConfig) -> Experiment:
    """HO3D v3 from ``data.root`` (:class:`mhe.data.HO3D`); its held-out sequences serve as val and test."""
    from mhe.body import load_mano
    from mhe.data import HO3D

    _need_body(cfg, "hand")
    d = cfg.data
    if not d.root:
        raise ConfigError("data.dataset=ho3d needs data.root=<folder of HO3D v3 (the one holding train.txt)>")
    common = dict(images=d.images, image_size=cfg.model.image_size, mano=load_mano())
    train = _cap(HO3D(d.root, split="train", **common), d.train_size)
    held_out = HO3D(d.root, split="test", **common)
    return Experiment(build_hand_model(cfg, train), train, _cap(held_out, d.val_size), evaluate_model,
                      _cap(held_out, d.test_size))


def build_synthetic_bodies(cfg: ExperimentConfig) -> Experiment:
    """Synthetic ambiguous bodies (:class:`mhe.data.SyntheticBodies`: truncation, occluders, limb depth),
    generated once and cached."""
    from mhe.data.synthetic_bodies import SyntheticBodies

    _need_body(cfg, "body")
    d = cfg.data
    common = dict(seed=d.data_seed, occlusion=d.occlusion, truncation=d.truncation,
                  cache_dir=data_dir() / "cache", progress=cfg.train.progress)
    train = SyntheticBodies("train", size=d.train_size, **common)
    val = SyntheticBodies("val", size=d.val_size, **common)
    test = SyntheticBodies("test", size=d.test_size, **common)
    return Experiment(build_body_model(cfg, train), train, val, evaluate_model, test)


def _real_body_splits(cfg: ExperimentConfig, name: str, make: Callable[[str], Dataset | None]) -> Experiment:
    """A body experiment on files: ``make(split)`` reads a split (None when the folder lacks it); the train
    split may be absent for evaluation only (it is then empty), the test split falls back to val."""
    _need_body(cfg, "body")
    d = cfg.data
    if not d.root:
        raise ConfigError(f"data.dataset={name} needs data.root=<the dataset's folder: {ROOT_CONTENT[name]}>")
    root = Path(d.root)
    if not root.exists():
        raise FileNotFoundError(f"data.root={d.root}: no such folder; it should hold {ROOT_CONTENT[name]}")
    if not root.is_dir():
        raise NotADirectoryError(f"data.root={d.root} is a file; give the folder that holds {ROOT_CONTENT[name]}")
    train, val, test = make("train"), make("val"), make("test")
    if train is None and val is None and test is None:
        there = sorted(p.name for p in root.iterdir())[:8]
        raise ConfigError(f"data.root={d.root} holds no split of a {name} dataset: it should hold "
                          f"{ROOT_CONTENT[name]} (see docs/formats.md); it holds: {', '.join(there) or 'nothing'}")
    # no stand-ins: a split the folder lacks stays absent (a test split scored on val files would be mislabelled)
    train = _cap(train, d.train_size) if train is not None else Subset(val if val is not None else test, [])
    return Experiment(build_body_model(cfg, train), train, _cap(val, d.val_size) if val is not None else None,
                      evaluate_model, _cap(test, d.test_size) if test is not None else None)


def build_prohmr(cfg: ExperimentConfig) -> Experiment:
    """Bodies from ProHMR-format ``.npz`` files: ``data.root`` holds ``train.npz``, ``val.npz`` and/or
    ``test.npz`` (ProHMR's dataset files, renamed or linked)."""
    from mhe.data.prohmr import ProHMRBodies

    root = Path(cfg.data.root or ".")
    return _real_body_splits(cfg, "prohmr", lambda split: ProHMRBodies(root / f"{split}.npz")
                             if (root / f"{split}.npz").is_file() else None)


def build_3dpw(cfg: ExperimentConfig) -> Experiment:
    """3DPW from its raw sequence pickles: ``data.root`` holds ``sequenceFiles/{train,validation,test}``."""
    from mhe.data.threedpw import ThreeDPW

    root = Path(cfg.data.root or ".")
    folders = {"train": "train", "val": "validation", "test": "test"}
    return _real_body_splits(cfg, "3dpw", lambda split: ThreeDPW(root, folders[split])
                             if (root / "sequenceFiles" / folders[split]).is_dir()
                             and any((root / "sequenceFiles" / folders[split]).glob("*.pkl")) else None)


#: One builder per ``data.dataset``.
EXPERIMENTS: dict[str, ExperimentBuilder] = {
    "synthetic-hands": build_synthetic_hands,
    "ho3d": build_ho3d,
    "synthetic-bodies": build_synthetic_bodies,
    "prohmr": build_prohmr,
    "3dpw": build_3dpw,
}


def register_experiment(dataset: str, builder: ExperimentBuilder | None = None, *, overwrite: bool = False) -> Any:
    """Add ``builder(cfg) -> Experiment`` for ``cfg.data.dataset == dataset`` (usable as a decorator)."""

    def add(fn: ExperimentBuilder) -> ExperimentBuilder:
        if dataset in EXPERIMENTS and EXPERIMENTS[dataset] is not fn and not overwrite:
            raise ValueError(
                f"an experiment builder for dataset {dataset!r} is already registered "
                f"({EXPERIMENTS[dataset].__module__}.{EXPERIMENTS[dataset].__qualname__}); "
                "pass overwrite=True to replace it"
            )
        EXPERIMENTS[dataset] = fn
        return fn

    return add(builder) if builder is not None else add


def available_experiments() -> list[str]:
    """The dataset keys with a builder."""
    return sorted(EXPERIMENTS)


def build_experiment(cfg: ExperimentConfig) -> Experiment:
    """``(model, train_set, val_set, evaluate_fn, test_set)`` for ``cfg``, from the builder of ``cfg.data.dataset``."""
    key = cfg.data.dataset
    if key not in EXPERIMENTS:
        raise ConfigError(
            f"no experiment builder for data.dataset={key!r}; known datasets: {', '.join(sorted(EXPERIMENTS))}. "
            "Register one with mhe.lab.experiments.register_experiment(name, builder)."
        )
    images = cfg.model.encoder in IMAGE_ENCODERS
    if images and key in DATA_KEYS and "images" not in DATA_KEYS[key]:
        raise ConfigError(f"model.encoder={cfg.model.encoder} reads image crops, and data.dataset={key} has none "
                          "(keypoints only): use a keypoint encoder (model.encoder=mlp or resmlp)")
    exp = EXPERIMENTS[key](cfg)
    if not isinstance(exp, tuple) or len(exp) < 2:
        raise TypeError(f"the builder for {key!r} must return Experiment(model, train_set, val_set, evaluate_fn)")
    return Experiment(*exp)


# ---------------------------------------------------------------------------------------------------
# whole runs


def train_experiment(
    cfg: ExperimentConfig, *, resume: bool = False, overwrite: bool = False, dist: DistInfo | None = None
) -> TrainResult:
    """Seed, build the experiment for ``cfg.data.dataset`` and train it (:class:`mhe.lab.train.Trainer`)."""
    info = dist if dist is not None else init_distributed(cfg.device)
    # every rank builds the same initial model (DDP also broadcasts rank 0's weights)
    seed_everything(cfg.seed)
    exp = build_experiment(cfg)
    if exp.train_set is not None and len(exp.train_set) == 0 and cfg.data.dataset in ROOT_CONTENT:  # type: ignore[arg-type]
        raise _missing_split(cfg, exp, "train")
    if info.is_main:
        for name, data in (("train", exp.train_set), ("val", exp.val_set)):
            n = skipped_items(data)
            if n:
                print(f"[mhe] {cfg.data.dataset} {name} split: {n} item{'s' if n != 1 else ''} skipped (nothing usable "
                      "in them); "
                      f"{len(data)} used", flush=True)  # type: ignore[arg-type]
    _check_labels(cfg, exp.train_set)
    trainer = Trainer(exp.model, exp.train_set, cfg, val_set=exp.val_set, evaluate_fn=exp.evaluate_fn, dist=info)
    return trainer.fit(resume=resume, overwrite=overwrite)


# weighted terms that score pose labels (SMPL parameters) or 3D keypoints, by objective ("*": any objective)
_LABEL_TERMS = {
    "items_with_smpl": ("pose labels (SMPL parameters)", {"nll": ("w_nll",), "prohmr": ("w_nll", "w_params", "w_betas")}),
    "items_with_3d": ("3D keypoints", {"prohmr": ("w_3d_mode", "w_3d_samples"), "*": ("w_3d",)}),
}


def _check_labels(cfg: ExperimentConfig, train_set: Any) -> None:
    """A term that scores labels the training files do not have would train on nothing, silently: refuse it.

    Readers of real files count their items with pose labels (``items_with_smpl``) and with 3D keypoints
    (``items_with_3d``); generated data has every label and no such count.
    """
    name = cfg.objective.name
    kwargs = {**cfg.objective.kwargs(), **cfg.objective.extra}
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
    settable = [f"objective.{'' if k == 'w_3d' else 'extra.'}{k}=0" for k in weighted if (name, k) != ("nll", "w_nll")]
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
    if data_seed is not None and (not isinstance(data_seed, numbers.Integral) or isinstance(data_seed, bool) or data_seed < 0):
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
        _check_root_applies(cfg, os.fspath(root))
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
) -> dict[str, Any]:
    """Rebuild a checkpoint's experiment (optionally on another dataset / root) and score ``split``.

    ``data_seed`` draws the generated benchmark's splits from another seed (a fresh test split that no
    setting was chosen on); the seed the model was trained with when None. Real datasets have none.
    ``data_overrides`` (``"data.rotation=ho3d"``, ...) evaluate on another setting of the data; only keys
    of the ``data`` section are accepted, and ``model.flip_temperature`` (the depth-flip weight's
    evaluation-time temperature, e.g. ``"model.flip_temperature=1"`` for the weight as trained).

    ``num_samples``: hypotheses per item; None takes the body's protocol (``model.spec.eval_samples``:
    200 for hands, 25 for bodies).

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
    exp, ckpt, cfg, path = _checkpoint_experiment(path, dataset, root, data_seed, data_overrides)
    if exp.evaluate_fn is None:
        raise ConfigError(f"the experiment for {cfg.data.dataset!r} has no evaluation function")
    data = _split_of(exp, cfg, split)
    skipped = skipped_items(data)
    load_model_state(exp.model, ckpt, source=str(path))
    model = exp.model.to(default_device(device)).eval()
    if num_samples is None:  # the body's protocol: 200 hypotheses for hands, the best of 25 for bodies
        num_samples = int(getattr(model.spec, "eval_samples", EVAL_SAMPLES))
    data = _cap(data, max_items)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    metrics = exp.evaluate_fn(model, loader, num_samples=num_samples, temperature=temperature)
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
    if not (value > 0 and value != float("inf")):
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

    check_output_path(out, overwrite=overwrite, option="out", suffixes=MESH_FORMATS, overwrite_hint="overwrite=True")
    _check_int("num_samples", num_samples)
    _check_int("index", index, minimum=0)
    _check_number("temperature", temperature)
    exp, ckpt, cfg, path = _checkpoint_experiment(path, dataset, root, data_seed, data_overrides)
    data = _split_of(exp, cfg, split)
    if not 0 <= index < len(data):  # type: ignore[arg-type]
        raise ConfigError(f"item {index} is out of range: the {split} split has {len(data)} items")  # type: ignore[arg-type]
    load_model_state(exp.model, ckpt, source=str(path))
    model = exp.model.to(default_device(device)).eval()
    dev = next(model.parameters()).device
    item = data[index]
    batch = {k: v[None].to(dev) for k, v in item.items() if isinstance(v, torch.Tensor)}
    with isolated_rng(seed):
        verts = model.predict_meshes(batch, num_samples, temperature)[0].cpu()
    truth = model.ground_truth_meshes(batch)
    return export_hypothesis_meshes(out, verts, model.spec.faces, ground_truth=None if truth is None else truth[0].cpu())


# ---------------------------------------------------------------------------------------------------
# shipped checkpoints: load, export, load or train

HAND_OBJECTIVES = ("mhentropy", "no_entropy", "nll", "min_of_n", "deterministic")
# Other shipped models: MHEntropy with the rotation in the flow, or over another pose parameterisation.
HAND_VARIANTS = ("mhentropy_rot", "mhentropy_aa")
# The hand models that read pixels (configs hand_<name>): a compact CNN on the rendered 64 px crop, no
# keypoints and no visibility mask into the network (the likelihood still sees only the visible joints).
# Kept apart from HAND_VARIANTS: the notebooks' keypoint tables loop over those.
HAND_IMAGE_MODELS = ("mhentropy_image", "nll_image", "deterministic_image")
# The shipped body models (configs body_<name>): MHEntropy from visible 2D keypoints and with a 3D term,
# ProHMR's objective in its 2D-visible setting (no pose labels), with pose labels (NLL) and with its 3D
# keypoint term, min-of-N and a deterministic regressor.
BODY_MODELS = ("mhentropy", "mhentropy_3d", "prohmr_2d", "nll", "nll_3d", "min_of_n", "deterministic")
SHIPPED = {"hand": HAND_OBJECTIVES + HAND_VARIANTS + HAND_IMAGE_MODELS, "body": BODY_MODELS}


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

    check_output_path(dst, overwrite=overwrite, option="dst", overwrite_hint="overwrite=True")
    state = load_checkpoint(src)
    if name is not None:
        state["config"]["name"] = name
    state["optimizer"] = None
    state["rng"] = state["rng"][:1]
    # the run folder was local to the machine that trained it; a fresh run of this config uses the default
    state["config"]["train"]["out_dir"] = "runs/{name}"
    return atomic_torch_save(state, dst)


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
    result there. ``smoke=True`` always trains a tiny run (a few steps on a few items) in a temporary folder,
    removed afterwards.

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
        extra += [o for o in ("train.steps=4", "data.train_size=32", "data.val_size=16", "data.test_size=16",
                              "train.batch_size=16", "train.eval_every=0") if o.split("=")[0] not in user_keys]
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
