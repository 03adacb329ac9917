"""The generic trainer: any multi-hypothesis model, any objective, one process or many (DDP).

:class:`Trainer` optimises a model with an objective ``fn(model, batch, **weights) -> (loss, terms)``
(``mhe.objectives``) on a torch ``Dataset``: Adam, gradient-norm clipping, a tqdm bar, a CSV/JSONL log of
every loss term, validation metrics from an ``evaluate_fn``, and atomic checkpoints that make ``resume``
exact: the data order of every epoch is a function of ``(seed, epoch)`` and the RNG states are saved, so a
killed run continues to the same parameters bit for bit on CPU. Under ``torchrun`` it wraps the model in
``DistributedDataParallel`` and shards each epoch with a ``DistributedSampler``; rank 0 alone logs and
writes checkpoints. Experiments are assembled by builders registered per dataset
(:func:`register_experiment`), which the CLI (``mhe train`` / ``mhe evaluate``) looks up from the config.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import inspect
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from torch.utils.data.distributed import DistributedSampler

from mhe.checkpoint import (
    CheckpointMismatchError,
    capture_rng_state,
    check_resume_config,
    load_checkpoint,
    load_model_state,
    resolve_checkpoint_path,
    restore_rng_state,
    save_checkpoint,
)
from mhe.config import (
    ConfigError,
    ExperimentConfig,
    ObjectiveConfig,
    config_from_dict,
    config_to_dict,
    dump_config,
    validate_config,
)
from mhe.distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_mean,
    barrier,
    broadcast_object,
    init_distributed,
)
from mhe.utils import seed_everything

Batch = dict[str, Any]
Objective = Callable[..., tuple[torch.Tensor, dict[str, float]]]


class EvaluateFn(Protocol):
    """``evaluate_fn(model, loader, *, num_samples, temperature) -> metrics``.

    Called without gradients, with the model in eval mode, on the validation loader; the keyword
    arguments are passed only if the function's signature has them.
    """

    def __call__(self, model: nn.Module, loader: DataLoader, **kwargs: Any) -> dict[str, float]: ...


# ---------------------------------------------------------------------------------------------------
# experiment registry


class Experiment(NamedTuple):
    """What a builder returns: unpacks as ``model, train_set, val_set, evaluate_fn``."""

    model: nn.Module
    train_set: Dataset
    val_set: Dataset | None = None
    evaluate_fn: EvaluateFn | None = None


ExperimentBuilder = Callable[[ExperimentConfig], Experiment]

EXPERIMENTS: dict[str, ExperimentBuilder] = {}

# modules that register builders when imported (looked up lazily so `import mhe.train` stays light)
EXPERIMENT_PROVIDERS: list[str] = ["mhe.models.hand"]


def register_experiment(
    dataset: str, builder: ExperimentBuilder | None = None, *, overwrite: bool = False
) -> Any:
    """Register ``builder(cfg) -> Experiment`` for ``cfg.data.dataset == dataset`` (usable as a decorator)."""

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


def _load_providers() -> None:
    import importlib

    for module in EXPERIMENT_PROVIDERS:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:  # the provider exists but one of its imports is missing: say so
                raise


def available_experiments() -> list[str]:
    """Dataset keys with a registered builder (providers imported first)."""
    _load_providers()
    return sorted(EXPERIMENTS)


def build_experiment(cfg: ExperimentConfig) -> Experiment:
    """Assemble ``(model, train_set, val_set, evaluate_fn)`` for ``cfg`` with the builder of ``cfg.data.dataset``."""
    key = cfg.data.dataset
    if key not in EXPERIMENTS:
        _load_providers()
    if key not in EXPERIMENTS:
        known = ", ".join(sorted(EXPERIMENTS)) or "none registered yet"
        raise ConfigError(
            f"no experiment builder for data.dataset={key!r}; known datasets: {known}. "
            "Register one with mhe.train.register_experiment(name, builder)."
        )
    exp = EXPERIMENTS[key](cfg)
    if not isinstance(exp, tuple) or len(exp) < 2:
        raise TypeError(f"the builder for {key!r} must return Experiment(model, train_set, val_set, evaluate_fn)")
    return Experiment(*exp)


# ---------------------------------------------------------------------------------------------------
# objectives


def resolve_objective(name: str) -> Objective:
    """``mhe.objectives.OBJECTIVES[name]`` with a clear error for unknown names."""
    try:
        from mhe.objectives import OBJECTIVES
    except ModuleNotFoundError as e:
        if e.name != "mhe.objectives":
            raise
        raise ConfigError(
            f"objective {name!r} asked for, but mhe.objectives is not available; "
            "pass objective=<callable> to the Trainer"
        ) from None
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective.name={name!r}; available: {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[name]


def objective_kwargs(obj_cfg: ObjectiveConfig, fn: Objective, num_samples: int) -> dict[str, Any]:
    """Keyword arguments for ``fn(model, batch, **kwargs)`` from the config.

    ``num_samples`` (S) is passed when ``fn`` takes it. A weight the objective does not take is an error,
    unless it was left at its default (so the default ``b`` never breaks an objective without one).
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
    if var_kw or "num_samples" in accepted:
        out.setdefault("num_samples", num_samples)
    return out


