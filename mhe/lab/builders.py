"""Experiments: which model and which data a config names.

:func:`build_experiment` looks ``cfg.data.dataset`` up in :data:`EXPERIMENTS` (one builder per dataset, listed
below; plugins add theirs with :func:`register_experiment`), which returns an :class:`Experiment`: the model (a
:class:`~mhe.models.multi_hypothesis.MultiHypothesisModel` for a body spec, from :func:`build_model`), the
train / val / test splits and the evaluation function (:func:`mhe.evaluation.evaluate_model`). Beside them:
which ``data.*`` settings each built-in dataset reads (:data:`DATA_KEYS`, so that a setting that would change
nothing is refused: :func:`check_settings_apply`), what a dataset read from files needs in ``data.root``
(:data:`ROOT_CONTENT`), and the names of the shipped models (:data:`SHIPPED`).

Whole runs built from an experiment (train, evaluate a checkpoint, load or train a shipped model) are
:mod:`mhe.lab.experiments`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from mhe.config import ConfigError, ExperimentConfig
from mhe.evaluation import evaluate_model
from mhe.lab.train import EvaluateFn
from mhe.utils import data_dir

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


def cap_items(dataset: Dataset, size: int | None) -> Dataset:
    """The first ``size`` items of ``dataset`` (all when None)."""
    if size is None or size >= len(dataset):  # type: ignore[arg-type]
        return dataset
    return Subset(dataset, range(size))


# mean_camera of the generated splits met in this process, by the split's cache key (which changes with anything
# that changes its items): every model built on the same training split starts from the same camera.
_MEAN_CAMERAS: dict[tuple, tuple[float, float, float]] = {}


def mean_camera(dataset: Dataset, n: int = 16) -> tuple[float, float, float]:
    """The mean ``camera`` (log-scale, tx, ty) of the first ``n`` items (freshly generated when the
    dataset can, so building a model does not trigger generating a whole cached split)."""
    if len(dataset) == 0:  # type: ignore[arg-type]
        return (0.0, 0.0, 0.0)
    count = min(n, len(dataset))  # type: ignore[arg-type]
    key = (type(dataset).__qualname__, dataset.cache_key(), count) if hasattr(dataset, "cache_key") else None
    if key in _MEAN_CAMERAS:
        return _MEAN_CAMERAS[key]
    if "camera" not in dataset[0]:  # real data: no orthographic crop camera to start from
        return (0.0, 0.0, 0.0)
    get = getattr(dataset, "generate", dataset.__getitem__)
    cams = torch.stack([get(i)["camera"] for i in range(count)])
    camera: tuple[float, float, float] = tuple(float(x) for x in cams.mean(0))  # type: ignore[assignment]
    if key is not None:
        _MEAN_CAMERAS[key] = camera
    return camera


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


def check_root_applies(cfg: ExperimentConfig, root: str) -> None:
    """``root`` given for a dataset that is not read from a folder: refuse (it would be ignored)."""
    reads = DATA_KEYS.get(cfg.data.dataset)
    if reads is None or "root" in reads:
        return
    options = [d for d, keys in DATA_KEYS.items() if "root" in keys and DATASET_BODY.get(d) == cfg.model.body]
    raise ConfigError(
        f"--root {root}: data.dataset={cfg.data.dataset} is generated, not read from a folder, so the folder "
        f"would be ignored; say which dataset it holds with --data (dataset=), e.g. "
        + " or ".join(f"--data {d} ({ROOT_CONTENT[d]})" for d in options))


def missing_split_error(cfg: ExperimentConfig, exp: Experiment, split: str) -> ConfigError:
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


def split_of(exp: Experiment, cfg: ExperimentConfig, split: str) -> Dataset:
    if split in SPLITS and exp.splits()[split] is None:
        raise missing_split_error(cfg, exp, split)
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
    common: dict[str, Any] = dict(seed=d.data_seed, occlusion=d.occlusion, images=d.images,
                                  image_size=cfg.model.image_size, visibility=d.visibility, rotation=d.rotation,
                                  cache_dir=data_dir() / "cache", progress=cfg.train.progress)
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
    common: dict[str, Any] = dict(images=d.images, image_size=cfg.model.image_size, mano=load_mano())
    train = cap_items(HO3D(d.root, split="train", **common), d.train_size)
    held_out = HO3D(d.root, split="test", **common)
    return Experiment(build_hand_model(cfg, train), train, cap_items(held_out, d.val_size), evaluate_model,
                      cap_items(held_out, d.test_size))


def build_synthetic_bodies(cfg: ExperimentConfig) -> Experiment:
    """Synthetic ambiguous bodies (:class:`mhe.data.SyntheticBodies`: truncation, occluders, limb depth),
    generated once and cached."""
    from mhe.data.synthetic_bodies import SyntheticBodies

    _need_body(cfg, "body")
    d = cfg.data
    common: dict[str, Any] = dict(seed=d.data_seed, occlusion=d.occlusion, truncation=d.truncation,
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
    if train is None:  # evaluation only: an empty train split (val or test exists, checked above)
        other = val if val is not None else test
        assert other is not None
        train = Subset(other, [])
    else:
        train = cap_items(train, d.train_size)
    return Experiment(build_body_model(cfg, train), train, cap_items(val, d.val_size) if val is not None else None,
                      evaluate_model, cap_items(test, d.test_size) if test is not None else None)


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
            "Register one with mhe.lab.builders.register_experiment(name, builder)."
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
# the shipped models (configs <body>_<name>, checkpoints mhe/checkpoints/<body>_<name>.pt)

HAND_OBJECTIVES = ("mhentropy", "no_entropy", "nll", "min_of_n", "deterministic")
# Other shipped models: MHEntropy with the rotation in the flow, or over another pose parameterisation, and the
# rotation-in-the-flow model fine-tuned against a tempered target (calibrated at T = 1, issue 29).
HAND_VARIANTS = ("mhentropy_rot", "mhentropy_aa", "mhentropy_tempered")
# The hand models that read pixels (configs hand_<name>): a compact CNN on the rendered 64 px crop, no
# keypoints and no visibility mask into the network (the likelihood still sees only the visible joints).
# Kept apart from HAND_VARIANTS: the notebooks' keypoint tables loop over those.
HAND_IMAGE_MODELS = ("mhentropy_image", "nll_image", "deterministic_image")
# The shipped body models (configs body_<name>): MHEntropy from visible 2D keypoints and with a 3D term,
# ProHMR's objective in its 2D-visible setting (no pose labels), with pose labels (NLL) and with its 3D
# keypoint term, min-of-N and a deterministic regressor; MHEntropy trained 3 × longer, and that model fine-tuned
# against a tempered target by the Rényi bound (calibrated at T = 1, issue 29).
BODY_MODELS = ("mhentropy", "mhentropy_3d", "prohmr_2d", "nll", "nll_3d", "min_of_n", "deterministic",
               "mhentropy_long", "mhentropy_tempered")
SHIPPED = {"hand": HAND_OBJECTIVES + HAND_VARIANTS + HAND_IMAGE_MODELS, "body": BODY_MODELS}
