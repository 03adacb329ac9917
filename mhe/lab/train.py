"""The generic trainer: any multi-hypothesis model, any objective, one process or many (DDP).

:class:`Trainer` optimises a model with an objective ``fn(model, batch, num_samples=S, **weights) ->
(loss, terms)`` (:mod:`mhe.objectives`) on a torch ``Dataset`` under a :class:`~mhe.config.TrainConfig`: Adam,
gradient-norm clipping, tempering, a tqdm bar, a CSV/JSONL log of every loss term, validation metrics from an
``evaluate_fn`` (called as ``evaluate_fn(model, loader, num_samples=..., temperature=...)``, e.g.
:func:`mhe.evaluation.evaluate_model`), and atomic checkpoints that make ``resume`` exact: the data order of every
epoch is a function of ``(seed, epoch)`` and the RNG states are saved, so a killed run continues to the same
parameters bit for bit on CPU. Its steps are those of the package's one loop, :func:`mhe.training.fit`; the
trainer supplies the resumable stream of batches and, after each step, logs, validates, checkpoints and
stops when asked. Checkpoints are written every ``train.checkpoint_every`` steps, every
``train.checkpoint_minutes`` minutes, at the end of each epoch, and when the run is stopped by Ctrl-C
(SIGINT) or SIGTERM: the step in flight finishes, a checkpoint is written and :class:`TrainingInterrupted`
says how to resume. Under ``torchrun`` it wraps the model in ``DistributedDataParallel`` and shards each
epoch with a ``DistributedSampler``; rank 0 alone logs and writes checkpoints. Which model, data and objective
a config names is decided by :mod:`mhe.lab.experiments` and :meth:`Trainer.from_config`, not here.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mhe import training
from mhe.config import ConfigError, ExperimentConfig, TrainConfig, validate_config
from mhe.evaluation import move_to_device
from mhe.lab.config_io import config_to_dict
from mhe.lab.distributed import DistInfo, all_reduce_mean, broadcast_object, init_distributed
from mhe.lab.objective_args import (
    Objective,
    ObjectiveStep,
    objective_kwargs,
    resolve_objective,
    tempered_weights,
)
from mhe.lab.runlog import RunLogger
from mhe.lab.train_data import DeviceLoader, ResumableSampler, epoch_batches, train_loader, val_loader
from mhe.lab.train_state import (
    TrainingInterrupted,
    init_weights,
    install_signal_handlers,
    load_state,
    restore_signal_handlers,
    save_state,
    summarize_names,
    write_run_config,
)
from mhe.objectives import OBJECTIVE_WEIGHTS
from mhe.rng import isolated_rng
from mhe.utils import seed_everything

__all__ = [
    "DeviceLoader", "EvaluateFn", "ResumableSampler", "RunLogger", "TrainResult", "Trainer", "TrainingInterrupted",
    "objective_kwargs", "resolve_objective", "summarize_names", "tempered_weights",
]

Batch = dict[str, Any]
#: What to do when the loss is not finite, said in the trainer's settings.
NON_FINITE_HINT = "lower train.lr, keep train.grad_clip on, or check the batch for NaNs"


class EvaluateFn(Protocol):
    """``evaluate_fn(model, loader, *, num_samples, temperature) -> metrics``.

    Called without gradients, with the model in eval mode, on the validation loader, with
    ``train.eval_samples`` and ``train.eval_temperature``.
    """

    def __call__(self, model: nn.Module, loader: Any, *, num_samples: int, temperature: float) -> dict[str, float]: ...


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
    """Train ``model`` with ``objective`` on ``train_set`` under ``train`` (a :class:`~mhe.config.TrainConfig`).

    ``objective`` is called as ``objective(model, batch, num_samples=train.num_samples, **weights)``; with
    ``train.temper_steps > 0`` the ``w_rec`` and ``w_prior`` of ``weights`` (their full values; both must be
    there) are multiplied by β, which rises from 1/temper_steps to 1 (:func:`mhe.training.tempering_ramp`). A
    batch is the collated items of the dataset, moved to the device. Keyword-only:

    - ``val_set`` and ``evaluate_fn``: validation (``train.eval_every``);
    - ``dist``: the process group (default :func:`mhe.lab.distributed.init_distributed` on ``device``: one process
      unless launched by ``torchrun``); ``collate_fn``: the loaders' collate function;
    - ``out_dir``: where logs and checkpoints go; ``seed``: the training stream and data order;
    - ``run_config``: the plain experiment config the checkpoints and ``out_dir/config.yaml`` record (a resume
      must match it; ``train.init_from`` checks its ``model`` section); default: ``name``, ``seed`` and ``train``;
    - ``name``: the progress bar's label.

    :meth:`from_config` builds one from an :class:`~mhe.config.ExperimentConfig`.
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        train_set: Dataset,
        train: TrainConfig,
        *,
        weights: Mapping[str, Any] | None = None,
        val_set: Dataset | None = None,
        evaluate_fn: EvaluateFn | None = None,
        dist: DistInfo | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        out_dir: str | os.PathLike = "runs/experiment",
        seed: int = 0,
        run_config: Mapping[str, Any] | None = None,
        name: str = "experiment",
        device: str | None = None,
    ) -> None:
        validate_config(ExperimentConfig(train=train))  # the train section's checks
        self.train_cfg = train
        self.seed, self.name = seed, name
        self.out_dir = Path(out_dir)
        self.run_config = dict(run_config) if run_config is not None else {
            "name": name, "seed": seed, "train": config_to_dict(train)}
        self.dist = dist if dist is not None else init_distributed(device)
        self.device = self.dist.device
        self.model = model.to(self.device)
        self.train_set = train_set
        self.val_set = val_set
        self.evaluate_fn = evaluate_fn
        self.collate_fn = collate_fn
        self.objective = objective
        self.weights = dict(weights or {})
        name_of = getattr(objective, "__name__", type(objective).__name__)
        self.tempered = tempered_weights(self.weights, train.temper_steps, name=f"objective {name_of}")
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        # torch's fused Adam: one kernel over all tensors (3.5 x faster than the per-tensor loop on the CPU)
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in self.params) or None
        self.optimizer = torch.optim.Adam(self.params, lr=train.lr, weight_decay=train.weight_decay, fused=fused)
        step_module = ObjectiveStep(self.model, objective, self.weights, train.num_samples, self.tempered)
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.step_module: nn.Module = DistributedDataParallel(
                step_module,
                device_ids=[self.device] if self.device.type == "cuda" else None,
                find_unused_parameters=train.find_unused_parameters,
            )
        else:
            self.step_module = step_module

        n = len(train_set)  # type: ignore[arg-type]  # a map-style dataset has a length
        if n == 0:
            raise ConfigError("the training set is empty: check data.train_size and the dataset's train files")
        per_rank = math.ceil(n / self.dist.world_size)
        bs = train.batch_size
        self.batches_per_epoch = per_rank // bs if train.drop_last else math.ceil(per_rank / bs)
        if self.batches_per_epoch == 0:
            raise ConfigError(
                f"train.drop_last=true with {per_rank} items per process and train.batch_size={bs} "
                "leaves no batch; lower the batch size or set train.drop_last=false"
            )
        self.total_steps = train.steps or train.epochs * self.batches_per_epoch
        self.num_epochs = math.ceil(self.total_steps / self.batches_per_epoch)
        self._lr = training.lr_schedule(train.lr, train.lr_schedule, self.total_steps)
        self._beta = training.tempering_ramp(train.temper_steps if self.tempered else 0)

        self.logger = RunLogger(self.out_dir, enabled=self.dist.is_main)
        self.global_step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history: list[dict[str, float]] = []
        self.last_terms: dict[str, float] = {}
        self._stop_signal = 0

    @classmethod
    def from_config(
        cls,
        model: nn.Module,
        train_set: Dataset,
        config: ExperimentConfig,
        *,
        objective: Objective | None = None,
        weights: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Trainer:
        """A trainer for ``config``: its objective (``objective`` overrides the named one), train section, seed,
        output folder, device and name; ``kwargs`` are the constructor's (``val_set``, ``evaluate_fn``, ...).

        ``weights`` defaults to the config's objective weights that ``objective.name`` declares
        (:func:`~mhe.lab.objective_args.objective_kwargs`), with the full ``w_rec`` and ``w_prior`` when
        tempering; an objective without a declaration gets the config's weights as they are set.
        """
        validate_config(config)
        name = config.objective.name
        fn = objective if objective is not None else resolve_objective(name)
        if weights is None:
            if name in OBJECTIVE_WEIGHTS:
                takes = OBJECTIVE_WEIGHTS[name]
                weights = objective_kwargs(config.objective, takes=takes)
                weights.update(tempered_weights(weights, config.train.temper_steps, takes, f"objective {name!r}"))
            else:
                weights = config.objective.kwargs()
        kwargs.setdefault("device", config.device)
        return cls(model, fn, train_set, config.train, weights=weights, out_dir=config.out_path(), seed=config.seed,
                   run_config=config_to_dict(config), name=config.name, **kwargs)

    # -- data -----------------------------------------------------------------------------------

    def train_loader(self, epoch: int, start_batch: int = 0) -> DataLoader:
        """The loader of epoch ``epoch`` from batch ``start_batch`` on (this rank's shard)."""
        return train_loader(self.train_set, self.train_cfg, seed=self.seed, epoch=epoch, start_batch=start_batch,
                            rank=self.dist.rank, world_size=self.dist.world_size, collate_fn=self.collate_fn,
                            pin_memory=self.device.type == "cuda")

    def val_loader(self) -> DataLoader | None:
        """The validation loader (all of ``val_set`` or its first ``train.eval_max_items``), or None."""
        return val_loader(self.val_set, self.train_cfg, self.collate_fn)

    # -- one step -------------------------------------------------------------------------------

    def learning_rate(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based) under ``train.lr_schedule``."""
        return self._lr(step)

    def _loss(self, batch: Batch, beta: float) -> tuple[torch.Tensor, dict[str, float]]:
        self.model.train()
        return self.step_module(move_to_device(batch, self.device), beta)

    def _any_rank(self, flag: bool) -> bool:
        """True when ``flag`` is true on any process (every rank must stop together on a non-finite loss, or
        the others would wait forever in backward's all-reduce)."""
        if not self.dist.distributed:
            return flag
        value = torch.tensor(1.0 if flag else 0.0, device=self.device)
        torch.distributed.all_reduce(value)
        return value.item() > 0

    def _step_args(self) -> dict[str, Any]:
        return {"grad_clip": self.train_cfg.grad_clip, "params": self.params, "any_rank": self._any_rank,
                "hint": NON_FINITE_HINT}

    def train_step(self, batch: Batch) -> dict[str, float]:
        """One optimizer step on ``batch`` at step ``global_step`` (which it does not advance); returns the loss,
        the objective's terms and the gradient norm."""
        step = self.global_step
        return training.train_step(self._loss, self.optimizer, batch, step=step, lr=self.learning_rate(step),
                                   beta=self._beta(step), **self._step_args())

    # -- validation -----------------------------------------------------------------------------

    def validate(self) -> dict[str, float]:
        """Run ``evaluate_fn`` on the validation loader (rank 0; the metrics are shared with all ranks)."""
        metrics: dict[str, float] = {}
        loader = self.val_loader()
        if self.evaluate_fn is not None and loader is not None and self.dist.is_main:
            self.model.eval()
            with isolated_rng(self.seed), torch.no_grad():
                metrics = self.evaluate_fn(
                    self.model,
                    DeviceLoader(loader, self.device),
                    num_samples=self.train_cfg.eval_samples,
                    temperature=self.train_cfg.eval_temperature,
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
        return save_state(self, Path(path) if path is not None else self.checkpoint_path())

    def load(self, path: str | os.PathLike) -> None:
        """Restore model, optimizer, RNGs and position from a checkpoint, checking the config matches."""
        load_state(self, Path(path))

    def init_weights(self, source: str | os.PathLike) -> Path:
        """Copy the model weights of a checkpoint (a path or a shipped checkpoint's name) into the model
        (``train.init_from``; see :func:`mhe.lab.train_state.init_weights`)."""
        return init_weights(self, source)

    def resume_hint(self) -> str:
        """How to continue this run after it stopped."""
        if "model" in self.run_config:  # an experiment config: the command line can rebuild the run
            return f"mhe train --config {self.out_dir / 'config.yaml'} --resume"
        return "Trainer.fit(resume=True) with the same settings"

    def _interrupted(self) -> TrainingInterrupted:
        path = self.save()
        name = signal.Signals(self._stop_signal).name if self._stop_signal else "interrupt"
        message = (f"{name} at step {self.global_step} of {self.total_steps}: saved {path}. Continue with: "
                   f"{self.resume_hint()}")
        return TrainingInterrupted(message, path, self.global_step, self._stop_signal or signal.SIGINT)

    def _agree(self, stop: bool, save: bool) -> tuple[bool, bool]:
        """Every rank's stop / save requests combined (DDP ranks must checkpoint together)."""
        if not self.dist.distributed:
            return stop, save
        flags = torch.tensor([float(stop), float(save)], device=self.device)
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        return bool(flags[0] > 0), bool(flags[1] > 0)

    # -- the loop -------------------------------------------------------------------------------

    def _start(self, resume: bool | str | os.PathLike, overwrite: bool) -> None:
        """Resume from a checkpoint or start fresh (refusing to overwrite a run unless asked)."""
        t = self.train_cfg
        ckpt_path = self.checkpoint_path()
        for folder in (self.out_dir, *self.out_dir.parents):
            if folder.exists() and not folder.is_dir():
                raise ConfigError(f"train.out_dir={self.out_dir}: {folder} is a file, not a folder; choose another "
                                  "train.out_dir")
            if folder.exists():
                break
        resume_from: Path | None = None
        if resume:
            resume_from = ckpt_path if resume is True else Path(resume)
            if not resume_from.exists():
                raise FileNotFoundError(
                    f"nothing to resume: {resume_from} does not exist (no run was checkpointed there); "
                    "start the run without --resume"
                )
        elif ckpt_path.exists() and not overwrite:
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
            seed_everything(self.seed + self.dist.rank)
            if self.dist.is_main:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                self.logger.start_fresh()
        if self.dist.is_main:
            write_run_config(self.run_config, self.out_dir / "config.yaml")

    def _batches(self) -> Iterator[Batch]:
        """The batches from the current position on, epoch after epoch."""
        return epoch_batches(self.train_loader, self.epoch, self.batch_in_epoch)

    def fit(self, resume: bool | str | os.PathLike = False, overwrite: bool = False) -> TrainResult:
        """Train to ``train.steps`` (or ``train.epochs``), validating and checkpointing on the way.

        ``resume=True`` continues from ``<out_dir>/last.pt`` when it exists (else starts fresh);
        a path resumes from that file. Starting fresh over an existing run needs ``overwrite=True``.
        """
        start_time = time.perf_counter()
        t = self.train_cfg
        self._start(resume, overwrite)

        from tqdm.auto import tqdm

        bar = tqdm(total=self.total_steps, initial=self.global_step, desc=self.name,
                   disable=not (t.progress and self.dist.is_main), dynamic_ncols=True)
        window: list[dict[str, float]] = []
        # the step of the last validation and of the last checkpoint, the time of the last checkpoint
        mark = {"validated": -1 if not self.history else self.history[-1].get("step", -1), "saved": -1,
                "time": time.monotonic()}
        final: Path | None = None
        every_seconds = 60.0 * t.checkpoint_minutes

        def after_step(step: int, terms: dict[str, float]) -> None:
            nonlocal window, final
            self.global_step = step
            self.batch_in_epoch += 1
            window.append(terms)
            bar.update(1)
            if step % t.log_every == 0 or step == self.total_steps:
                self._log_window(window, bar)
                window = []
            due = bool(t.checkpoint_every and step % t.checkpoint_every == 0)
            due = due or (every_seconds > 0 and time.monotonic() - mark["time"] >= every_seconds)
            stop, due = self._agree(bool(self._stop_signal), due)
            if stop:
                raise self._interrupted()
            if due and step < self.total_steps:
                self.save()
                mark["time"] = time.monotonic()
            if self.batch_in_epoch >= self.batches_per_epoch:  # the end of an epoch
                self.epoch += 1
                self.batch_in_epoch = 0
                last = self.epoch >= self.num_epochs
                if t.eval_every and (self.epoch % t.eval_every == 0 or last):
                    self._validate_and_log()
                    mark["validated"] = step
                final = self.save()
                mark["saved"], mark["time"] = step, time.monotonic()

        handlers = install_signal_handlers(self)
        try:
            training.fit(self._loss, self.optimizer, self._batches(), steps=self.total_steps, lr=self._lr,
                         tempering=self._beta, start_step=self.global_step, callback=after_step, **self._step_args())
            if t.eval_every and mark["validated"] != self.global_step:
                self._validate_and_log()
                mark["saved"] = -1
            if mark["saved"] != self.global_step or final is None:
                final = self.save()
        finally:
            restore_signal_handlers(handlers)
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
        if self.dist.is_main and self.train_cfg.progress:
            from tqdm.auto import tqdm

            shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            tqdm.write(f"[mhe] epoch {self.epoch} step {self.global_step}: {shown}")

