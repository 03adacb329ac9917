"""Experiment configuration: one nested dataclass per experiment, loadable from YAML, overridable from
the command line.

An :class:`ExperimentConfig` holds everything that decides a training run: the model
(:class:`ModelConfig`), the data (:class:`DataConfig`), the objective and its term weights
(:class:`ObjectiveConfig`) and the optimisation (:class:`TrainConfig`). Defaults are CPU-friendly; the
official MHEntropy hand settings are given in each field's comment. :func:`load_config` reads a YAML file
and applies ``key=value`` overrides (``train.lr=1e-3``) with type checks, so a typo or a wrong type is a
clear error rather than a silently ignored setting; :func:`dump_config` writes the YAML back.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

PACKAGED_CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """A configuration file or override is malformed: unknown key, wrong type or bad value."""


@dataclass
class ModelConfig:
    """The multi-hypothesis model: encoder → context → conditional flow over the pose + deterministic head."""

    # which encoder turns a batch into the context: "mlp" on 2D keypoints + visibility, "resmlp" a residual
    # MLP on position- and size-normalised visible keypoints, "cnn" on small image crops, "resnet"
    # (torchvision) on image crops (official: ResNet-50).
    encoder: Literal["mlp", "resmlp", "cnn", "resnet"] = "mlp"
    # context features C produced by the encoder (official: 512).
    context_dim: int = 128
    # hidden widths of the keypoint MLP encoder ("resmlp": the first is the width, the count the blocks).
    encoder_hidden: tuple[int, ...] = (256, 256)
    # channels of the small CNN encoder's stride-2 stages (one stage per entry).
    cnn_channels: tuple[int, ...] = (32, 64, 128, 128)
    # ResNet depth when encoder == "resnet" (official: 50).
    resnet_depth: Literal[18, 34, 50] = 18
    # start the ResNet from ImageNet weights (needs them cached locally; no download at run time here).
    pretrained: bool = False
    # side length in pixels of the square image crops that image encoders read.
    image_size: int = 64
    # number of coupling transforms in the conditional flow (official: 12 = 6 steps × 2 masks).
    flow_transforms: int = 4
    # hidden widths of each coupling network (official: (512, 512)).
    flow_hidden: tuple[int, ...] = (128, 128)
    # parameterisation of the finger pose the flow models: MANO PCA coefficients (official),
    # axis-angle per joint, or the continuous 6D rotation representation.
    pose_repr: Literal["pca", "axis_angle", "6d"] = "pca"
    # number of MANO PCA components when pose_repr == "pca" (official: 45, i.e. the full basis).
    num_pca_comps: int = 45
    # hidden width of the deterministic head (global rotation, shape, camera) (official: 512).
    head_hidden: int = 128
    # how the head outputs the global rotation: axis-angle (official) or the continuous 6D representation
    # (no discontinuity at 180°, much easier to regress for uniformly random rotations).
    head_rotation: Literal["axis_angle", "6d"] = "axis_angle"


@dataclass
class DataConfig:
    """Which dataset, where it lives and how big the splits are."""

    # dataset key; also selects the experiment builder registered in mhe.train (see register_experiment).
    dataset: str = "synthetic-hands"
    # folder of a real dataset (HO3D v3 root); None for generated data.
    root: str | None = None
    # number of training items (generated data) or a cap on them (real data; None = all).
    train_size: int | None = 4096
    # number of validation items (generated data) or a cap on them (real data; None = all).
    val_size: int | None = 512
    # target fraction of occluded finger joints in generated data (HO3D is heavily occluded).
    occlusion: float = 0.4
    # also produce rendered image crops (needed by the "cnn" / "resnet" encoders).
    images: bool = False
    # seed of the generated splits (independent of the training seed, so data stay fixed across runs).
    data_seed: int = 0


@dataclass
class ObjectiveConfig:
    """The training objective (a name in ``mhe.objectives.OBJECTIVES``) and its term weights.

    A weight left at ``None`` is not passed, so the objective's own default applies; ``extra`` carries
    keyword arguments specific to one objective (e.g. ``extra.w_nll=1e-3``).
    """

    # "mhentropy" | "nll" | "min_of_n" | "deterministic" (or any registered objective).
    name: str = "mhentropy"
    # weight of the reconstruction term (Laplace log-likelihood of the visible 2D keypoints).
    w_rec: float | None = None
    # weight of the prior term (soft box / ball penalties).
    w_prior: float | None = None
    # weight of the entropy term; 0 gives the "no entropy" ablation.
    w_ent: float | None = None
    # weight of a 3D keypoint term (the 3D-supervised variant; 0 = 2D-visible supervision only).
    w_3d: float | None = None
    # Laplace scale b in [-1, 1] crop units (official: 0.03, about 3.8 px of a 256 px crop).
    b: float | None = 0.03
    # further keyword arguments passed to the objective as they are.
    extra: dict[str, float] = field(default_factory=dict)

    def kwargs(self) -> dict[str, float]:
        """The keyword arguments the objective is called with (weights left at None omitted)."""
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("name", "extra") and getattr(self, f.name) is not None
        }
        out.update(self.extra)
        return out


@dataclass
class TrainConfig:
    """Optimisation, evaluation, logging and checkpointing."""

    # number of passes over the training set (ignored when steps is set) (official: ~260).
    epochs: int = 20
    # total optimizer steps; when set it replaces epochs (the last epoch may stop part-way).
    steps: int | None = None
    # items per optimizer step and per process (official: 64).
    batch_size: int = 64
    # Adam learning rate (official: 2e-4).
    lr: float = 2e-4
    # learning-rate schedule over the run: "constant", or "cosine" decay from lr to 0 (a pure function of
    # the step, so resuming is exact).
    lr_schedule: Literal["constant", "cosine"] = "constant"
    # Adam weight decay.
    weight_decay: float = 0.0
    # clip the global gradient norm to this value; None or 0 disables clipping (official: 1.0).
    grad_clip: float | None = 1.0
    # hypotheses S drawn per item in training (official: 10); passed to objectives that take num_samples.
    num_samples: int = 10
    # validate every this many epochs (0 = never; the last epoch is always validated when > 0).
    eval_every: int = 1
    # hypotheses S per item during validation (official evaluation: 200).
    eval_samples: int = 50
    # sampling temperature during validation (official evaluation: 0.8).
    eval_temperature: float = 0.8
    # cap on validation items per evaluation (None = the whole validation set).
    eval_max_items: int | None = None
    # write one log row every this many steps (loss terms averaged over them).
    log_every: int = 1
    # save a resumable checkpoint every this many steps (0 = only at the end of each epoch and of training).
    checkpoint_every: int = 0
    # folder for logs and checkpoints; "{name}" is replaced by the experiment name.
    out_dir: str = "runs/{name}"
    # DataLoader worker processes (0 = load in the training process).
    num_workers: int = 0
    # drop the last incomplete batch of each epoch.
    drop_last: bool = False
    # let DDP tolerate parameters that get no gradient (e.g. the flow under a deterministic objective).
    find_unused_parameters: bool = True
    # show a tqdm progress bar (rank 0 only).
    progress: bool = True
    # start a fresh run from this checkpoint's model weights (fine-tuning; the optimizer, step count and
    # schedule start anew). A path, or the name of a shipped checkpoint such as "hand_mhentropy_aa".
    # Ignored when resuming: a resumed run continues from its own last.pt.
    init_from: str | None = None


@dataclass
class ExperimentConfig:
    """Everything that defines one training run."""

    # experiment name; names the output folder.
    name: str = "experiment"
    # training seed: model initialisation, sampling noise and data order.
    seed: int = 0
    # "cpu", "cuda", "cuda:1", ...; None picks CUDA when present, else CPU.
    device: str | None = None
    # encoder, flow and head sizes.
    model: ModelConfig = field(default_factory=ModelConfig)
    # dataset and split sizes.
    data: DataConfig = field(default_factory=DataConfig)
    # objective name and term weights.
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    # optimisation, validation, logging, checkpoints.
    train: TrainConfig = field(default_factory=TrainConfig)

    def out_path(self) -> Path:
        """``train.out_dir`` with ``{name}`` filled in."""
        return Path(self.train.out_dir.replace("{name}", self.name))


def validate_config(cfg: ExperimentConfig) -> None:
    """Raise :class:`ConfigError` for values no run can use (non-positive sizes, negative rates, ...)."""
    m, d, t = cfg.model, cfg.data, cfg.train
    checks = [
        ("model.context_dim", m.context_dim, m.context_dim >= 1, "a positive integer"),
        ("model.image_size", m.image_size, m.image_size >= 8, "at least 8 pixels"),
        ("model.flow_transforms", m.flow_transforms, m.flow_transforms >= 1, "at least 1"),
        ("model.num_pca_comps", m.num_pca_comps, 1 <= m.num_pca_comps <= 45, "between 1 and 45"),
        ("model.head_hidden", m.head_hidden, m.head_hidden >= 1, "a positive integer"),
        ("model.encoder_hidden", m.encoder_hidden, all(h >= 1 for h in m.encoder_hidden), "positive widths"),
        ("model.flow_hidden", m.flow_hidden, all(h >= 1 for h in m.flow_hidden), "positive widths"),
        ("model.cnn_channels", m.cnn_channels, len(m.cnn_channels) >= 1 and all(c >= 1 for c in m.cnn_channels),
         "a non-empty list of positive channel counts"),
        ("data.train_size", d.train_size, d.train_size is None or d.train_size >= 1, "positive or null"),
        ("data.val_size", d.val_size, d.val_size is None or d.val_size >= 1, "positive or null"),
        ("data.occlusion", d.occlusion, 0.0 <= d.occlusion <= 1.0, "a fraction in [0, 1]"),
        ("train.epochs", t.epochs, t.epochs >= 1 or t.steps is not None, "at least 1 (or set train.steps)"),
        ("train.steps", t.steps, t.steps is None or t.steps >= 1, "positive or null"),
        ("train.batch_size", t.batch_size, t.batch_size >= 1, "a positive integer"),
        ("train.lr", t.lr, t.lr > 0, "positive"),
        ("train.weight_decay", t.weight_decay, t.weight_decay >= 0, "zero or positive"),
        ("train.grad_clip", t.grad_clip, t.grad_clip is None or t.grad_clip >= 0, "zero, positive or null"),
        ("train.num_samples", t.num_samples, t.num_samples >= 1, "a positive integer"),
        ("train.eval_every", t.eval_every, t.eval_every >= 0, "zero (never) or positive"),
        ("train.eval_samples", t.eval_samples, t.eval_samples >= 1, "a positive integer"),
        ("train.eval_temperature", t.eval_temperature, t.eval_temperature > 0, "positive"),
        ("train.eval_max_items", t.eval_max_items, t.eval_max_items is None or t.eval_max_items >= 1,
         "positive or null"),
        ("train.log_every", t.log_every, t.log_every >= 1, "a positive integer"),
        ("train.checkpoint_every", t.checkpoint_every, t.checkpoint_every >= 0, "zero or positive"),
        ("train.num_workers", t.num_workers, t.num_workers >= 0, "zero or positive"),
    ]
    for key, value, ok, expected in checks:
        if not ok:
            raise ConfigError(f"{key} = {value!r} is invalid: it must be {expected}")
    if not cfg.train.out_dir:
        raise ConfigError("train.out_dir is empty: give a folder for logs and checkpoints")


# ---------------------------------------------------------------------------------------------------
# conversion between dataclasses and plain data


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as nested plain dicts / lists / primitives (YAML- and weights_only-safe)."""
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"expected a config dataclass, got {type(cfg).__name__}")
    return _to_plain(cfg)


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    return value


