"""The one training loop of the package: the toy targets and arm, :func:`mhe.flows.fit_nll` and the hand and
body :class:`~mhe.lab.train.Trainer` all step through :func:`fit` (notebook 01 writes its own step by hand,
for teaching).

One step (:func:`train_step`): compute the loss of a batch at the tempering factor β, check that it is a
finite scalar, backpropagate, clip the gradient norm (and measure it), set the learning rate of the step and
let the optimizer step. :func:`fit` repeats it over an iterator of batches and hands ``(step, terms)`` to a
callback after every step (logging, validation, checkpoints, an early stop). What a batch is, how the loss
reads β and what the callback does is up to the caller:

- the loss function is called as ``loss_fn(batch, beta) -> (scalar loss, terms)``;
- β comes from ``tempering``: an int N ramps β = min(1, (step + 1) / N) linearly to 1 over the first N steps
  (0: off, β = 1 throughout), a callable gives β for each 0-based step;
- the learning rate of step k is ``lr(k)`` for a callable, else ``lr`` (``schedule="constant"``) or the
  closed-form cosine decay from ``lr`` to 0 over ``steps`` (``schedule="cosine"``, :func:`cosine_lr`).

Every schedule is a pure function of the step, so a loop restarted at ``start_step`` with the optimizer's
state restored continues exactly. The module imports nothing from :mod:`mhe.lab`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

#: ``loss_fn(batch, beta) -> (loss, terms)``: a scalar tensor and a dict of floats for logging.
LossFn = Callable[[Any, float], tuple[Tensor, Mapping[str, float]]]
#: ``callback(step, terms)``, called after every step with the number of steps done (1-based) and the step's
#: terms; a true return value stops the loop.
StepCallback = Callable[[int, dict[str, float]], Any]
#: Learning rate or tempering factor of a 0-based step.
Schedule = Callable[[int], float]

SCHEDULES = ("constant", "cosine")
DEFAULT_HINT = "lower the learning rate, clip the gradient norm, or check the batch for NaNs"


def constant_lr(lr: float) -> Schedule:
    """The learning rate ``lr`` at every step."""
    return lambda step: lr


def cosine_lr(lr: float, total: int) -> Schedule:
    """Cosine decay from ``lr`` at step 0 to 0 at step ``total`` (and after), in closed form:
    lr · (1 + cos(π · step / total)) / 2."""
    if total < 1:
        raise ValueError(f"the cosine schedule needs total >= 1 steps, got {total}")
    return lambda step: lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


def recursive_cosine_lr(lr: float, total: int) -> Schedule:
    """The values ``torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total)`` gives step by step.

    The same curve as :func:`cosine_lr`, computed as torch does by a recursion from step to step, which
    differs from the closed form in the last bits (about 1e-17). The toy and :func:`mhe.flows.fit_nll` keep
    these values so that their models (and the figures made from them) stay bit for bit what they were when
    they had a scheduler of their own.
    """
    if total < 1:
        raise ValueError(f"the cosine schedule needs total >= 1 steps, got {total}")
    values = [lr]
    for k in range(1, total):
        # torch's chainable form: (1 + cos(π k / T)) / (1 + cos(π (k - 1) / T)) · lr_{k-1}
        values.append((1 + math.cos(math.pi * k / total)) / (1 + math.cos(math.pi * (k - 1) / total)) * values[-1])
    return lambda step: values[step] if step < total else 0.0


def tempering_ramp(temper_steps: int) -> Schedule:
    """β of step k: min(1, (k + 1) / temper_steps), rising linearly to 1 over the first ``temper_steps`` steps;
    ``temper_steps <= 0`` turns tempering off (β = 1 at every step)."""
    if temper_steps <= 0:
        return lambda step: 1.0
    return lambda step: min(1.0, (step + 1) / temper_steps)


def lr_schedule(lr: float | Schedule, schedule: str = "constant", total: int | None = None) -> Schedule:
    """The learning-rate schedule of :func:`fit`: a callable as it is, else ``lr`` under ``schedule``
    (``"constant"``, or ``"cosine"`` over ``total`` steps)."""
    if callable(lr):
        return lr
    if schedule == "constant":
        return constant_lr(lr)
    if schedule == "cosine":
        if total is None:
            raise ValueError("schedule='cosine' needs the run's total number of steps")
        return cosine_lr(lr, total)
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


def check_loss(
    loss: Any,
    terms: Mapping[str, float],
    step: int,
    any_rank: Callable[[bool], bool] | None = None,
    hint: str = DEFAULT_HINT,
) -> None:
    """Raise unless ``loss`` is a finite scalar tensor; ``step`` is 0-based (the message counts from 1).

    ``any_rank(flag)`` combines a per-process flag over every process (DDP: all of them must stop
    together, or the others would wait forever in backward's all-reduce)."""
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        raise TypeError(
            f"the objective must return (scalar loss tensor, dict of floats), got loss {type(loss).__name__}"
            + (f" of shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else "")
        )
    bad = not bool(torch.isfinite(loss))
    if any_rank is not None:
        bad = any_rank(bad)
    if bad:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
        raise FloatingPointError(f"non-finite loss ({loss.item()}) at step {step + 1} (terms: {shown}); {hint}")


def adam(params: Iterable[Tensor], lr: float) -> torch.optim.Adam:
    """Adam over all tensors at once (``foreach``): the same numbers as torch's per-tensor loop on the CPU, bit for
    bit, in fewer calls per step (the small toy flows' steps are made of calls, not arithmetic)."""
    return torch.optim.Adam(params, lr=lr, foreach=True)


def _params(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def train_step(
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    batch: Any,
    *,
    step: int = 0,
    lr: float | None = None,
    beta: float = 1.0,
    grad_clip: float | None = None,
    params: Iterable[Tensor] | None = None,
    any_rank: Callable[[bool], bool] | None = None,
    hint: str = DEFAULT_HINT,
) -> dict[str, float]:
    """One optimizer step on ``batch``: the loss at ``beta``, backward, clipping, the update at ``lr``.

    ``step`` (0-based) only names the step in errors; ``lr=None`` keeps the optimizer's learning rate;
    ``grad_clip`` None or 0 measures the gradient norm without clipping; ``params`` (default: the
    optimizer's) are the parameters clipped and measured. Returns ``loss``, the loss function's terms (a
    ``loss`` among them replaces the first) and ``grad_norm`` (before clipping), as floats.
    """
    optimizer.zero_grad(set_to_none=True)
    loss, terms = loss_fn(batch, beta)
    check_loss(loss, terms, step, any_rank, hint)
    loss.backward()
    # clip_grad_norm_ with an infinite bound measures the norm and scales by exactly 1
    grad_norm = torch.nn.utils.clip_grad_norm_(
        list(params) if params is not None else _params(optimizer), grad_clip or math.inf
    )
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    optimizer.step()
    out = {"loss": float(loss.detach())}
    out.update({k: float(v) for k, v in terms.items()})
    out["grad_norm"] = float(grad_norm)
    return out


def fit(
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[Any],
    *,
    steps: int,
    lr: float | Schedule | None = None,
    schedule: str = "constant",
    grad_clip: float | None = None,
    tempering: int | Schedule = 0,
    start_step: int = 0,
    callback: StepCallback | None = None,
    params: Iterable[Tensor] | None = None,
    any_rank: Callable[[bool], bool] | None = None,
    hint: str = DEFAULT_HINT,
) -> int:
    """Run :func:`train_step` for steps ``start_step, ..., steps - 1`` on the batches of ``batches``.

    Args:
        loss_fn: ``loss_fn(batch, beta) -> (scalar loss, terms)``.
        optimizer: the optimizer (its state is the caller's: restore it to resume).
        batches: an iterable of batches; the loop stops early when it runs out.
        steps: the step count to reach (the total, not the number of steps of this call).
        lr: the learning rate (under ``schedule``) or a schedule ``step -> lr``; None keeps the optimizer's.
        schedule: ``"constant"`` or ``"cosine"`` (closed form over ``steps``, :func:`cosine_lr`).
        grad_clip: clip the gradient norm to this value (None or 0: measure it only).
        tempering: ``N``: β ramps linearly to 1 over the first N steps (:func:`tempering_ramp`; 0: off), or a
            schedule ``step -> beta``.
        start_step: the 0-based step to start at (a resumed run's step count).
        callback: ``callback(step, terms)`` after each step, ``step`` counting the steps done (1-based); a true
            return value stops the loop after that step.
        params, any_rank, hint: see :func:`train_step`.

    Returns:
        the number of steps done when the loop stopped (``steps`` unless stopped early).
    """
    if steps < 0 or start_step < 0:
        raise ValueError(f"steps and start_step must be >= 0, got steps={steps}, start_step={start_step}")
    lr_of = None if lr is None else lr_schedule(lr, schedule, steps)
    beta_of = tempering if callable(tempering) else tempering_ramp(tempering)
    params = list(params) if params is not None else None
    step = start_step
    if step >= steps:
        return step
    for batch in batches:
        terms = train_step(
            loss_fn, optimizer, batch, step=step, lr=None if lr_of is None else lr_of(step), beta=beta_of(step),
            grad_clip=grad_clip, params=params, any_rank=any_rank, hint=hint,
        )
        step += 1
        if callback is not None and callback(step, terms):
            break
        if step >= steps:
            break
    return step
