"""Checkpoints: atomic, resumable, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors and primitives: the model and optimizer state, the random
number generator states of every process (torch, CUDA, NumPy, Python), the training position (step,
epoch, batches already taken from the current epoch), the experiment config as a plain dict, and the
latest metrics. Because nothing in it is a pickled Python object, it loads with ``weights_only=True``.
Loading into a model whose architecture differs, or resuming with a config that changes the run, is a
:class:`CheckpointMismatchError` that names the differing keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mhe.errors import CheckpointMismatchError
from mhe.lab.config_io import config_diff
from mhe.rng import capture_rng_state, restore_rng_state  # noqa: F401  (RNG states are part of a checkpoint)
from mhe.utils import atomic_torch_save, data_dir

FORMAT = "mhe-checkpoint"
FORMAT_VERSION = 1

# config keys that may change between a run and its resumption without changing what it computes
RESUME_SAFE_KEYS = (
    "device",
    "train.epochs",
    "train.steps",
    "train.log_every",
    "train.checkpoint_every",
    "train.checkpoint_minutes",
    "train.eval_every",
    "train.eval_samples",
    "train.eval_temperature",
    "train.eval_max_items",
    "train.out_dir",
    "train.num_workers",
    "train.progress",
    "data.root",
)




# ---------------------------------------------------------------------------------------------------
# saving and loading


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    config: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    step: int = 0,
    epoch: int = 0,
    batch_in_epoch: int = 0,
    rng: list[dict[str, Any]] | None = None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (readers see the old file or the new one, never a torn one).

    ``config`` is the experiment config as a plain dict (:func:`mhe.config.config_to_dict`);
    ``rng`` holds one :func:`capture_rng_state` per process (index = rank); ``batch_in_epoch`` is how many
    batches of epoch ``epoch`` are already consumed. Returns the path written.
    """
    from mhe import __version__

    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mhe_version": __version__,
        "torch_version": str(torch.__version__),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": _to_cpu(optimizer.state_dict()) if optimizer is not None else None,
        "step": int(step),
        "epoch": int(epoch),
        "batch_in_epoch": int(batch_in_epoch),
        "rng": rng if rng is not None else [capture_rng_state()],
        "config": config,
        "metrics": metrics or {},
        "extra": extra or {},
    }
    return atomic_torch_save(state, path)


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


SHIPPED_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


def checkpoint_dir() -> Path:
    """Where the small shipped checkpoints live: ``mhe/checkpoints`` inside the package (so a plain
    ``pip install`` has them too), or ``$MHE_DATA/checkpoints`` when ``$MHE_DATA`` is set."""
    if os.environ.get("MHE_DATA"):
        return data_dir() / "checkpoints"
    return SHIPPED_DIR


