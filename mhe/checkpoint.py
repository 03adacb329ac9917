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
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mhe.config import config_diff
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
    "train.eval_every",
    "train.eval_samples",
    "train.eval_temperature",
    "train.eval_max_items",
    "train.out_dir",
    "train.num_workers",
    "train.progress",
    "data.root",
)


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the model or config it is being loaded into."""


# ---------------------------------------------------------------------------------------------------
# random number generators as weights_only-safe data


def capture_rng_state() -> dict[str, Any]:
    """The state of every RNG this process uses, as tensors and primitives."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        # NumPy's MT19937 key (624 uint32) as a tensor; int64 holds uint32 exactly
        "numpy": {
            "key": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put every RNG back to ``state`` (from :func:`capture_rng_state`)."""
    torch.set_rng_state(state["torch"].cpu())
    npk = state["numpy"]
    np.random.set_state(
        ("MT19937", npk["key"].numpy().astype(np.uint32), npk["pos"], npk["has_gauss"], npk["cached_gaussian"])
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


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


def checkpoint_dir() -> Path:
    """Where the small shipped checkpoints live: ``<data>/checkpoints`` (see :func:`mhe.utils.data_dir`)."""
    return data_dir() / "checkpoints"


def resolve_checkpoint_path(source: str | os.PathLike) -> Path:
    """A checkpoint file from a path, or from a shipped checkpoint's name (``"hand_mhentropy_aa"``).

    Raises ``FileNotFoundError`` naming both places looked in and the shipped names available.
    """
    path = Path(source)
    if path.is_file():
        return path
    shipped = checkpoint_dir() / (path.name if path.suffix == ".pt" else f"{path.name}.pt")
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    names = sorted(p.stem for p in checkpoint_dir().glob("*.pt"))
    raise FileNotFoundError(
        f"no checkpoint {str(source)!r}: it is neither a file nor a shipped checkpoint in {checkpoint_dir()} "
        f"(shipped: {', '.join(names) or 'none'})"
    )


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and check it is an mhe checkpoint."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint {str(path)!r} does not exist; train one with `mhe train --config ...` "
            "(checkpoints are written to <train.out_dir>/last.pt)"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated / foreign files
        raise CheckpointMismatchError(
            f"{path} could not be read as a checkpoint ({type(e).__name__}: {str(e).splitlines()[0]}); "
            "is it a complete file written by mhe?"
        ) from e
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
    return state


def load_model_state(model: nn.Module, checkpoint: dict[str, Any], source: str = "checkpoint") -> None:
    """Load the checkpoint's weights into ``model``, naming missing, unexpected and mis-shaped tensors."""
    saved = checkpoint["model"]
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


def _model_cfg_hint(model: nn.Module) -> dict[str, Any]:
    cfg = getattr(model, "config", None)
    if cfg is None:
        return {}
    from mhe.config import config_to_dict

    try:
        return config_to_dict(cfg)
    except TypeError:
        return {}


def _short(items: list[str], n: int = 6) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def check_resume_config(saved: dict[str, Any], current: dict[str, Any], source: str = "checkpoint") -> None:
    """Refuse to resume when the config changes anything but :data:`RESUME_SAFE_KEYS`.

    Raises :class:`CheckpointMismatchError` listing each differing key as ``key: saved -> current``.
    """
    diff = [
        line
        for line in config_diff(saved, current)
        if not any(line.startswith(k + ":") for k in RESUME_SAFE_KEYS)
    ]
    if diff:
        raise CheckpointMismatchError(
            f"cannot resume from the {source}: the config differs in {'; '.join(diff)}. "
            "Resume with the original settings, or start a fresh run in another train.out_dir."
        )
