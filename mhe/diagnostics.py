"""Posterior diagnostics: is a model's spread of hypotheses *right*, not only wide?

Three questions, three functions on plain tensors (so they serve any model, the toy arm included):

* **How well does q cover the target it was trained for?** :func:`importance_ess`: with p̃ the model's
  own unnormalised target (likelihood on the visible 2D keypoints × prior) and q the flow, the
  effective sample size of the self-normalised importance weights p̃/q, as a fraction of S. It is 1
  when q equals p̃ up to a constant, and falls towards 1/S when a few hypotheses carry all the weight
  (q misses mass of p̃, or puts mass where p̃ has little). :func:`hypotheses_ess` computes it for a
  model and a batch.
* **How likely is the truth under q?** :func:`ground_truth_log_likelihood`: log q(θ_gt | input) in
  nats per dimension, for models with ``log_prob`` (MHEntropy and NLL models alike).
* **Is the spread calibrated?** :func:`calibration_curve`: for each α, the fraction of ground-truth
  joints that fall inside the model's central α-region of its hypotheses for that joint; ideal is the
  diagonal. The central α-region of a joint is the ball around the hypotheses' mean holding a fraction
  α of them, so if the truth is distributed like one more hypothesis, it falls inside with
  probability α (a rank argument, whatever the distribution's shape). :func:`calibration_gap` is the
  mean absolute distance of a curve from the diagonal.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "DEFAULT_ALPHAS",
    "calibration_curve",
    "calibration_gap",
    "ground_truth_log_likelihood",
    "hypotheses_ess",
    "importance_ess",
]

DEFAULT_ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def importance_ess(log_p_tilde: Tensor, log_q: Tensor) -> Tensor:
    """Effective sample size of self-normalised importance weights, as a fraction of S.

    Args:
        log_p_tilde: (B, S) log of the unnormalised target at S samples drawn from q.
        log_q: (B, S) log-density of q at the same samples.

    Returns:
        (B,) ``(Σ w)² / (S · Σ w²)`` with ``w = p̃ / q``, in [1/S, 1]; computed from log-weights (no
        overflow). NaN for a row whose weights are all zero or not finite.
    """
    if log_p_tilde.shape != log_q.shape or log_q.dim() != 2:
        raise ValueError(f"log_p_tilde and log_q must both be (B, S), got {tuple(log_p_tilde.shape)} and "
                         f"{tuple(log_q.shape)}")
    log_w = (log_p_tilde - log_q).double()
    S = log_w.shape[1]
    # ESS/S = exp(2 · logsumexp(log w) - logsumexp(2 log w)) / S
    ess = torch.exp(2 * torch.logsumexp(log_w, dim=1) - torch.logsumexp(2 * log_w, dim=1)) / S
    return torch.where(torch.isfinite(ess), ess, torch.full_like(ess, float("nan")))


@torch.no_grad()
def hypotheses_ess(model, batch: dict, num_samples: int = 200, b: float = 0.03) -> Tensor:
    """:func:`importance_ess` of a model's own target for one batch: S hypotheses at temperature 1,
    p̃ = the Laplace likelihood (scale ``b``, the objective's) of the visible keypoints × the prior
    (as the MHEntropy objective defines it) → (B,)."""
    from mhe.objectives import laplace_log_likelihood

    hyp = model.hypotheses(batch, num_samples, 1.0)
    log_p = laplace_log_likelihood(hyp.pred_obs, batch["obs"], batch["visible"], b) + hyp.log_prior
    return importance_ess(log_p, hyp.log_q)


@torch.no_grad()
def ground_truth_log_likelihood(model, batch: dict, params: Tensor | None = None) -> Tensor:
    """``log q(θ_gt | batch)`` per item in nats per dimension of the flow's variable → (B,).

    ``params`` default to ``batch["params"]``; the model's ``log_prob`` maps them to its own variable."""
    params = batch["params"] if params is None else params
    dims = getattr(model, "flow_dim", None) or getattr(model, "pose_dim", None) or params.shape[-1]
    return model.log_prob(batch, params) / dims


def calibration_curve(
    hypotheses: Tensor, truth: Tensor, mask: Tensor | None = None, alphas: Sequence[float] = DEFAULT_ALPHAS
) -> Tensor:
    """Fraction of ground-truth points inside the central α-region of the hypotheses, for each α.

    Args:
        hypotheses: (B, S, J, D) S hypotheses of J points (joints) in D dimensions.
        truth: (B, J, D) the ground truth.
        mask: (B, J) bool, which (item, joint) pairs count (e.g. the occluded joints); all when None.
        alphas: levels in (0, 1).

    Returns:
        (len(alphas),) float64: for each α, the fraction of counted pairs whose truth lies within the
        radius around the hypotheses' mean that holds ⌈α·S⌉ of the S hypotheses.
    """
    if hypotheses.dim() != 4 or truth.shape != (hypotheses.shape[0], *hypotheses.shape[2:]):
        raise ValueError(f"expected hypotheses (B, S, J, D) and truth (B, J, D), got {tuple(hypotheses.shape)} "
                         f"and {tuple(truth.shape)}")
    B, S, J, _ = hypotheses.shape
    if S < 2:
        raise ValueError("a calibration curve needs at least 2 hypotheses per item")
    alphas_t = torch.as_tensor(list(alphas), dtype=torch.float64)
    if ((alphas_t <= 0) | (alphas_t >= 1)).any():
        raise ValueError(f"alphas must lie in (0, 1), got {list(alphas)}")
    mask = torch.ones(B, J, dtype=torch.bool) if mask is None else mask.bool().cpu()
    if mask.shape != (B, J):
        raise ValueError(f"mask must be (B, J) = ({B}, {J}), got {tuple(mask.shape)}")
    h, t = hypotheses.double().cpu(), truth.double().cpu()
    centre = h.mean(1)  # (B, J, D)
    d_hyp = torch.linalg.vector_norm(h - centre[:, None], dim=-1).sort(dim=1).values  # (B, S, J)
    d_gt = torch.linalg.vector_norm(t - centre, dim=-1)  # (B, J)
    if not mask.any():
        return torch.full((len(alphas_t),), float("nan"), dtype=torch.float64)
    k = torch.ceil(alphas_t * S).long().clamp(1, S) - 1  # index of the radius holding ⌈αS⌉ hypotheses
    radius = d_hyp[:, k]  # (B, A, J)
    inside = d_gt[:, None] <= radius  # (B, A, J)
    return (inside & mask[:, None]).sum((0, 2)).double() / mask.sum()


def calibration_gap(curve: Tensor, alphas: Sequence[float] = DEFAULT_ALPHAS) -> float:
    """Mean absolute distance of a calibration curve from the diagonal (0 = calibrated)."""
    alphas_t = torch.as_tensor(list(alphas), dtype=torch.float64)
    if curve.shape != alphas_t.shape:
        raise ValueError(f"curve has {tuple(curve.shape)} values for {len(alphas_t)} alphas")
    return float((curve.double() - alphas_t).abs().mean())
