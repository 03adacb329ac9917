"""A training run's state on disk and its stop requests: what :class:`mhe.lab.train.Trainer` saves, restores and
copies from checkpoints, the run's ``config.yaml``, and the SIGINT / SIGTERM handlers that turn a Ctrl-C into a
checkpoint and :class:`TrainingInterrupted`.

The functions take the trainer (``trainer``: a :class:`~mhe.lab.train.Trainer`) and read or set its model,
optimizer, position (``global_step``, ``epoch``, ``batch_in_epoch``), history and settings.
"""

from __future__ import annotations

import os
import signal
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mhe.config import ConfigError
from mhe.lab.checkpoint import (
    check_model_config,
    check_resume_config,
    load_checkpoint,
    load_matching_state,
    load_model_state,
    resolve_checkpoint_path,
    save_checkpoint,
)
from mhe.lab.distributed import all_gather_objects, barrier
from mhe.rng import capture_rng_state, restore_rng_state
from mhe.utils import seed_everything


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C (SIGINT) or SIGTERM after writing a checkpoint; the message says how to
    resume. A subclass of ``KeyboardInterrupt``, so code that stops on Ctrl-C still does."""

    def __init__(self, message: str, checkpoint: Path, step: int, signum: int) -> None:
        super().__init__(message)
        self.checkpoint, self.step, self.signum = checkpoint, step, signum


def summarize_names(names: list[str], limit: int = 8) -> str:
    """Tensor names grouped by their first two components with counts (``flow.transforms (24), head.rot (2)``),
    at most ``limit`` groups shown."""
    groups: dict[str, int] = {}
    for n in names:
        key = ".".join(n.split(".")[:2])
        groups[key] = groups.get(key, 0) + 1
    shown = [f"{k}.* ({v})" if v > 1 else (next(n for n in names if ".".join(n.split(".")[:2]) == k)) for k, v in
             list(groups.items())[:limit]]
    return ", ".join(shown) + (f", ... ({len(groups) - limit} more groups)" if len(groups) > limit else "")


class _Dumper(yaml.SafeDumper):
    """Block-style sections, flow-style lists (``flow_hidden: [128, 128]``): the layout of
    :func:`mhe.lab.config_io.dump_config`."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def write_run_config(run_config: Mapping[str, Any], path: Path) -> None:
    """Write the run's plain config as YAML (what ``mhe train --config <out_dir>/config.yaml --resume`` reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.dump(dict(run_config), Dumper=_Dumper, sort_keys=False, default_flow_style=False))


def save_state(trainer: Any, path: Path) -> Path:
    """Write a resumable checkpoint of ``trainer`` to ``path`` (collective: every rank calls it, rank 0 writes)."""
    rng = all_gather_objects(capture_rng_state(), trainer.dist)
    if trainer.dist.is_main:
        history = trainer.history
        metrics = {"train": dict(trainer.last_terms), "val": dict(history[-1]) if history else {}}
        save_checkpoint(
            path,
            model=trainer.model,
            optimizer=trainer.optimizer,
            config=trainer.run_config,
            step=trainer.global_step,
            epoch=trainer.epoch,
            batch_in_epoch=trainer.batch_in_epoch,
            rng=rng,
            metrics=metrics,
            extra={"world_size": trainer.dist.world_size, "history": [dict(h) for h in history]},
        )
    barrier(trainer.dist)
    return path


def load_state(trainer: Any, path: Path) -> None:
    """Restore ``trainer``'s model, optimizer, RNGs and position from a checkpoint, checking the config matches."""
    ckpt = load_checkpoint(path, map_location="cpu")
    check_resume_config(ckpt["config"], trainer.run_config, source=str(path))
    if ckpt["step"] > trainer.total_steps:
        t = trainer.train_cfg
        length = f"train.steps={t.steps}" if t.steps else f"train.epochs={t.epochs} ({trainer.total_steps} steps)"
        raise ConfigError(
            f"{path} is at step {ckpt['step']}, past the end of this config's run ({length}): resuming would "
            f"stop at once and rewrite the run's config.yaml and logs. Resume with train.steps of at least "
            f"{ckpt['step']} (e.g. its own config: --config {trainer.out_dir / 'config.yaml'}), or start a fresh "
            "run in another train.out_dir"
        )
    load_model_state(trainer.model, ckpt, source=str(path))
    if ckpt.get("optimizer") is not None:
        trainer.optimizer.load_state_dict(ckpt["optimizer"])
    trainer.global_step = ckpt["step"]
    trainer.epoch = ckpt["epoch"]
    trainer.batch_in_epoch = ckpt["batch_in_epoch"]
    trainer.history = list(ckpt.get("extra", {}).get("history", []))
    trainer.last_terms = dict(ckpt.get("metrics", {}).get("train", {}))
    rng = ckpt["rng"]
    if len(rng) == trainer.dist.world_size:
        restore_rng_state(rng[trainer.dist.rank])
    else:
        warnings.warn(
            f"{path} was written by {len(rng)} process(es) and is resumed by {trainer.dist.world_size}: "
            "the sampling noise is re-seeded, so the result will not equal an uninterrupted run",
            stacklevel=3,
        )
        seed_everything(trainer.seed + trainer.dist.rank + 7919 * trainer.global_step)


