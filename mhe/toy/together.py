"""Training several toy models at once, with the models :func:`~mhe.toy.fit_arm` and friends give one at a time.

The toy's models are so small that a training step is almost all per-operation overhead (Python, dispatch,
autograd bookkeeping), not arithmetic: two ways to spend one core's time on several fits follow from that.

- :func:`fit_arm_group` trains arms that differ only in their term weights as **one batched model**:
  ``torch.func.vmap`` runs the same flow code over a stack of the models' weights, so one step of three models
  costs well under three steps of one. Such arms share the seed, hence the initial weights, the observations
  and the base noise of every step (``randomness="same"``), and each still gets exactly the gradients, the
  clipping, the Adam steps and the weight average that :func:`~mhe.toy.fit_arm` gives it alone: bit for bit
  the same model.
- :func:`in_processes` runs jobs (any zero-argument callables, closures and notebook functions included) on
  forked worker processes, one thread each, and :func:`fit_arms` puts both together for notebook 01's
  ablation: the batchable arms as one group, the others alone, on ``workers`` processes.
"""

from __future__ import annotations

import copy
import multiprocessing
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from mhe.objectives import laplace_log_likelihood
from mhe.toy.arm import (
    ARM_WEIGHTS,
    ArmModel,
    ArmOptions,
    arm_options,
    arm_phases,
    fit_arm,
    new_arm_model,
    observations,
    score_function_parts,
    shifted,
    tempered_b,
)
from mhe.training import adam, fit, recursive_cosine_lr
from mhe.utils import seed_everything

#: The arm objectives :func:`fit_arm_group` can batch: the sampling objectives with the entropy term, which share
#: their phases (the pathwise phase, then the score-function polish) and differ only in their term weights.
GROUPABLE = tuple(name for name, (_, _, w_ent) in ARM_WEIGHTS.items() if w_ent > 0)


class _Objective(nn.Module):
    """The loss of one arm as a module call, so that ``functional_call`` can run it on any model's weights."""

    def __init__(self, model: ArmModel, num_samples: int) -> None:
        super().__init__()
        self.model = model
        self.num_samples = num_samples

    def forward(self, batch: dict, b: float, weights: Tensor, score: bool) -> tuple[Tensor, Tensor]:
        """(the loss to differentiate, the objective's value): :func:`mhe.objectives.mhentropy`'s with the weights
        ``(w_rec, w_prior, w_ent)`` in the pathwise phase, :func:`~mhe.toy.score_function_loss`'s in the polish."""
        w_rec, w_prior, w_ent = weights[0], weights[1], weights[2]
        if score:
            surrogate, _, _, cost = score_function_parts(self.model, batch, self.num_samples, b, w_rec, w_prior,
                                                         w_ent)
            return surrogate, cost.mean()
        hyp = self.model.hypotheses(batch, self.num_samples)
        loglik = laplace_log_likelihood(hyp.pred_obs, batch["obs"], batch["visible"], b)
        rec, prior, log_q = -hyp.mean(loglik), -hyp.mean(hyp.log_prior), hyp.mean(hyp.log_q)
        loss = w_rec * rec + w_prior * prior + w_ent * log_q
        return loss, loss


