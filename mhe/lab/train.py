"""The generic trainer: any multi-hypothesis model, any objective, one process or many (DDP).

:class:`Trainer` optimises a model with an objective ``fn(model, batch, num_samples=S, **weights) ->
(loss, terms)`` (:mod:`mhe.objectives`) on a torch ``Dataset``: Adam, gradient-norm clipping, a tqdm bar,
a CSV/JSONL log of every loss term, validation metrics from an ``evaluate_fn`` (called as
``evaluate_fn(model, loader, num_samples=..., temperature=...)``, e.g. :func:`mhe.evaluation.evaluate_model`),
and atomic checkpoints that make ``resume`` exact: the data order of every epoch is a function of
``(seed, epoch)`` and the RNG states are saved, so a killed run continues to the same parameters bit for
bit on CPU. Checkpoints are written every ``train.checkpoint_every`` steps, every
``train.checkpoint_minutes`` minutes, at the end of each epoch, and when the run is stopped by Ctrl-C
(SIGINT) or SIGTERM: the step in flight finishes, a checkpoint is written and :class:`TrainingInterrupted`
says how to resume. Under ``torchrun`` it wraps the model in ``DistributedDataParallel`` and shards each
epoch with a ``DistributedSampler``; rank 0 alone logs and writes checkpoints. Which model and data a
config names is decided by :mod:`mhe.lab.experiments`, not here.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from torch.utils.data.distributed import DistributedSampler

from mhe.config import ConfigError, ExperimentConfig, ObjectiveConfig, validate_config
from mhe.evaluation import move_to_device
from mhe.lab.checkpoint import (
    check_model_config,
    check_resume_config,
    load_checkpoint,
    load_matching_state,
    load_model_state,
    resolve_checkpoint_path,
    save_checkpoint,
)
from mhe.lab.config_io import config_to_dict, dump_config
from mhe.lab.distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_mean,
    barrier,
    broadcast_object,
    init_distributed,
)
from mhe.lab.runlog import RunLogger
from mhe.rng import capture_rng_state, isolated_rng, restore_rng_state
from mhe.utils import seed_everything

Batch = dict[str, Any]
Objective = Callable[..., tuple[torch.Tensor, dict[str, float]]]


class EvaluateFn(Protocol):
    """``evaluate_fn(model, loader, *, num_samples, temperature) -> metrics``.

    Called without gradients, with the model in eval mode, on the validation loader, with
    ``train.eval_samples`` and ``train.eval_temperature``.
    """

    def __call__(self, model: nn.Module, loader: Any, *, num_samples: int, temperature: float) -> dict[str, float]: ...


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C (SIGINT) or SIGTERM after writing a checkpoint; the message says how to
    resume. A subclass of ``KeyboardInterrupt``, so code that stops on Ctrl-C still does."""

    def __init__(self, message: str, checkpoint: Path, step: int, signum: int) -> None:
        super().__init__(message)
        self.checkpoint, self.step, self.signum = checkpoint, step, signum


# ---------------------------------------------------------------------------------------------------
# objectives