def init_weights(trainer: Any, source: str | os.PathLike) -> Path:
    """Copy the model weights of a checkpoint (a path or a shipped checkpoint's name) into ``trainer.model``.

    The checkpoint's model config must equal the run's (``trainer.run_config["model"]``: pose parameterisation,
    flow size, encoder, ...): a :class:`~mhe.lab.checkpoint.CheckpointMismatchError` names the keys that differ.
    With ``train.init_partial=true`` the tensors whose names and shapes match are copied and the rest keep
    their fresh initialisation. The optimizer, step count and learning-rate schedule start anew.
    """
    path = resolve_checkpoint_path(source)
    ckpt = load_checkpoint(path, map_location="cpu")
    is_main = trainer.dist.is_main
    if trainer.train_cfg.init_partial:
        loaded, skipped = load_matching_state(trainer.model, ckpt)
        total = len(loaded) + len(skipped)
        if not loaded:
            raise ConfigError(
                f"train.init_from={source}: none of this model's {total} tensors has a match (same name and "
                f"shape) in {path}, so nothing would be copied; choose a checkpoint of a similar model, or "
                "drop train.init_from"
            )
        if is_main:  # always said, progress bar or not: a partial copy is easy to mistake
            print(f"[mhe] initialised {len(loaded)} of {total} tensors from {path} (train.init_partial: name "
                  f"and shape match); {len(skipped)} keep their fresh initialisation"
                  + (f": {summarize_names(skipped)}" if skipped else ""), flush=True)
        return path
    check_model_config(ckpt["config"], trainer.run_config, source=str(path))
    load_model_state(trainer.model, ckpt, source=str(path))
    if is_main and trainer.train_cfg.progress:
        print(f"[mhe] initialised the model from {path} (step {ckpt.get('step')})", flush=True)
    return path


def install_signal_handlers(trainer: Any) -> dict[int, Any]:
    """Turn SIGINT / SIGTERM into a stop request (``trainer._stop_signal``) checked between steps (main thread
    only); returns the previous handlers for :func:`restore_signal_handlers`.

    A second Ctrl-C while the checkpoint is being written stops at once (the default behaviour)."""
    trainer._stop_signal = 0
    if threading.current_thread() is not threading.main_thread():
        return {}

    def request_stop(signum: int, frame: Any) -> None:
        trainer._stop_signal = signum
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts

    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, request_stop)
        except (ValueError, OSError):  # not allowed here (e.g. an embedded interpreter)
            pass
    return previous


def restore_signal_handlers(previous: dict[int, Any]) -> None:
    """Put back the handlers :func:`install_signal_handlers` replaced."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)