def fit_arm_group(objectives: Sequence[str], steps: int | None = None, seed: int = 0,
                  **options: Any) -> list[ArmModel]:
    """``[fit_arm(objective, steps, seed, **options) for objective in objectives]``, trained as one batched model.

    Args:
        objectives: names from :data:`GROUPABLE` (``"mhentropy"``, ``"no_reconstruction"``, ``"no_prior"``), each
            at most once.
        steps, seed, options: as for :func:`~mhe.toy.fit_arm`, shared by every arm of the group.

    Every step stacks the arms' weights and evaluates all their losses in one ``torch.func.vmap`` call of the
    same code :func:`~mhe.toy.fit_arm` runs (the flow draws its noise once for all, as each arm alone would draw
    it from the same seed); each arm's gradient is that of its own loss, clipped by its own norm. So each model
    is, bit for bit, the one :func:`~mhe.toy.fit_arm` returns; a test checks it. ``train_seconds`` of each is the
    group's time divided by the number of arms.
    """
    objectives = list(objectives)
    wrong = [name for name in objectives if name not in GROUPABLE]
    if wrong or not objectives or len(set(objectives)) != len(objectives):
        raise ValueError(f"fit_arm_group batches distinct objectives among {', '.join(GROUPABLE)}, got "
                         f"{objectives}; train the others with fit_arm")
    opts = arm_options(steps, options)
    generator = seed_everything(seed)
    first = new_arm_model(opts)  # every arm of the group starts from these weights, as fit_arm's would
    models = [first] + [copy.deepcopy(first) for _ in objectives[1:]]
    weights = torch.tensor([ARM_WEIGHTS[name] for name in objectives])
    names = [name for name, _ in first.named_parameters()]
    params = [list(model.parameters()) for model in models]
    objective = _Objective(first, opts.num_samples)
    histories: list[list[float]] = [[] for _ in models]
    emas = [[p.detach().clone() for p in ps] for ps in params] if opts.ema > 0 else None

    def losses(batch: dict, beta: float, score: bool) -> tuple[Tensor, dict[str, float]]:
        stacked = {"model." + name: torch.stack(group)
                   for name, group in zip(names, zip(*params, strict=True), strict=True)}
        b = tempered_b(opts, beta)

        def one(weights_of_one: dict[str, Tensor], w: Tensor) -> tuple[Tensor, Tensor]:
            return functional_call(objective, weights_of_one, (batch, b, w, score))

        loss, value = vmap(one, randomness="same")(stacked, weights)
        return loss.sum(), {f"loss_{k}": float(v) for k, v in enumerate(value.detach())}

    def after_step(step: int, terms: dict[str, float]) -> None:
        for k, history in enumerate(histories):
            if emas is not None:
                with torch.no_grad():
                    for avg, p in zip(emas[k], params[k], strict=True):
                        avg.lerp_(p, 1 - opts.ema)
            history.append(terms[f"loss_{k}"])

    def clip_each(clip: float) -> Callable[..., None]:
        def hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            for ps in params:  # each arm's gradient clipped by its own norm, as fit_arm clips it
                torch.nn.utils.clip_grad_norm_(ps, clip)
        return hook

    start = time.perf_counter()
    for model in models:
        model.train()
    batches = observations(opts, generator)
    phases = arm_phases(opts, lambda batch, beta: losses(batch, beta, False),
                        lambda batch, beta: losses(batch, beta, True), polish=True)
    for loss_fn, first_step, end, lr, clip in phases:
        optimizer = adam([p for ps in params for p in ps], lr)  # per tensor: one Adam per arm
        if clip:
            optimizer.register_step_pre_hook(clip_each(clip))
        cosine = recursive_cosine_lr(lr, end - first_step)
        fit(loss_fn, optimizer, batches, steps=end, start_step=first_step, lr=shifted(cosine, first_step),
            params=[], tempering=round(opts.anneal * opts.steps), callback=after_step)
    seconds = (time.perf_counter() - start) / len(models)
    for k, model in enumerate(models):
        if emas is not None:
            with torch.no_grad():
                for avg, p in zip(emas[k], params[k], strict=True):
                    p.copy_(avg)
        model.train_seconds, model.options, model.history = seconds, copy.copy(opts), histories[k]
        model.eval()
    return models


# -- forked worker processes ----------------------------------------------------------------------

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

#: The jobs of the running :func:`in_processes` call; forked workers find theirs here, so nothing but a name and
#: a result crosses the pipe (a closure or a function defined in a notebook could not be pickled).
_JOBS: dict[Any, Callable[[], Any]] = {}


def _run_job(name: Hashable) -> Any:
    torch.set_num_threads(1)
    return _JOBS[name]()