def resolve_checkpoint_path(source: str | os.PathLike) -> Path:
    """A checkpoint file from a path, a run folder (its ``last.pt``, as ``mhe train`` writes it) or a
    shipped checkpoint's name (``"hand_mhentropy_aa"``).

    Raises ``FileNotFoundError`` naming both places looked in and the shipped names available, or, for a
    folder without ``last.pt``, saying so.
    """
    path = Path(source)
    if path.is_file():
        return path
    if path.is_dir():
        if (path / "last.pt").is_file():
            return path / "last.pt"
        raise FileNotFoundError(
            f"{str(source)!r} is a folder without a last.pt: pass a checkpoint file, or a run folder that "
            "`mhe train` has written a checkpoint to"
        )
    # a name: $MHE_DATA/checkpoints first when set, then the checkpoints shipped inside the package
    folders = list(dict.fromkeys([checkpoint_dir(), SHIPPED_DIR]))
    for folder in folders:
        shipped = folder / (path.name if path.suffix == ".pt" else f"{path.name}.pt")
        if path.parent == Path(".") and shipped.is_file():
            return shipped
    names = sorted({p.stem for folder in folders for p in folder.glob("*.pt")})
    raise FileNotFoundError(
        f"no checkpoint {str(source)!r}: it is neither a file nor a shipped checkpoint in "
        f"{' or '.join(str(f) for f in folders)} (shipped: {', '.join(names) or 'none'})"
    )


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and check it is an mhe checkpoint."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint {str(path)!r} does not exist; train one with `mhe train --config ...` "
            "(checkpoints are written to <train.out_dir>/last.pt)"
        )
    if path.is_dir():
        raise CheckpointMismatchError(f"{path} is a folder, not a checkpoint file; pass <folder>/last.pt")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointMismatchError(
            f"{path} is an empty file (0 bytes), not a checkpoint; delete it, and resume from or evaluate "
            "another checkpoint (a run's newest is <train.out_dir>/last.pt)"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated / foreign files
        # torch's own message may advise weights_only=False, which would execute code in the file: not shown
        raise CheckpointMismatchError(
            f"{path} could not be read as a checkpoint ({type(e).__name__}; {size:,} bytes): it is truncated, "
            "damaged, or not a file written by mhe. Use another checkpoint (a run keeps its newest in "
            "<train.out_dir>/last.pt); mhe never unpickles arbitrary objects from checkpoints"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointMismatchError(
            f"{path} is not an mhe checkpoint (no 'format': '{FORMAT}' entry); "
            "plain state dicts can be loaded with model.load_state_dict(torch.load(path))"
        )
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointMismatchError(
            f"{path} was written by a newer mhe (format {state['format_version']} > {FORMAT_VERSION}); "
            "upgrade mhe to read it"
        )
    missing = [k for k in ("model", "config", "step", "epoch", "batch_in_epoch", "rng") if k not in state]
    if missing:
        raise CheckpointMismatchError(f"{path} lacks the entries {missing}; it is incomplete")
    bad = [k for k, v in state["model"].items() if torch.is_tensor(v) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointMismatchError(
            f"{path} holds non-finite weights (NaN or inf) in {_short(sorted(bad))}; the run it comes from "
            "diverged. Resume from an earlier checkpoint or retrain with a lower train.lr"
        )
    return state


def checkpoint_config(state: dict[str, Any], source: str = "checkpoint") -> Any:
    """The :class:`~mhe.config.ExperimentConfig` a checkpoint was trained with.

    Keys added to the schema after the checkpoint was written take their defaults, except
    ``model.deterministic``, which older checkpoints recorded only as ``objective.name == "deterministic"``.
    """
    from mhe.config import ConfigError
    from mhe.lab.config_io import config_from_dict

    data = state["config"]
    try:
        if data.get("objective", {}).get("name") == "deterministic" and "deterministic" not in data.get("model", {}):
            data = {**data, "model": {**data.get("model", {}), "deterministic": True}}
        return config_from_dict(data)
    except (ConfigError, AttributeError) as e:
        raise CheckpointMismatchError(f"{source}: its config does not fit this version of mhe ({e})") from None


def check_model_config(saved: dict[str, Any], current: dict[str, Any], source: str = "checkpoint") -> None:
    """Refuse weights trained for another model: any difference in the ``model`` section is an error.

    ``saved`` / ``current`` are plain experiment configs (:func:`mhe.lab.config_io.config_to_dict`). The
    message names each differing key (``model.pose_repr: 'pca' -> 'axis_angle'``): loading PCA weights
    into an axis-angle flow would run, since the shapes agree, and give wrong hands.
    """
    from mhe.config import ModelConfig, upgrade_config_dict
    from mhe.lab.config_io import config_to_dict

    saved, current = upgrade_config_dict(saved), upgrade_config_dict(current)  # earlier versions' configs
    defaults = config_to_dict(ModelConfig())
    a = {**defaults, **saved.get("model", {})}
    b = {**defaults, **current.get("model", {})}
    if "deterministic" not in saved.get("model", {}):  # older checkpoints: the objective said it
        a["deterministic"] = saved.get("objective", {}).get("name") == "deterministic"
    diff = config_diff(a, b, "model")
    if diff:
        raise CheckpointMismatchError(
            f"the {source} was trained for another model: {'; '.join(diff)}. Use a checkpoint of the same "
            "model config, or set train.init_partial=true to copy only the tensors whose names and shapes match"
        )


def load_matching_state(model: nn.Module, checkpoint: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Copy the tensors of the checkpoint whose names and shapes match ``model``'s (fine-tuning across
    architectures). Returns ``(loaded, skipped)`` names of the model's tensors."""
    saved, current = _upgraded_state(model, checkpoint), model.state_dict()
    loaded = [k for k in current if k in saved and saved[k].shape == current[k].shape]
    skipped = sorted(set(current) - set(loaded))
    model.load_state_dict({**current, **{k: saved[k] for k in loaded}})
    return loaded, skipped


def load_model_state(model: nn.Module, checkpoint: dict[str, Any], source: str = "checkpoint") -> None:
    """Load the checkpoint's weights into ``model``, naming missing, unexpected and mis-shaped tensors."""
    saved = _upgraded_state(model, checkpoint)
    current = model.state_dict()
    missing = sorted(set(current) - set(saved))
    unexpected = sorted(set(saved) - set(current))
    shapes = sorted(
        f"{k}: saved {tuple(saved[k].shape)} vs model {tuple(current[k].shape)}"
        for k in set(saved) & set(current)
        if saved[k].shape != current[k].shape
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing in {source}: {_short(missing)}")
        if unexpected:
            parts.append(f"not in the model: {_short(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch: {_short(shapes)}")
        hint = ""
        diff = config_diff(checkpoint.get("config", {}).get("model", {}), _model_cfg_hint(model))
        if diff:
            hint = f"; model config differs: {_short(diff)}"
        raise CheckpointMismatchError(
            f"the {source} does not fit this model ({'; '.join(parts)}){hint}. "
            "Build the model from the checkpoint's own config (checkpoint['config'])."
        )
    model.load_state_dict(saved)


def _upgraded_state(model: nn.Module, checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's weights in the model's current tensor names: a model that renamed tensors says how
    with ``upgrade_state_dict`` (the flip mixture, :func:`mhe.models.flip.upgrade_state_dict`)."""
    upgrade = getattr(model, "upgrade_state_dict", None)
    return upgrade(checkpoint["model"]) if callable(upgrade) else checkpoint["model"]


def _model_cfg_hint(model: nn.Module) -> dict[str, Any]:
    cfg = getattr(model, "config", None)
    if cfg is None:
        return {}
    from mhe.lab.config_io import config_to_dict

    try:
        return config_to_dict(cfg)
    except TypeError:
        return {}


def _short(items: list[str], n: int = 6) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def check_resume_config(saved: dict[str, Any], current: dict[str, Any], source: str = "checkpoint") -> None:
    """Refuse to resume when the config changes anything but :data:`RESUME_SAFE_KEYS`.

    Raises :class:`CheckpointMismatchError` listing each differing key as ``key: saved -> current``. A run of an
    earlier version resumes: its config is read in today's schema first (``objective.extra`` weights become
    fields, left unset when absent; a removed variant's option is refused, :func:`mhe.config.upgrade_config_dict`).
    """
    from mhe.config import upgrade_config_dict

    saved = upgrade_config_dict(saved)
    diff = [
        line
        for line in config_diff(saved, current)
        if not any(line.startswith(k + ":") for k in RESUME_SAFE_KEYS)
        and not (line.startswith("objective.") and line.endswith(": (missing) -> None"))
    ]
    if diff:
        raise CheckpointMismatchError(
            f"cannot resume from the {source}: the config differs in {'; '.join(diff)}. "
            "Resume with the original settings, or start a fresh run in another train.out_dir."
        )