def config_from_dict(data: dict[str, Any], cls: type = ExperimentConfig, where: str = "") -> Any:
    """Build config dataclass ``cls`` from nested plain data, checking every key and value type.

    Missing keys take their defaults; unknown keys and wrong types raise :class:`ConfigError`
    naming the dotted key.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__} ({data!r})")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(_join(where, k) for k in unknown)}; "
            f"valid keys{' in ' + where if where else ''}: {', '.join(names)}"
        )
    kwargs = {k: _coerce(v, hints[k], _join(where, k)) for k, v in data.items()}
    return cls(**kwargs)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


@dataclass(frozen=True)
class _Override:
    """A command-line value: its raw text (for str fields) and its YAML reading (for the rest)."""

    raw: str
    parsed: Any

    def __repr__(self) -> str:
        return repr(self.raw)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp`` and convert the harmless cases (int → float, list → tuple)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(value, _Override) and origin not in (Union, types.UnionType):
        if tp is str:
            return value.raw
        if tp is float and isinstance(value.parsed, str):
            # YAML reads "1e-3" as text; the command line means the number
            try:
                return float(value.raw)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value.raw!r}") from None
        value = value.parsed
    if dataclasses.is_dataclass(tp):
        return config_from_dict(value, tp, where)
    if origin in (Union, types.UnionType):
        plain = value.parsed if isinstance(value, _Override) else value
        if plain is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} is not a valid {_type_name(tp)}")
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        choices = ", ".join(repr(a) for a in args)
        raise ConfigError(f"{where}: {value!r} is not one of {choices}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list like [128, 128], got {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping like {{key: value}}, got {value!r}")
        key_tp, val_tp = args if args else (Any, Any)
        return {
            _coerce(k, key_tp, f"{where}"): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()
        }
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported config type {_type_name(tp)}")  # pragma: no cover


# ---------------------------------------------------------------------------------------------------
# YAML files and command-line overrides


def resolve_config_path(path: str | os.PathLike) -> Path:
    """``path`` itself if it exists, else a packaged config of that name (``hand_mhentropy``)."""
    p = Path(path)
    if p.exists():
        return p
    for candidate in (PACKAGED_CONFIG_DIR / p.name, PACKAGED_CONFIG_DIR / f"{p.name}.yaml"):
        if candidate.exists():
            return candidate
    shipped = ", ".join(sorted(q.stem for q in PACKAGED_CONFIG_DIR.glob("*.yaml"))) or "none"
    raise FileNotFoundError(f"config file {str(path)!r} not found; packaged configs: {shipped}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"train.lr=1e-3"`` into ``(["train", "lr"], 0.001)``; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value, e.g. train.lr=1e-3")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key; write e.g. train.lr=1e-3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: cannot read value {raw!r} ({e})") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in nested plain ``data`` (a copy is returned); unknown sections are an error."""
    import copy

    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        value = _Override(text.split("=", 1)[1].strip(), value)
        node = data
        for i, k in enumerate(keys[:-1]):
            if k not in node or not isinstance(node[k], dict):
                # let config_from_dict name valid keys when the section itself is unknown
                if k not in node:
                    node[k] = {}
                else:
                    raise ConfigError(
                        f"override {text!r}: {'.'.join(keys[: i + 1])} is a value, not a section"
                    )
            node = node[k]
        node[keys[-1]] = value
    return data