class _ObjectiveModule(nn.Module):
    """Runs the objective inside ``forward`` so DDP sees the call and synchronises the gradients."""

    def __init__(self, model: nn.Module, objective: Objective, kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.objective = objective
        self.kwargs = kwargs

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return self.objective(self.model, batch, **self.kwargs)


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


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Seed every RNG for the block and restore the previous states after it.

    Validation samples hypotheses; isolating it keeps the training stream (and so resumption) unchanged
    and makes validation numbers comparable across epochs.
    """
    state = capture_rng_state()
    try:
        seed_everything(seed)
        yield
    finally:
        restore_rng_state(state)


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Tensors in a (nested) batch moved to ``device``; everything else unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


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


class RunLogger:
    """Rows of training terms (``train_log.csv``) and validation metrics (``val_log.csv``), plus ``log.jsonl``.

    CSV headers grow when a row brings a new column (the file is then rewritten). ``resume_at(step)``
    drops rows logged after the checkpoint a run resumes from, so the logs read like one run.
    """

    FILES = {"train": "train_log.csv", "val": "val_log.csv"}

    def __init__(self, out_dir: Path, enabled: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.rows: dict[str, list[dict[str, Any]]] = {"train": [], "val": []}
        self.columns: dict[str, list[str]] = {"train": [], "val": []}

    def start_fresh(self) -> None:
        """Forget earlier logs in ``out_dir``."""
        if self.enabled:
            for name in [*self.FILES.values(), "log.jsonl"]:
                (self.out_dir / name).unlink(missing_ok=True)

    def resume_at(self, step: int) -> None:
        """Reload the logs, keeping rows up to ``step``."""
        if not self.enabled:
            return
        path = self.out_dir / "log.jsonl"
        records = []
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    if rec.get("step", 0) <= step:
                        records.append(rec)
        for kind in self.rows:
            self.rows[kind] = [{k: v for k, v in r.items() if k != "kind"} for r in records if r["kind"] == kind]
            self.columns[kind] = []
            for r in self.rows[kind]:
                self.columns[kind] += [k for k in r if k not in self.columns[kind]]
            self._rewrite(kind)
        with open(path, "w") as f:
            for rec in records:
                f.write(json.dumps(rec) + "\n")

    def log(self, kind: str, row: dict[str, Any]) -> None:
        """Append one row of kind ``"train"`` or ``"val"``."""
        if not self.enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "log.jsonl", "a") as f:
            f.write(json.dumps({"kind": kind, **row}) + "\n")
        self.rows[kind].append(row)
        new = [k for k in row if k not in self.columns[kind]]
        if new:
            self.columns[kind] += new
            self._rewrite(kind)
        else:
            with open(self.out_dir / self.FILES[kind], "a", newline="") as f:
                csv.DictWriter(f, self.columns[kind]).writerow(row)

    def _rewrite(self, kind: str) -> None:
        path = self.out_dir / self.FILES[kind]
        if not self.rows[kind]:
            path.unlink(missing_ok=True)
            return
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, self.columns[kind])
            writer.writeheader()
            writer.writerows(self.rows[kind])


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
    :func:`mhe.distributed.init_distributed` (single process unless launched by ``torchrun``).
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
            raise ValueError("the training set is empty")
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
                metrics = _call_supported(
                    self.evaluate_fn,
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

        The architecture must match (a clear :class:`~mhe.checkpoint.CheckpointMismatchError` names the
        tensors that differ); the optimizer, step count and learning-rate schedule are not taken over.
        """
        path = resolve_checkpoint_path(source)
        ckpt = load_checkpoint(path, map_location="cpu")
        load_model_state(self.model, ckpt, source=str(path))
        if self.dist.is_main and self.cfg.train.progress:
            print(f"[mhe] initialised the model from {path} (step {ckpt.get('step')})", flush=True)
        return path

    # -- the loop -------------------------------------------------------------------------------

    def fit(self, resume: bool | str | os.PathLike = False, overwrite: bool = False) -> TrainResult:
        """Train to ``train.steps`` (or ``train.epochs``), validating and checkpointing on the way.

        ``resume=True`` continues from ``<out_dir>/last.pt`` when it exists (else starts fresh);
        a path resumes from that file. Starting fresh over an existing run needs ``overwrite=True``.
        """
        start_time = time.perf_counter()
        t = self.cfg.train
        ckpt_path = self.checkpoint_path()
        if resume:
            path = ckpt_path if resume is True else Path(resume)
            if resume is not True and not path.exists():
                raise FileNotFoundError(f"cannot resume: checkpoint {str(path)!r} does not exist")
            resume_from = path if path.exists() else None
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
                    if t.checkpoint_every and self.global_step % t.checkpoint_every == 0:
                        self.save()
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
                elif self.global_step >= self.total_steps:
                    break
            if t.eval_every and validated_at != self.global_step:
                self._validate_and_log()
                saved_at = -1
            if saved_at != self.global_step:
                final = self.save()
        finally:
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


def _call_supported(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn(*args, **kwargs)`` passing only the keyword arguments its signature takes."""
    params = inspect.signature(fn).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fn(*args, **kwargs)


# ---------------------------------------------------------------------------------------------------
# whole runs (what the CLI calls)


def train_experiment(
    cfg: ExperimentConfig, *, resume: bool = False, overwrite: bool = False, dist: DistInfo | None = None
) -> TrainResult:
    """Seed, build the registered experiment for ``cfg.data.dataset`` and train it."""
    validate_config(cfg)
    info = dist if dist is not None else init_distributed(cfg.device)
    # every rank builds the same initial model (DDP also broadcasts rank 0's weights)
    seed_everything(cfg.seed)
    exp = build_experiment(cfg)
    trainer = Trainer(
        exp.model, exp.train_set, cfg, val_set=exp.val_set, evaluate_fn=exp.evaluate_fn, dist=info
    )
    return trainer.fit(resume=resume, overwrite=overwrite)


def evaluate_checkpoint(
    path: str | os.PathLike,
    *,
    dataset: str | None = None,
    root: str | None = None,
    num_samples: int = 200,
    temperature: float = 0.8,
    batch_size: int | None = None,
    max_items: int | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Rebuild a checkpoint's experiment (optionally on another dataset / root) and evaluate it.

    ``path`` is a checkpoint file or a shipped checkpoint's name (``"hand_mhentropy"``).

    Returns ``{"checkpoint", "dataset", "root", "num_samples", "temperature", "step", "items", "metrics"}``
    with ``metrics`` from the experiment's ``evaluate_fn`` on its validation split.
    """
    from mhe.utils import default_device

    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    path = resolve_checkpoint_path(path)
    ckpt = load_checkpoint(path)
    try:
        cfg = config_from_dict(ckpt["config"])
    except ConfigError as e:
        raise CheckpointMismatchError(
            f"{path}: its config does not fit this version of mhe ({e})"
        ) from None
    if dataset is not None:
        cfg.data.dataset = dataset
    if root is not None:
        cfg.data.root = root
    if batch_size is not None:
        cfg.train.batch_size = batch_size
    if max_items is not None:
        cfg.train.eval_max_items = max_items
    seed_everything(cfg.seed)
    exp = build_experiment(cfg)
    if exp.evaluate_fn is None or exp.val_set is None:
        raise ConfigError(f"the experiment for {cfg.data.dataset!r} has no evaluation split or evaluate_fn")
    load_model_state(exp.model, ckpt, source=str(path))
    dev = default_device(device)
    model = exp.model.to(dev).eval()
    data = exp.val_set
    if max_items is not None and max_items < len(data):  # type: ignore[arg-type]
        data = Subset(data, range(max_items))
    loader = DataLoader(data, batch_size=cfg.train.batch_size, shuffle=False)
    with isolated_rng(cfg.seed), torch.no_grad():
        metrics = _call_supported(
            exp.evaluate_fn, model, DeviceLoader(loader, dev), num_samples=num_samples, temperature=temperature
        )
    return {
        "checkpoint": str(path),
        "dataset": cfg.data.dataset,
        "root": cfg.data.root,
        "num_samples": num_samples,
        "temperature": temperature,
        "step": ckpt["step"],
        "items": len(data),  # type: ignore[arg-type]
        "metrics": {k: float(v) for k, v in metrics.items()},
    }
