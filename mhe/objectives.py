"""Training objectives as functions of (model, batch), shared by the toy arm, hands and bodies.

A *model* turns a batch into :class:`Hypotheses` (S samples of the stochastic parameters, their
log-density, predicted observations and prior) through three methods::

    model.hypotheses(batch, num_samples, temperature=1.0) -> Hypotheses   # S reparameterised samples
    model.mode(batch) -> Hypotheses                                       # S = 1, zero noise
    model.log_prob(batch, params (B, D)) -> (B,)                          # log q(params | batch)

A *batch* is a dict with ``"obs" (B, K, d)`` observed keypoints (d = 2 for 2D keypoints, d = 1 for
the toy arm's heights), ``"visible" (B, K)`` bool, and optionally ``"params" (B, D)`` ground-truth
parameters (NLL) and ``"joints_3d" (B, J, 3)`` (3D supervision; the model then puts its predicted
joints in ``extras["joints_3d"] (B, S, J, 3)``).

MHEntropy minimises KL(q || p) with p(θ | obs) ∝ p(obs | θ) p(θ): a Laplace likelihood on the
visible keypoints, a soft box/ball prior and the entropy of q, estimated from S reparameterised
samples. **Normalisation:** the log-likelihood is *summed* over visible keypoints and their
coordinates (never averaged), and only the batch B and hypotheses S are averaged. Averaging over
keypoints would raise the likelihood to a power 1/K and flatten the posterior the entropy term
spreads over, so the loss would no longer be KL(q || p) up to a constant. Every objective returns
``(loss, terms)`` with ``terms`` a dict of floats for logging.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import torch
from torch import Tensor

from mhe.priors import ball_prior, box_prior  # noqa: F401  (the priors objectives and models combine)


@dataclass
class Hypotheses:
    """S hypotheses per batch row, as a model produces them.

    Attributes:
        params: (B, S, D) the flow's samples (the stochastic parameters).
        log_q: (B, S) log-density of ``params`` under the model.
        pred_obs: (B, S, K, d) predicted observations (2D keypoints; heights for the toy arm, d = 1).
        log_prior: (B, S) log of the unnormalised prior of each hypothesis (deterministic parts included).
        extras: anything else, e.g. ``joints_3d`` (B, S, J, 3), ``vertices`` (B, S, V, 3).
        weights: (B, S) weights summing to 1 per row when the hypotheses enumerate a discrete choice
            exactly (the flip mixture of :mod:`mhe.models.multi_hypothesis`); None: equal weights 1/S.
    """

    params: Tensor
    log_q: Tensor
    pred_obs: Tensor
    log_prior: Tensor
    extras: dict[str, Any] = field(default_factory=dict)
    weights: Tensor | None = None

    def mean(self, values: Tensor) -> Tensor:
        """The expectation under q estimated from per-hypothesis ``values (B, S)``: the mean over B of
        the (weighted) mean over S."""
        if self.weights is None:
            return values.mean()
        return (values * self.weights).sum(-1).mean()


class HypothesisModel(Protocol):
    """What the objectives need from a model (toy arm, hand, body)."""

    def hypotheses(self, batch: dict, num_samples: int, temperature: float = 1.0) -> Hypotheses: ...

    def mode(self, batch: dict) -> Hypotheses: ...

    def log_prob(self, batch: dict, params: Tensor) -> Tensor: ...


# -- terms --------------------------------------------------------------------------------------


def laplace_log_likelihood(pred: Tensor, obs: Tensor, visible: Tensor, b: float) -> Tensor:
    """Σ over visible keypoints and coordinates of log Laplace(obs | pred, b) = -|obs - pred|/b - log 2b.

    Args:
        pred: (B, S, K, d) predicted observations.
        obs: (B, K, d) observations.
        visible: (B, K) bool; occluded keypoints contribute nothing (a flat likelihood).
        b: Laplace scale (> 0), in the units of the observations.

    Returns:
        (B, S) log-likelihood of each hypothesis.
    """
    if not b > 0:
        raise ValueError(f"the Laplace scale b must be > 0, got {b}")
    if pred.dim() != 4:
        raise ValueError(f"pred must have shape (B, S, K, d), got {tuple(pred.shape)}")
    batch, _, k, d = pred.shape
    if obs.shape != (batch, k, d):
        raise ValueError(
            f"obs must have shape (B, K, d) = {(batch, k, d)} to match pred {tuple(pred.shape)}, "
            f"got {tuple(obs.shape)}"
        )
    if visible.shape != (batch, k):
        raise ValueError(f"visible must have shape (B, K) = {(batch, k)}, got {tuple(visible.shape)}")
    per_coord = -(pred - obs.unsqueeze(1)).abs() / b - math.log(2 * b)
    # Mask with where (not a product) so that a NaN/inf in an occluded prediction stays out.
    mask = visible.to(torch.bool)[:, None, :, None]
    return torch.where(mask, per_coord, per_coord.new_zeros(())).sum(dim=(-1, -2))


def _check_batch(batch: dict, *keys: str) -> None:
    for key in ("obs", "visible", *keys):
        if key not in batch:
            raise KeyError(
                f"batch is missing {key!r}; a batch is a dict with 'obs' (B, K, d), 'visible' (B, K) "
                "and, for NLL / 3D supervision, 'params' (B, D) / 'joints_3d' (B, J, 3)"
            )


def _l1_3d(hyp: Hypotheses, batch: dict) -> Tensor:
    """Mean absolute 3D joint error over B, S, J and xyz (3D supervision)."""
    if "joints_3d" not in batch:
        raise KeyError("w_3d > 0 needs batch['joints_3d'] (B, J, 3)")
    if "joints_3d" not in hyp.extras:
        raise KeyError("w_3d > 0 needs the model to return extras['joints_3d'] (B, S, J, 3)")
    return (hyp.extras["joints_3d"] - batch["joints_3d"].unsqueeze(1)).abs().mean()


def _with_3d(
    loss: Tensor, terms: dict[str, float], hyp: Hypotheses, batch: dict, w_3d: float
) -> tuple[Tensor, dict[str, float]]:
    """Add the optional 3D L1 term (``w_3d > 0``) and log the total as ``terms["loss"]``."""
    if w_3d > 0:
        l1 = _l1_3d(hyp, batch)
        loss = loss + w_3d * l1
        terms["l1_3d"] = l1.item()
    terms["loss"] = loss.item()
    return loss, terms


# -- objectives ---------------------------------------------------------------------------------


def mhentropy(
    model: HypothesisModel,
    batch: dict,
    num_samples: int = 10,
    b: float = 0.03,
    w_rec: float = 1.0,
    w_prior: float = 1.0,
    w_ent: float = 1.0,
    w_3d: float = 0.0,
    temperature: float = 1.0,
) -> tuple[Tensor, dict[str, float]]:
    """MHEntropy: mean over B, S of -w_rec·log p(obs|θ) - w_prior·log p(θ) + w_ent·log q(θ).

    With unit weights this is KL(q || p(θ | obs)) up to a constant, estimated from S
    reparameterised samples; gradients flow through the samples and through log q (no
    stop-gradient). Ablations are weights: ``w_ent=0`` (no entropy: best fit + prior, collapses),
    ``w_rec=0`` (spreads over the prior), ``w_prior=0``. ``w_3d > 0`` adds a mean 3D L1 joint term.

    Terms: ``reconstruction`` (mean -log-likelihood), ``prior`` (mean -log prior), ``entropy``
    (the estimate -mean log q of H[q]), ``l1_3d`` when used, and ``loss``.
    """
    _check_batch(batch)
    hyp = model.hypotheses(batch, num_samples, temperature)
    loglik = laplace_log_likelihood(hyp.pred_obs, batch["obs"], batch["visible"], b)
    rec, prior, log_q = -hyp.mean(loglik), -hyp.mean(hyp.log_prior), hyp.mean(hyp.log_q)
    loss = w_rec * rec + w_prior * prior + w_ent * log_q
    terms = {"reconstruction": rec.item(), "prior": prior.item(), "entropy": -log_q.item()}
    return _with_3d(loss, terms, hyp, batch, w_3d)


def nll(
    model: HypothesisModel,
    batch: dict,
    num_samples: int = 10,
    w_nll: float = 1.0,
    w_keypoints: float = 0.0,
    b: float = 0.03,
) -> tuple[Tensor, dict[str, float]]:
    """NLL (ProHMR-style): mean over B of -w_nll·log q(params_gt | batch), plus an optional
    ``w_keypoints`` · (-Laplace log-likelihood of the visible observations) of the mode.

    Needs ``batch["params"] (B, D)``; ``num_samples`` is taken for a uniform call and unused (NLL scores
    the ground truth, not samples). Terms: ``nll``, ``keypoints`` (when used), ``loss``.
    """
    _check_batch(batch, "params")
    value = -model.log_prob(batch, batch["params"]).mean()
    loss = w_nll * value
    terms = {"nll": value.item()}
    if w_keypoints > 0:
        mode = model.mode(batch)
        kp = -laplace_log_likelihood(mode.pred_obs, batch["obs"], batch["visible"], b).mean()
        loss = loss + w_keypoints * kp
        terms["keypoints"] = kp.item()
    terms["loss"] = loss.item()
    return loss, terms


def min_of_n(
    model: HypothesisModel,
    batch: dict,
    num_samples: int = 10,
    b: float = 0.03,
    w_rec: float = 1.0,
    w_prior: float = 1.0,
    w_3d: float = 0.0,
    temperature: float = 1.0,
) -> tuple[Tensor, dict[str, float]]:
    """Best-of-S: per row, only the hypothesis with the smallest reconstruction error is fitted.

    The reconstruction is the L1 error on visible observations divided by b (the Laplace
    -log-likelihood, so its scale matches :func:`mhentropy`); the prior (``w_prior``) acts on all
    S hypotheses. Terms: ``reconstruction`` (of the best), ``prior``, ``l1_3d``, ``loss``.
    """
    _check_batch(batch)
    hyp = model.hypotheses(batch, num_samples, temperature)
    neg_loglik = -laplace_log_likelihood(hyp.pred_obs, batch["obs"], batch["visible"], b)
    rec = neg_loglik.min(dim=1).values.mean()
    prior = -hyp.log_prior.mean()
    loss = w_rec * rec + w_prior * prior
    terms = {"reconstruction": rec.item(), "prior": prior.item()}
    return _with_3d(loss, terms, hyp, batch, w_3d)


def deterministic(
    model: HypothesisModel,
    batch: dict,
    num_samples: int = 1,
    b: float = 0.03,
    w_rec: float = 1.0,
    w_prior: float = 1.0,
    w_3d: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:
    """A single-hypothesis regressor: reconstruction and prior on the mode (S = 1, zero noise;
    ``num_samples`` is taken for a uniform call and unused).

    Terms: ``reconstruction``, ``prior``, ``l1_3d`` (when used), ``loss``.
    """
    _check_batch(batch)
    hyp = model.mode(batch)
    rec = -laplace_log_likelihood(hyp.pred_obs, batch["obs"], batch["visible"], b).mean()
    prior = -hyp.log_prior.mean()
    loss = w_rec * rec + w_prior * prior
    terms = {"reconstruction": rec.item(), "prior": prior.item()}
    return _with_3d(loss, terms, hyp, batch, w_3d)


Objective = Callable[..., tuple[Tensor, dict[str, float]]]

#: Every objective by name; the ablations are MHEntropy with one weight set to zero.
OBJECTIVES: dict[str, Objective] = {
    "mhentropy": mhentropy,
    "no_entropy": partial(mhentropy, w_ent=0.0),
    "no_reconstruction": partial(mhentropy, w_rec=0.0),
    "no_prior": partial(mhentropy, w_prior=0.0),
    "nll": nll,
    "min_of_n": min_of_n,
    "deterministic": deterministic,
}


def get_objective(name: str) -> Objective:
    """The objective called ``name`` (a key of :data:`OBJECTIVES`), with a helpful error otherwise."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}") from None