def resolve_objective(name: str) -> Objective:
    """``mhe.objectives.OBJECTIVES[name]``; an unknown name is a :class:`~mhe.config.ConfigError`."""
    from mhe.objectives import OBJECTIVES

    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective.name={name!r}; available: {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[name]


def objective_kwargs(obj_cfg: ObjectiveConfig, fn: Objective, num_samples: int) -> dict[str, Any]:
    """Keyword arguments for ``fn(model, batch, **kwargs)``: the config's weights and ``num_samples`` (S).

    Every objective takes ``num_samples``. A weight the objective does not take is a
    :class:`~mhe.config.ConfigError` naming what it takes, unless it was left at its default (so the
    default ``b`` never breaks an objective without one); the objective's parameters are read once here
    for that check.
    """
    params = inspect.signature(fn).parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = [
        n for n, p in list(params.items())[2:] if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    defaults = {f.name: f.default for f in dataclasses.fields(ObjectiveConfig)}
    out: dict[str, Any] = {}
    for k, v in obj_cfg.kwargs().items():
        if var_kw or k in accepted:
            out[k] = v
        elif k in obj_cfg.extra or defaults.get(k) != v:
            name = getattr(fn, "__name__", repr(fn))
            raise ConfigError(
                f"objective {obj_cfg.name!r} ({name}) takes no argument {k!r} "
                f"(set by objective.{'extra.' if k in obj_cfg.extra else ''}{k}); "
                f"it takes: {', '.join(accepted) or 'none'}"
            )
    out["num_samples"] = num_samples
    return out


TEMPERED_WEIGHTS = ("w_rec", "w_prior")


def tempered_weights(fn: Objective, kwargs: dict[str, Any], temper_steps: int) -> dict[str, float]:
    """The full values of the weights ``train.temper_steps`` ramps up (``w_rec``, ``w_prior``: the config's, or
    the objective's defaults), or ``{}`` when tempering is off; an objective without them is a ConfigError."""
    if temper_steps <= 0:
        return {}
    params = inspect.signature(fn).parameters
    missing = [k for k in TEMPERED_WEIGHTS if k not in params]
    if missing:
        name = getattr(fn, "__name__", repr(fn))
        raise ConfigError(f"train.temper_steps={temper_steps} ramps {' and '.join(TEMPERED_WEIGHTS)}, but objective "
                          f"{name} takes no {', '.join(missing)}; set train.temper_steps=0 for it")
    return {k: float(kwargs.get(k, params[k].default)) for k in TEMPERED_WEIGHTS}


class _ObjectiveModule(nn.Module):
    """Runs the objective inside ``forward`` so DDP sees the call and synchronises the gradients."""

    def __init__(self, model: nn.Module, objective: Objective, kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.objective = objective
        self.kwargs = kwargs

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return self.objective(self.model, batch, **self.kwargs)


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


# ---------------------------------------------------------------------------------------------------
# data order, RNG isolation, logging


class ResumableSampler(Sampler[int]):
    """This rank's share of epoch ``epoch`` in ``DistributedSampler`` order, minus its first ``start`` items.

    The permutation depends only on ``(seed, epoch)``, so a resumed run sees exactly the items an
    uninterrupted run would have seen from that point on.
    """

    def __init__(
        self,
        size: int,
        *,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        start: int = 0,
    ) -> None:
        inner = DistributedSampler(
            range(size), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=False
        )
        inner.set_epoch(epoch)
        self.indices = list(iter(inner))[start:]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class DeviceLoader:
    """Iterate ``loader`` with every batch moved to ``device`` (what ``evaluate_fn`` receives)."""

    def __init__(self, loader: DataLoader, device: torch.device) -> None:
        self.loader = loader
        self.device = device
        self.dataset = loader.dataset
        self.batch_size = loader.batch_size

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield move_to_device(batch, self.device)

    def __len__(self) -> int:
        return len(self.loader)


# ---------------------------------------------------------------------------------------------------
# the trainer


@dataclass
class TrainResult:
    """Where a finished :meth:`Trainer.fit` left things."""

    out_dir: Path
    checkpoint: Path
    step: int
    epoch: int
    train_terms: dict[str, float] = field(default_factory=dict)
    val_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


class Trainer:
    """Train ``model`` on ``train_set`` with an objective, validating with ``evaluate_fn`` on ``val_set``.

    ``objective`` defaults to ``mhe.objectives.OBJECTIVES[config.objective.name]`` and is called as
    ``objective(model, batch, **kwargs)`` with ``kwargs`` from :func:`objective_kwargs`; a batch is the
    default-collated dict of the dataset's items, moved to the device. ``dist`` defaults to
    :func:`mhe.lab.distributed.init_distributed` (single process unless launched by ``torchrun``).
    """

    def __init__(
        self,
        model: nn.Module,
        train_set: Dataset,
        config: ExperimentConfig,
        *,
        objective: Objective | None = None,
        val_set: Dataset | None = None,
        evaluate_fn: EvaluateFn | None = None,
        dist: DistInfo | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        validate_config(config)
        self.cfg = config
        self.dist = dist if dist is not None else init_distributed(config.device)
        self.device = self.dist.device
        self.model = model.to(self.device)
        self.train_set = train_set
        self.val_set = val_set
        self.evaluate_fn = evaluate_fn
        self.collate_fn = collate_fn
        self.objective = objective if objective is not None else resolve_objective(config.objective.name)
        self.objective_kwargs = objective_kwargs(config.objective, self.objective, config.train.num_samples)
        self.tempered = tempered_weights(self.objective, self.objective_kwargs, config.train.temper_steps)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        self.optimizer = torch.optim.Adam(self.params, lr=config.train.lr, weight_decay=config.train.weight_decay)
        step_module = _ObjectiveModule(self.model, self.objective, self.objective_kwargs)
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.step_module: nn.Module = DistributedDataParallel(
                step_module,
                device_ids=[self.device] if self.device.type == "cuda" else None,
                find_unused_parameters=config.train.find_unused_parameters,
            )
        else:
            self.step_module = step_module

        n = len(train_set)  # type: ignore[arg-type]
        if n == 0:
            raise ConfigError("the training set is empty: check data.train_size and the dataset's train files")
        per_rank = math.ceil(n / self.dist.world_size)
        bs = config.train.batch_size
        self.batches_per_epoch = per_rank // bs if config.train.drop_last else math.ceil(per_rank / bs)
        if self.batches_per_epoch == 0:
            raise ConfigError(
                f"train.drop_last=true with {per_rank} items per process and train.batch_size={bs} "
                "leaves no batch; lower the batch size or set train.drop_last=false"
            )
        self.total_steps = config.train.steps or config.train.epochs * self.batches_per_epoch
        self.num_epochs = math.ceil(self.total_steps / self.batches_per_epoch)

        self.out_dir = config.out_path()
        self.logger = RunLogger(self.out_dir, enabled=self.dist.is_main)
        self.global_step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history: list[dict[str, float]] = []
        self.last_terms: dict[str, float] = {}

    # -- data -----------------------------------------------------------------------------------

    def train_loader(self, epoch: int, start_batch: int = 0) -> DataLoader:
        """The loader of epoch ``epoch`` from batch ``start_batch`` on (this rank's shard)."""
        t = self.cfg.train
        sampler = ResumableSampler(
            len(self.train_set),  # type: ignore[arg-type]
            seed=self.cfg.seed,
            epoch=epoch,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            start=start_batch * t.batch_size,
        )
        # an explicit generator keeps DataLoader from drawing worker seeds from the global RNG
        gen = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
        return DataLoader(
            self.train_set,
            batch_size=t.batch_size,
            sampler=sampler,
            num_workers=t.num_workers,
            drop_last=t.drop_last,
            collate_fn=self.collate_fn,
            generator=gen,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )

    def val_loader(self) -> DataLoader | None:
        """The validation loader (all of ``val_set`` or its first ``train.eval_max_items``), or None."""
        if self.val_set is None:
            return None
        t = self.cfg.train
        data = self.val_set
        if t.eval_max_items is not None and t.eval_max_items < len(data):  # type: ignore[arg-type]
            data = Subset(data, range(t.eval_max_items))
        return DataLoader(data, batch_size=t.batch_size, shuffle=False, num_workers=t.num_workers,
                          collate_fn=self.collate_fn)

    # -- one step -------------------------------------------------------------------------------

    def learning_rate(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based) under ``train.lr_schedule``."""
        t = self.cfg.train
        if t.lr_schedule == "cosine":
            return t.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, self.total_steps) / self.total_steps))
        return t.lr

    def train_step(self, batch: Batch) -> dict[str, float]:
        """One optimizer step on ``batch``; returns the loss, the objective's terms and the gradient norm."""
        self.model.train()
        batch = move_to_device(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        if self.tempered:
            beta = min(1.0, (self.global_step + 1) / self.cfg.train.temper_steps)
            inner = getattr(self.step_module, "module", self.step_module)
            inner.kwargs = {**self.objective_kwargs, **{k: beta * v for k, v in self.tempered.items()}}
        loss, terms = self.step_module(batch)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise TypeError(
                f"the objective must return (scalar loss tensor, dict of floats), got loss {type(loss).__name__}"
                + (f" of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else "")
            )
        bad = torch.tensor(0.0 if torch.isfinite(loss) else 1.0, device=self.device)
        if self.dist.distributed:
            # every rank must stop together, or the others would wait forever in backward's all-reduce
            torch.distributed.all_reduce(bad)
        if bad.item() > 0:
            shown = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
            raise FloatingPointError(
                f"non-finite loss ({loss.item()}) at step {self.global_step + 1} (terms: {shown}); "
                "lower train.lr, keep train.grad_clip on, or check the batch for NaNs"
            )
        loss.backward()
        # clip_grad_norm_ with an infinite bound measures the norm and scales by exactly 1
        clip = self.cfg.train.grad_clip or math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, clip)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(self.global_step)
        self.optimizer.step()
        out = {"loss": float(loss.detach())}
        out.update({k: float(v) for k, v in terms.items()})
        out["grad_norm"] = float(grad_norm)
        return out

    # -- validation -----------------------------------------------------------------------------

    def validate(self) -> dict[str, float]:
        """Run ``evaluate_fn`` on the validation loader (rank 0; the metrics are shared with all ranks)."""
        metrics: dict[str, float] = {}
        loader = self.val_loader()
        if self.evaluate_fn is not None and loader is not None and self.dist.is_main:
            self.model.eval()
            with isolated_rng(self.cfg.seed), torch.no_grad():
                metrics = self.evaluate_fn(
                    self.model,
                    DeviceLoader(loader, self.device),
                    num_samples=self.cfg.train.eval_samples,
                    temperature=self.cfg.train.eval_temperature,
                )
            self.model.train()
            metrics = {k: float(v) for k, v in metrics.items()}
        return broadcast_object(metrics, self.dist)

    # -- checkpoints ----------------------------------------------------------------------------

    def checkpoint_path(self) -> Path:
        """``<out_dir>/last.pt``: the newest resumable checkpoint."""
        return self.out_dir / "last.pt"

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write a resumable checkpoint (collective: every rank calls it, rank 0 writes)."""
        path = Path(path) if path is not None else self.checkpoint_path()
        rng = all_gather_objects(capture_rng_state(), self.dist)
        if self.dist.is_main:
            metrics = {"train": dict(self.last_terms), "val": dict(self.history[-1]) if self.history else {}}
            save_checkpoint(
                path,
                model=self.model,
                optimizer=self.optimizer,
                config=config_to_dict(self.cfg),
                step=self.global_step,
                epoch=self.epoch,
                batch_in_epoch=self.batch_in_epoch,
                rng=rng,
                metrics=metrics,
                extra={"world_size": self.dist.world_size, "history": [dict(h) for h in self.history]},
            )
        barrier(self.dist)
        return path

    def load(self, path: str | os.PathLike) -> None:
        """Restore model, optimizer, RNGs and position from a checkpoint, checking the config matches."""
        ckpt = load_checkpoint(path, map_location="cpu")
        check_resume_config(ckpt["config"], config_to_dict(self.cfg), source=str(path))
        if ckpt["step"] > self.total_steps:
            t = self.cfg.train
            length = f"train.steps={t.steps}" if t.steps else f"train.epochs={t.epochs} ({self.total_steps} steps)"
            raise ConfigError(
                f"{path} is at step {ckpt['step']}, past the end of this config's run ({length}): resuming would "
                f"stop at once and rewrite the run's config.yaml and logs. Resume with train.steps of at least "
                f"{ckpt['step']} (e.g. its own config: --config {self.out_dir / 'config.yaml'}), or start a fresh "
                "run in another train.out_dir"
            )
        load_model_state(self.model, ckpt, source=str(path))
        if ckpt.get("optimizer") is not None:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        self.global_step = ckpt["step"]
        self.epoch = ckpt["epoch"]
        self.batch_in_epoch = ckpt["batch_in_epoch"]
        self.history = list(ckpt.get("extra", {}).get("history", []))
        self.last_terms = dict(ckpt.get("metrics", {}).get("train", {}))
        rng = ckpt["rng"]
        if len(rng) == self.dist.world_size:
            restore_rng_state(rng[self.dist.rank])
        else:
            warnings.warn(
                f"{path} was written by {len(rng)} process(es) and is resumed by {self.dist.world_size}: "
                "the sampling noise is re-seeded, so the result will not equal an uninterrupted run",
                stacklevel=2,
            )
            seed_everything(self.cfg.seed + self.dist.rank + 7919 * self.global_step)

    def init_weights(self, source: str | os.PathLike) -> Path:
        """Copy the model weights of a checkpoint (a path or a shipped checkpoint's name) into the model.

        The checkpoint's model config must equal this run's (pose parameterisation, flow size, encoder,
        ...): a :class:`~mhe.lab.checkpoint.CheckpointMismatchError` names the keys that differ. With
        ``train.init_partial=true`` the tensors whose names and shapes match are copied and the rest keep
        their fresh initialisation. The optimizer, step count and learning-rate schedule start anew.
        """
        path = resolve_checkpoint_path(source)
        ckpt = load_checkpoint(path, map_location="cpu")
        verbose = self.dist.is_main and self.cfg.train.progress
        if self.cfg.train.init_partial:
            loaded, skipped = load_matching_state(self.model, ckpt)
            total = len(loaded) + len(skipped)
            if not loaded:
                raise ConfigError(
                    f"train.init_from={source}: none of this model's {total} tensors has a match (same name and "
                    f"shape) in {path}, so nothing would be copied; choose a checkpoint of a similar model, or "
                    "drop train.init_from"
                )
            if self.dist.is_main:  # always said, progress bar or not: a partial copy is easy to mistake
                print(f"[mhe] initialised {len(loaded)} of {total} tensors from {path} (train.init_partial: name "
                      f"and shape match); {len(skipped)} keep their fresh initialisation"
                      + (f": {summarize_names(skipped)}" if skipped else ""), flush=True)
            return path
        check_model_config(ckpt["config"], config_to_dict(self.cfg), source=str(path))
        load_model_state(self.model, ckpt, source=str(path))
        if verbose:
            print(f"[mhe] initialised the model from {path} (step {ckpt.get('step')})", flush=True)
        return path

    # -- interrupts -----------------------------------------------------------------------------

    def _install_signal_handlers(self) -> dict[int, Any]:
        """Turn SIGINT / SIGTERM into a stop request checked between steps (main thread only).

        A second Ctrl-C while the checkpoint is being written stops at once (the default behaviour)."""
        self._stop_signal = 0
        if threading.current_thread() is not threading.main_thread():
            return {}

        def request_stop(signum: int, frame: Any) -> None:
            self._stop_signal = signum
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts

        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, request_stop)
            except (ValueError, OSError):  # not allowed here (e.g. an embedded interpreter)
                pass
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _agree(self, stop: bool, save: bool) -> tuple[bool, bool]:
        """Every rank's stop / save requests combined (DDP ranks must checkpoint together)."""
        if not self.dist.distributed:
            return stop, save
        flags = torch.tensor([float(stop), float(save)], device=self.device)
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        return bool(flags[0] > 0), bool(flags[1] > 0)

    def _interrupted(self) -> TrainingInterrupted:
        path = self.save()
        name = signal.Signals(self._stop_signal).name if self._stop_signal else "interrupt"
        message = (
            f"{name} at step {self.global_step} of {self.total_steps}: saved {path}. Continue with: "
            f"mhe train --config {self.out_dir / 'config.yaml'} --resume"
        )
        return TrainingInterrupted(message, path, self.global_step, self._stop_signal or signal.SIGINT)

    # -- the loop -------------------------------------------------------------------------------

    def fit(self, resume: bool | str | os.PathLike = False, overwrite: bool = False) -> TrainResult:
        """Train to ``train.steps`` (or ``train.epochs``), validating and checkpointing on the way.

        ``resume=True`` continues from ``<out_dir>/last.pt`` when it exists (else starts fresh);
        a path resumes from that file. Starting fresh over an existing run needs ``overwrite=True``.
        """
        start_time = time.perf_counter()
        t = self.cfg.train
        ckpt_path = self.checkpoint_path()
        for folder in (self.out_dir, *self.out_dir.parents):
            if folder.exists() and not folder.is_dir():
                raise ConfigError(f"train.out_dir={self.out_dir}: {folder} is a file, not a folder; choose another "
                                  "train.out_dir")
            if folder.exists():
                break
        if resume:
            path = ckpt_path if resume is True else Path(resume)
            if not path.exists():
                raise FileNotFoundError(
                    f"nothing to resume: {path} does not exist (no run was checkpointed there); "
                    "start the run without --resume"
                )
            resume_from: Path | None = path
        else:
            resume_from = None
            if ckpt_path.exists() and not overwrite:
                raise FileExistsError(
                    f"{self.out_dir} already holds a run ({ckpt_path.name}); pass --resume to continue it, "
                    "--overwrite to start again, or choose another train.out_dir"
                )
        if resume_from is not None:
            self.load(resume_from)
            self.logger.resume_at(self.global_step)
            if self.dist.is_main and t.progress:
                print(f"[mhe] resumed {resume_from} at step {self.global_step} (epoch {self.epoch})", flush=True)
        else:
            self.global_step = self.epoch = self.batch_in_epoch = 0
            self.history = []
            if t.init_from:
                self.init_weights(t.init_from)
            # the training stream starts from the seed whatever model construction consumed
            seed_everything(self.cfg.seed + self.dist.rank)
            if self.dist.is_main:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                self.logger.start_fresh()
        if self.dist.is_main:
            dump_config(self.cfg, self.out_dir / "config.yaml")

        from tqdm.auto import tqdm

        bar = tqdm(
            total=self.total_steps,
            initial=self.global_step,
            desc=self.cfg.name,
            disable=not (t.progress and self.dist.is_main),
            dynamic_ncols=True,
        )
        window: list[dict[str, float]] = []
        validated_at = -1 if not self.history else self.history[-1].get("step", -1)
        saved_at = -1
        every_seconds = 60.0 * t.checkpoint_minutes
        last_save = time.monotonic()
        handlers = self._install_signal_handlers()
        try:
            while self.global_step < self.total_steps:
                for batch in self.train_loader(self.epoch, self.batch_in_epoch):
                    terms = self.train_step(batch)
                    self.global_step += 1
                    self.batch_in_epoch += 1
                    window.append(terms)
                    bar.update(1)
                    if self.global_step % t.log_every == 0 or self.global_step == self.total_steps:
                        self._log_window(window, bar)
                        window = []
                    due = bool(t.checkpoint_every and self.global_step % t.checkpoint_every == 0)
                    due = due or (every_seconds > 0 and time.monotonic() - last_save >= every_seconds)
                    stop, due = self._agree(bool(self._stop_signal), due)
                    if stop:
                        raise self._interrupted()
                    if due and self.global_step < self.total_steps:
                        self.save()
                        last_save = time.monotonic()
                    if self.global_step >= self.total_steps:
                        break
                if self.batch_in_epoch >= self.batches_per_epoch:
                    self.epoch += 1
                    self.batch_in_epoch = 0
                    last = self.epoch >= self.num_epochs
                    if t.eval_every and (self.epoch % t.eval_every == 0 or last):
                        self._validate_and_log()
                        validated_at = self.global_step
                    final = self.save()
                    saved_at = self.global_step
                    last_save = time.monotonic()
                elif self.global_step >= self.total_steps:
                    break
            if t.eval_every and validated_at != self.global_step:
                self._validate_and_log()
                saved_at = -1
            if saved_at != self.global_step:
                final = self.save()
        finally:
            self._restore_signal_handlers(handlers)
            bar.close()
        return TrainResult(
            out_dir=self.out_dir,
            checkpoint=final,
            step=self.global_step,
            epoch=self.epoch,
            train_terms=dict(self.last_terms),
            val_metrics=dict(self.history[-1]) if self.history else {},
            history=[dict(h) for h in self.history],
            seconds=time.perf_counter() - start_time,
        )

    def _log_window(self, window: list[dict[str, float]], bar: Any) -> None:
        keys = window[0].keys()
        avg = {k: sum(w[k] for w in window) / len(window) for k in keys}
        avg = all_reduce_mean(avg, self.dist)
        self.last_terms = avg
        row = {"step": self.global_step, "epoch": self.epoch, **avg, "lr": self.optimizer.param_groups[0]["lr"]}
        self.logger.log("train", row)
        bar.set_postfix(loss=f"{avg['loss']:.4g}", refresh=False)

    def _validate_and_log(self) -> None:
        metrics = self.validate()
        if not metrics:
            return
        row = {"step": self.global_step, "epoch": self.epoch, **metrics}
        self.history.append(row)
        self.logger.log("val", row)
        if self.dist.is_main and self.cfg.train.progress:
            from tqdm.auto import tqdm

            shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            tqdm.write(f"[mhe] epoch {self.epoch} step {self.global_step}: {shown}")
