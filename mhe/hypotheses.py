"""What a model gives the objectives: :class:`Hypotheses` (S hypotheses per item with their log-density and the
outputs the terms score), the :class:`HypothesisModel` protocol, and :class:`MissingInputError`, the error of a
weighted term whose input is missing. :mod:`mhe.objectives` re-exports all three."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from torch import Tensor

from mhe.errors import UserError


class MissingInputError(UserError, KeyError, ValueError):
    """A weighted term's input is missing from the batch or from the model's hypotheses: the message names
    the term, its weight and how to fix it (set the weight to 0, or provide the input)."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


@dataclass
class Hypotheses:
    """S hypotheses per batch row, as a model produces them.

    Attributes:
        params: (B, S, D) the flow's samples (the stochastic parameters).
        log_q: (B, S) log-density of ``params`` under the model.
        pred_obs: (B, S, K, d) predicted observations (2D keypoints; heights for the toy arm, d = 1).
        log_prior: (B, S) log of the unnormalised prior of each hypothesis (deterministic parts included).
        weights: (B, S) weights summing to 1 per row when the hypotheses enumerate a discrete choice
            exactly (the depth-flip mixture of :mod:`mhe.models.flip`); None: equal weights 1/S.
        joints_3d: (B, S, J, 3) root-relative 3D keypoints divided by the predicted bone (unitless, as a
            dataset's ``joints_3d``); what ``w_3d`` scores. None when the model gives none.
        joints_metric: (B, S, J, 3) root-relative 3D keypoints in metres (ProHMR's 3D keypoint terms).
        pose: (B, S, D') the body model's pose (the flow's variable without a global rotation in front).
        orthonormality: (B, S) the 6D rotations' deviation from orthonormal (ProHMR's ``w_ortho`` term).
        head: the deterministic head's outputs: ``betas`` (B, n), ``log_scale`` (B,), ``trans`` (B, 2) and
            ``global_orient`` ((B, 3), or (B, S, 3) when the flow samples it); empty for a model without a head.
        keypoints: (B, S, K, 2) the toy arm's elbow and tip.
        source: what produced them (named by :meth:`need` when something is missing).
    """

    params: Tensor
    log_q: Tensor
    pred_obs: Tensor
    log_prior: Tensor
    weights: Tensor | None = None
    joints_3d: Tensor | None = None
    joints_metric: Tensor | None = None
    pose: Tensor | None = None
    orthonormality: Tensor | None = None
    head: dict[str, Tensor] = field(default_factory=dict)
    keypoints: Tensor | None = None
    source: str = "the model"

    def mean(self, values: Tensor) -> Tensor:
        """The expectation under q estimated from per-hypothesis ``values (B, S)``: the mean over B of
        the (weighted) mean over S."""
        if self.weights is None:
            return values.mean()
        return (values * self.weights).sum(-1).mean()

    def need(self, name: str, term: str, weight: float) -> Tensor:
        """The output ``name`` (an attribute, or a key of :attr:`head`) that ``term`` with ``weight`` > 0 needs;
        a :class:`ValueError` naming the model, the term and the fix when the model gives none."""
        head_keys = ("betas", "global_orient", "log_scale", "trans")
        value = self.head.get(name) if name in head_keys else getattr(self, name)
        if value is None:
            raise MissingInputError(f"{term} (weight {weight:g}) needs the hypotheses' {name}, which {self.source} "
                                    f"does not give; set that weight to 0 or use a model that predicts {name}")
        return value


class HypothesisModel(Protocol):
    """What the objectives need from a model (toy arm, hand, body)."""

    def hypotheses(self, batch: dict, num_samples: int, temperature: float = 1.0) -> Hypotheses: ...

    def mode(self, batch: dict) -> Hypotheses: ...

    def log_prob(self, batch: dict, params: Tensor) -> Tensor: ...
