"""From a config's objective section to the call ``objective(model, batch, num_samples=S, **weights)``.

Which keywords an objective takes is declared next to it (:data:`mhe.objectives.OBJECTIVE_WEIGHTS`), never
read from its signature: :func:`objective_kwargs` passes the config's weights an objective declares and refuses
the others, :func:`tempered_weights` gives the full values of the weights tempering ramps, and
:class:`ObjectiveStep` calls the objective at a tempering factor β handed in with the batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from mhe.config import ConfigError, ObjectiveConfig
from mhe.objectives import OBJECTIVE_WEIGHTS, OBJECTIVES, TEMPERED_WEIGHTS

Objective = Callable[..., tuple[torch.Tensor, dict[str, float]]]


def resolve_objective(name: str) -> Objective:
    """``mhe.objectives.OBJECTIVES[name]``; an unknown name is a :class:`~mhe.config.ConfigError`."""
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective.name={name!r}; available: {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[name]


def declared_weights(name: str) -> dict[str, float]:
    """The keywords objective ``name`` declares (:data:`mhe.objectives.OBJECTIVE_WEIGHTS`); a ConfigError when
    it declares none."""
    resolve_objective(name)
    if name not in OBJECTIVE_WEIGHTS:
        raise ConfigError(f"objective {name!r} declares no weights: register it with "
                          "mhe.objectives.register_objective(name, fn, weights)")
    return dict(OBJECTIVE_WEIGHTS[name])


def objective_kwargs(
    obj_cfg: ObjectiveConfig, num_samples: int | None = None, *, takes: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """The keyword arguments ``objective(model, batch, **kwargs)`` gets from ``obj_cfg``.

    ``takes`` (default: the declaration of ``obj_cfg.name``) names the keywords the objective takes. A weight it
    does not take is a :class:`~mhe.config.ConfigError` naming what it takes, unless the weight was left at its
    default (so the default ``b`` never breaks an objective without one). ``num_samples``, when given, is added.
    """
    takes = declared_weights(obj_cfg.name) if takes is None else takes
    defaults = {f.name: f.default for f in dataclasses.fields(ObjectiveConfig)}
    out: dict[str, Any] = {}
    for k, v in obj_cfg.kwargs().items():
        if k in takes:
            out[k] = v
        elif defaults.get(k) != v:
            raise ConfigError(
                f"objective {obj_cfg.name!r} takes no argument {k!r} (set by objective.{k}); "
                f"it takes: {', '.join(takes) or 'none'}"
            )
    if num_samples is not None:
        out["num_samples"] = num_samples
    return out


def tempered_weights(
    weights: Mapping[str, Any], temper_steps: int, takes: Mapping[str, float] | None = None, name: str = "objective"
) -> dict[str, float]:
    """The full values of the weights ``train.temper_steps`` ramps up (``w_rec``, ``w_prior``: from ``weights``,
    else the defaults in ``takes``), or ``{}`` when tempering is off.

    An objective that has neither is a :class:`~mhe.config.ConfigError`."""
    if temper_steps <= 0:
        return {}
    takes = takes or {}
    missing = [k for k in TEMPERED_WEIGHTS if k not in weights and k not in takes]
    if missing:
        raise ConfigError(f"train.temper_steps={temper_steps} ramps {' and '.join(TEMPERED_WEIGHTS)}, but {name} "
                          f"takes no {', '.join(missing)}; set train.temper_steps=0 for it (or give the full values "
                          "in its weights)")
    return {k: float(weights[k] if k in weights else takes[k]) for k in TEMPERED_WEIGHTS}


class ObjectiveStep(nn.Module):
    """``forward(batch, beta)``: the objective with its weights, the tempered ones times β. Running it inside
    ``forward`` lets ``DistributedDataParallel`` see the call and synchronise the gradients."""

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        weights: Mapping[str, Any],
        num_samples: int,
        tempered: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.objective = objective
        self.weights = {**weights, "num_samples": num_samples}
        self.tempered = dict(tempered or {})

    def forward(self, batch: Any, beta: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
        kwargs = {**self.weights, **{k: beta * v for k, v in self.tempered.items()}}
        return self.objective(self.model, batch, **kwargs)