def in_processes(jobs: dict[K, Callable[[], T]], workers: int = 2,
                 cost: Callable[[K], float] | None = None) -> dict[K, T]:
    """``{name: job() for name, job in jobs.items()}``, with the jobs run on ``workers`` forked processes at once.

    Each worker runs on one thread, and a job that seeds itself gives what it gives when called here, bit for
    bit. The jobs start in decreasing ``cost(name)`` (default: in the given order), so that the last one to start
    is a short one; their results come back pickled (a model, a history, a tensor). ``workers=1``, a single job,
    or a platform without ``fork`` (Windows) runs them here, one after another.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(jobs) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return {name: job() for name, job in jobs.items()}
    if _JOBS:
        raise RuntimeError("in_processes cannot be nested: a job called in_processes again")
    _JOBS.update(jobs)
    try:
        with multiprocessing.get_context("fork").Pool(min(workers, len(jobs))) as pool:
            order = sorted(jobs, key=lambda name: -cost(name)) if cost is not None else list(jobs)
            pending = {name: pool.apply_async(_run_job, (name,)) for name in order}
            return {name: pending[name].get() for name in jobs}
    finally:
        _JOBS.clear()


def _arm_record(models: list[ArmModel]) -> list[tuple[dict[str, Tensor], dict]]:
    """Trained arms as weights and records, cheap to send back from a worker."""
    return [(model.state_dict(), {"history": model.history, "options": model.options,
                                  "train_seconds": model.train_seconds}) for model in models]


def _arm_from_record(state: dict[str, Tensor], record: dict) -> ArmModel:
    model = new_arm_model(record["options"])
    model.load_state_dict(state)
    model.history, model.options, model.train_seconds = record["history"], record["options"], record["train_seconds"]
    return model.eval()


def fit_arms(runs: dict[str, dict], seed: int = 0, workers: int = 1, batch: bool = True) -> dict[str, ArmModel]:
    """Train several arms, ``name -> fit_arm(seed=seed, **runs[name])``, on ``workers`` processes at once.

    With ``batch``, the runs that differ only in a :data:`GROUPABLE` objective (the same options otherwise) train
    together as one batched model (:func:`fit_arm_group`); the others train alone. Each job runs on one thread,
    so the models are the ones :func:`fit_arm` returns one after another, bit for bit, with any number of workers
    and with or without ``batch``. ``workers=1`` trains them here, one after another.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    def rest(kwargs: dict) -> dict:
        return {key: value for key, value in kwargs.items() if key != "objective"}

    batches: list[list[str]] = []  # the runs each job trains
    for name, kwargs in runs.items():
        mate = None
        if batch and kwargs.get("objective") in GROUPABLE:
            mate = next((members for members in batches if runs[members[0]].get("objective") in GROUPABLE
                         and rest(runs[members[0]]) == rest(kwargs)
                         and all(runs[m]["objective"] != kwargs["objective"] for m in members)), None)
        if mate is not None:
            mate.append(name)
        else:
            batches.append([name])
    groups = {" + ".join(members): members for members in batches}

    def job(members: list[str]) -> Callable[[], list[tuple[dict[str, Tensor], dict]]]:
        if len(members) == 1:
            return lambda: _arm_record([fit_arm(seed=seed, **runs[members[0]])])
        return lambda: _arm_record(fit_arm_group([runs[m]["objective"] for m in members], seed=seed,
                                                 **rest(runs[members[0]])))

    def cost(job_name: str) -> float:  # a batched step of k arms costs about (1 + k) / 2 steps of one
        kwargs = runs[groups[job_name][0]]
        steps = kwargs.get("steps") or ArmOptions.steps
        return steps * (0.25 if kwargs.get("objective") == "nll" else 1.0) * (1 + len(groups[job_name])) / 2

    done = in_processes({job_name: job(members) for job_name, members in groups.items()}, workers, cost)
    models = {}
    for job_name, members in groups.items():
        for member, (state, record) in zip(members, done[job_name], strict=True):
            models[member] = _arm_from_record(state, record)
    return {name: models[name] for name in runs}