def load_config(
    path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> ExperimentConfig:
    """Read an :class:`ExperimentConfig` from YAML (``None``: all defaults) and apply ``key=value`` overrides.

    ``path`` may also name a packaged config (``"hand_mhentropy"``). Raises :class:`ConfigError` on
    unknown keys, wrong types or values outside a field's choices.
    """
    data: dict[str, Any] = {}
    if path is not None:
        resolved = resolve_config_path(path)
        try:
            loaded = yaml.safe_load(resolved.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{resolved}: not valid YAML ({e})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{resolved}: the top level must be a mapping of sections, got {loaded!r}")
        data = loaded
    # start from the defaults so a partial file or override keeps every other default
    full = _merge(config_to_dict(ExperimentConfig()), data)
    full = apply_overrides(full, list(overrides))
    cfg = config_from_dict(full)
    validate_config(cfg)
    return cfg


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


class _Dumper(yaml.SafeDumper):
    """Block-style sections, flow-style lists (``flow_hidden: [128, 128]``)."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def dump_config(cfg: ExperimentConfig, path: str | os.PathLike | None = None) -> str:
    """The config as YAML text; also written to ``path`` when given."""
    text = yaml.dump(config_to_dict(cfg), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    return text


def config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts, as ``"key: a -> b"`` lines."""
    out: list[str] = []
    for k in sorted(set(a) | set(b)):
        key = _join(prefix, str(k))
        if k not in a:
            out.append(f"{key}: (missing) -> {b[k]!r}")
        elif k not in b:
            out.append(f"{key}: {a[k]!r} -> (missing)")
        elif isinstance(a[k], dict) and isinstance(b[k], dict):
            out.extend(config_diff(a[k], b[k], key))
        elif _norm(a[k]) != _norm(b[k]):
            out.append(f"{key}: {a[k]!r} -> {b[k]!r}")
    return out


def _norm(v: Any) -> Any:
    return [_norm(x) for x in v] if isinstance(v, (list, tuple)) else v
