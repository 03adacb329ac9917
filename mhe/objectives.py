"""Training objectives as functions of (model, batch), shared by the toy arm, hands and bodies.

A *model* turns a batch into :class:`Hypotheses` (S samples of the stochastic parameters, their
log-density, predicted observations and prior) through three methods::

    model.hypotheses(batch, num_samples, temperature=1.0) -> Hypotheses   # S reparameterised samples
    model.mode(batch) -> Hypotheses                                       # S = 1, zero noise
    model.log_prob(batch, params (B, D)) -> (B,)                          # log q(params | batch)

A *batch* is a dict with ``"obs" (B, K, d)`` observed keypoints (d = 2 for 2D keypoints, d = 1 for
the toy arm's heights), ``"visible" (B, K)`` bool, and optionally ``"params" (B, D)`` ground-truth
parameters (NLL) and ``"joints_3d" (B, J, 3)`` (3D supervision; the model then puts its predicted
joints in :attr:`Hypotheses.joints_3d` ``(B, S, J, 3)``).

MHEntropy minimises KL(q || p) with p(θ | obs) ∝ p(obs | θ) p(θ): a Laplace likelihood on the
visible keypoints, a soft box/ball prior and the entropy of q, estimated from S reparameterised
samples. **Normalisation:** the log-likelihood is *summed* over visible keypoints and their
coordinates (never averaged), and only the batch B and hypotheses S are averaged. Averaging over
keypoints would raise the likelihood to a power 1/K and flatten the posterior the entropy term
spreads over, so the loss would no longer be KL(q || p) up to a constant. Every objective returns
``(loss, terms)`` with ``terms`` a dict of floats for logging.

A term whose weight is > 0 is always computed: when its input is missing (a batch key, a model output) the
objective raises :class:`MissingInputError` naming the term, its weight and the fix; it never skips the term.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial

import torch
from torch import Tensor

from mhe.hypotheses import Hypotheses, HypothesisModel, MissingInputError  # noqa: F401  (re-exported)
from mhe.priors import ball_prior, box_prior  # noqa: F401  (the priors objectives and models combine)
from mhe.utils import has_values


def _need_batch(batch: dict, key: str, term: str, weight: float, shape: str) -> None:
    """Raise :class:`MissingInputError` when ``term`` (weight > 0) lacks ``batch[key]``."""
    if key not in batch:
        raise MissingInputError(f"{term} (weight {weight:g}) needs batch[{key!r}] {shape}, which this batch lacks "
                                f"(it has {sorted(batch)}); set that weight to 0 or use data that provide {key!r}")


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


def labelled_3d(batch: dict, key: str = "joints_3d") -> Tensor:
    """(B, J) bool: the joints with a 3D label in ``batch[key]`` (B, J, 3): finite, in an item whose
    ``has_3d`` (when the batch has it) is true. Real files lack some (NaN there, see docs/formats.md)."""
    valid = torch.isfinite(batch[key]).all(-1)
    if "has_3d" in batch:
        valid = valid & batch["has_3d"].to(valid.device).bool().reshape(-1, 1)
    return valid


def labelled_pose(batch: dict) -> Tensor:
    """(B,) bool: the items with ground-truth SMPL / MANO parameters (``has_smpl`` when the batch has it, and
    finite ``params``, ``global_orient`` and ``betas`` where given)."""
    ok = torch.isfinite(batch["params"]).all(-1)
    for key in ("global_orient", "betas"):
        if key in batch:
            ok = ok & torch.isfinite(batch[key].to(ok.device)).reshape(len(ok), -1).all(-1)
    if "has_smpl" in batch:
        ok = ok & batch["has_smpl"].to(ok.device).bool().reshape(-1)
    return ok


def _without_missing_pose(batch: dict, ok: Tensor) -> dict:
    """``batch`` with the pose labels of the items outside ``ok`` set to 0 (never scored: masked by the caller;
    zero, not NaN, so that no NaN reaches a gradient through a masked branch)."""
    out = dict(batch)
    for key in ("params", "global_orient", "betas"):
        if key in batch:
            v = batch[key]
            out[key] = torch.where(ok.to(v.device).reshape(-1, *([1] * (v.dim() - 1))), v, v.new_zeros(()))
    return out


def _masked_item_mean(values: Tensor, ok: Tensor) -> Tensor:
    """Mean of values (B,) over the items in ok (B,) bool; 0 (with the graph kept) when there is none."""
    ok = ok.to(values.device)
    return torch.where(ok, values, values.new_zeros(())).sum() / ok.sum().clamp_min(1)


def _l1_3d(hyp: Hypotheses, batch: dict, w_3d: float = 1.0) -> Tensor:
    """Mean absolute 3D joint error over B, S, J and xyz (3D supervision), over the joints with a 3D label
    (:func:`labelled_3d`; 0 when the batch has none)."""
    _need_batch(batch, "joints_3d", "the 3D keypoint term w_3d", w_3d, "(B, J, 3)")
    pred = hyp.need("joints_3d", "the 3D keypoint term w_3d", w_3d)
    valid = labelled_3d(batch)
    if has_values(valid) and bool(valid.all()):  # without values (fake tensors): the general path below
        return (pred - batch["joints_3d"].unsqueeze(1)).abs().mean()
    keep = valid[:, None, :, None].to(pred.device)
    gt = torch.where(valid[..., None], batch["joints_3d"], 0.0).unsqueeze(1)
    err = torch.where(keep, (pred - gt).abs(), pred.new_zeros(()))
    return err.sum() / (valid.sum() * pred.shape[1] * pred.shape[-1]).clamp_min(1)


def _with_3d(
    loss: Tensor, terms: dict[str, float], hyp: Hypotheses, batch: dict, w_3d: float
) -> tuple[Tensor, dict[str, float]]:
    """Add the optional 3D L1 term (``w_3d > 0``) and log the total as ``terms["loss"]``."""
    if w_3d > 0:
        l1 = _l1_3d(hyp, batch, w_3d)
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


def renyi(
    model: HypothesisModel,
    batch: dict,
    num_samples: int = 10,
    b: float = 0.03,
    w_rec: float = 1.0,
    w_prior: float = 1.0,
    w_ent: float = 1.0,
    alpha: float = 0.5,
    w_3d: float = 0.0,
    temperature: float = 1.0,
) -> tuple[Tensor, dict[str, float]]:
    """The Rényi (α) bound (Li & Turner, 2016), a mass-covering relative of MHEntropy: minus the mean over B of
    L_α = 1/(1 - α) · log(1/S · Σ_s w_s^(1 - α)), log w = w_rec·log p(obs|θ) + w_prior·log p(θ) - w_ent·log q(θ)
    of S reparameterised samples; at unit weights an estimate (biased for finite S) of log Z - D_α(q || p(θ|obs)).
    ``alpha = 1`` is the MHEntropy loss; α < 1 weighs each sample's gradient by its normalised w^(1 - α), so
    samples where q undershoots the target pull q wider (α = 0: the importance-weighted bound).

    Terms: ``reconstruction``, ``prior``, ``entropy`` (as MHEntropy's), ``bound`` (the mean L_α), ``ess`` (the
    mean effective sample size of the normalised weights w^(1 - α), out of S), ``loss``."""
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0 (1 = reverse KL, 0 = importance weighted), got {alpha!r}")
    _check_batch(batch)
    hyp = model.hypotheses(batch, num_samples, temperature)
    if hyp.weights is not None:
        raise ValueError("the renyi objective takes equally weighted hypotheses; a model with model.flip_mixture "
                         "gives weighted ones (train it with mhentropy)")
    loglik = laplace_log_likelihood(hyp.pred_obs, batch["obs"], batch["visible"], b)
    log_w = w_rec * loglik + w_prior * hyp.log_prior - w_ent * hyp.log_q  # (B, S)
    S = log_w.shape[1]
    if alpha == 1.0:
        bound = log_w.mean(1)
        ess = torch.full_like(bound, float(S))
    else:
        scaled = (1.0 - alpha) * log_w
        bound = (torch.logsumexp(scaled, 1) - math.log(S)) / (1.0 - alpha)
        norm = torch.softmax(scaled.detach(), 1)
        ess = 1.0 / norm.square().sum(1)
    loss = -bound.mean()
    terms = {"reconstruction": -loglik.mean().item(), "prior": -hyp.log_prior.mean().item(),
             "entropy": -hyp.log_q.mean().item(), "bound": bound.mean().item(), "ess": ess.mean().item()}
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
    value = _nll_term(model, batch)
    loss = w_nll * value
    terms = {"nll": value.item()}
    if w_keypoints > 0:
        mode = model.mode(batch)
        kp = -laplace_log_likelihood(mode.pred_obs, batch["obs"], batch["visible"], b).mean()
        loss = loss + w_keypoints * kp
        terms["keypoints"] = kp.item()
    terms["loss"] = loss.item()
    return loss, terms


def _nll_term(model: HypothesisModel, batch: dict) -> Tensor:
    """-log q(params_gt | batch), the mean over the items with pose labels (:func:`labelled_pose`)."""
    ok = labelled_pose(batch)
    if has_values(ok) and bool(ok.all()):  # without values (fake tensors): the general path below
        return -model.log_prob(batch, batch["params"]).mean()
    clean = _without_missing_pose(batch, ok)
    return -_masked_item_mean(model.log_prob(clean, clean["params"]), ok)


def _keypoint_l1(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """ProHMR's keypoint loss: L1 summed over keypoints and coordinates (masked by ``weight (B, K)``: a bool
    mask selects, so a NaN target outside it never reaches the sum), per hypothesis ``(B, S)``."""
    err = (pred - target.unsqueeze(1)).abs().sum(-1)
    if weight is not None:
        if weight.dtype == torch.bool:
            err = torch.where(weight[:, None, :].to(err.device), err, err.new_zeros(()))
        else:
            err = err * weight.to(err.dtype)[:, None, :]
    return err.sum(-1)


def prohmr(
    model: HypothesisModel,
    batch: dict,
    num_samples: int = 2,
    w_nll: float = 1e-3,
    w_2d_mode: float = 0.01,
    w_2d_samples: float = 1e-3,
    w_3d_mode: float = 0.0,
    w_3d_samples: float = 0.0,
    w_params: float = 1e-3,
    w_betas: float = 5e-4,
    w_ortho: float = 0.1,
    w_prior: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:
    """ProHMR's objective, with its loss weights: NLL of the ground-truth pose, keypoint losses on the mode
    and on samples, a parameter loss on the mode and the 6D orthonormality term.

    - ``nll``: -log q(θ_gt | input) (needs ``batch["params"]`` and, with the rotation in the flow,
      ``batch["global_orient"]``);
    - ``kp2d_mode`` / ``kp2d_samples``: L1 of the **visible** 2D keypoints, in ProHMR's units (crop
      coordinates in [-0.5, 0.5]), summed over keypoints;
    - ``kp3d_mode`` / ``kp3d_samples``: L1 of the root-relative 3D keypoints in metres
      (:attr:`Hypotheses.joints_metric` against ``batch["joints_3d_mm"] / 1000``), summed over keypoints;
    - ``params``: squared error of the mode's flow variable against the ground truth's (ProHMR's SMPL
      parameter loss on the rotations' 6D columns) and ``betas`` of the shape;
    - ``ortho``: the 6D orthonormality deviation of the mode and the samples (:attr:`Hypotheses.orthonormality`);
    - ``prior``: -log p(θ) of the mode and the samples under the model's pose prior (``w_prior``, off by
      default). ProHMR keeps poses natural with a discriminator trained on mocap (weight 5e-4 on a GAN
      loss); here the model's prior (the joint limits and, with ``model.pose_prior: learned``, the mixture
      fitted on unpaired poses) stands in for it, at a weight chosen on validation.

    The defaults are ProHMR's published weights (3D terms off: the 2D-supervised setting; set
    ``w_3d_mode=0.05`` for its 3D setting). ``num_samples`` samples besides the mode (ProHMR: 2).
    Without pose labels (``w_nll = w_params = 0``, ProHMR's loss on images that have none) only the
    keypoint and orthonormality terms remain: the paper's "2D-visible supervision" setting of ProHMR.

    Every term with a weight > 0 is computed or refused: a missing input (``batch["params"]``, ``"betas"``,
    ``"joints_3d_mm"``, or a model without ``flow_target``, ``betas`` or ``orthonormality``) raises
    :class:`MissingInputError` naming the term and its weight; set that weight to 0 to drop the term.
    """
    labels = w_nll > 0 or w_params > 0
    _check_batch(batch)
    for key, w, term in (("params", w_nll, "the NLL term w_nll"), ("params", w_params, "the parameter term w_params"),
                         ("betas", w_betas, "the shape term w_betas"),
                         ("joints_3d_mm", w_3d_mode, "the mode's 3D keypoint term w_3d_mode"),
                         ("joints_3d_mm", w_3d_samples, "the samples' 3D keypoint term w_3d_samples")):
        if w > 0:
            _need_batch(batch, key, term, w, "(B, J, 3) root-relative in mm" if key == "joints_3d_mm" else "(B, D)")
    if w_params > 0 and not hasattr(model, "flow_target"):
        raise MissingInputError(f"the parameter term w_params (weight {w_params:g}) needs a model with flow_target "
                                f"(the flow variable of the ground truth), which {type(model).__name__} lacks; set "
                                "objective.w_params=0")
    mode = model.mode(batch)
    want_samples = w_2d_samples > 0 or w_3d_samples > 0
    hyp = model.hypotheses(batch, num_samples) if want_samples else None
    vis = batch["visible"].bool()
    loss = mode.pred_obs.new_zeros(())
    terms = {}
    posed = labelled_pose(batch) if labels or w_betas > 0 and "params" in batch else None
    if w_nll > 0:
        value = _nll_term(model, batch)
        loss, terms["nll"] = loss + w_nll * value, value.item()
    for name, w, h in (("kp2d_mode", w_2d_mode, mode), ("kp2d_samples", w_2d_samples, hyp)):
        if w > 0 and h is not None:
            kp = _keypoint_l1(h.pred_obs / 2, batch["obs"] / 2, vis).mean()
            loss, terms[name] = loss + w * kp, kp.item()
    for name, w, h in (("kp3d_mode", w_3d_mode, mode), ("kp3d_samples", w_3d_samples, hyp)):
        if w > 0 and h is not None:
            joints = h.need("joints_metric", f"the 3D keypoint term {name} (w_3d_{name[5:]})", w)
            labelled = labelled_3d(batch, "joints_3d_mm")
            target = batch["joints_3d_mm"].to(h.pred_obs) / 1000.0
            if has_values(labelled) and bool(labelled.all()):  # without values: the general path below
                kp = _keypoint_l1(joints, target).mean()
            else:  # joints without a 3D label (NaN) are left out, as invisible ones in 2D
                kp = _keypoint_l1(joints, torch.where(labelled[..., None], target, 0.0), labelled).mean()
            loss, terms[name] = loss + w * kp, kp.item()
    if w_params > 0:
        assert posed is not None  # computed whenever w_params > 0
        every = has_values(posed) and bool(posed.all())  # without values (fake tensors): the general path
        clean = batch if every else _without_missing_pose(batch, posed)
        # flow_target is outside the protocol (checked above): type: ignore[attr-defined]
        target = model.flow_target(clean, clean["params"]).to(mode.params)  # type: ignore[attr-defined]
        per_item = (mode.params[:, 0] - target).square().sum(-1)
        err = per_item.mean() if every else _masked_item_mean(per_item, posed)
        loss, terms["params"] = loss + w_params * err, err.item()
    if w_betas > 0:
        pred_betas = mode.need("betas", "the shape term w_betas", w_betas)
        ok = posed if posed is not None else torch.isfinite(batch["betas"]).all(-1)
        betas = batch["betas"].to(mode.params)
        if has_values(ok) and bool(ok.all()):  # without values (fake tensors): the general path below
            err = (pred_betas - betas).square().sum(-1).mean()
        else:
            betas = torch.where(ok.to(betas.device)[:, None], betas, 0.0)
            err = _masked_item_mean((pred_betas - betas).square().sum(-1), ok)
        loss, terms["betas"] = loss + w_betas * err, err.item()
    if w_ortho > 0:
        ortho = mode.need("orthonormality", "the orthonormality term w_ortho", w_ortho).mean()
        if hyp is not None:
            ortho = (ortho + hyp.need("orthonormality", "the orthonormality term w_ortho", w_ortho).mean()) / 2
        loss, terms["ortho"] = loss + w_ortho * ortho, ortho.item()
    if w_prior > 0:
        prior = -mode.log_prior.mean()
        if hyp is not None:
            prior = (prior + -hyp.log_prior.mean()) / 2
        loss, terms["prior"] = loss + w_prior * prior, prior.item()
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
    "renyi": renyi,
    "nll": nll,
    "prohmr": prohmr,
    "min_of_n": min_of_n,
    "deterministic": deterministic,
}


def get_objective(name: str) -> Objective:
    """The objective called ``name`` (a key of :data:`OBJECTIVES`), with a helpful error otherwise."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}") from None


_MHENTROPY_WEIGHTS = {"b": 0.03, "w_rec": 1.0, "w_prior": 1.0, "w_ent": 1.0, "w_3d": 0.0, "temperature": 1.0}

#: What each objective of :data:`OBJECTIVES` takes besides ``(model, batch, num_samples)``: keyword -> default.
#: The trainer passes a config's weight only to an objective that declares it here (it reads no signatures) and
#: tempering ramps the declared ``w_rec`` and ``w_prior``; ``tests/test_training_loop.py`` checks that every
#: declaration agrees with its function's keyword parameters.
OBJECTIVE_WEIGHTS: dict[str, dict[str, float]] = {
    "mhentropy": _MHENTROPY_WEIGHTS,
    "no_entropy": {**_MHENTROPY_WEIGHTS, "w_ent": 0.0},
    "no_reconstruction": {**_MHENTROPY_WEIGHTS, "w_rec": 0.0},
    "no_prior": {**_MHENTROPY_WEIGHTS, "w_prior": 0.0},
    "renyi": {**_MHENTROPY_WEIGHTS, "alpha": 0.5},
    "nll": {"w_nll": 1.0, "w_keypoints": 0.0, "b": 0.03},
    "prohmr": {"w_nll": 1e-3, "w_2d_mode": 0.01, "w_2d_samples": 1e-3, "w_3d_mode": 0.0, "w_3d_samples": 0.0,
               "w_params": 1e-3, "w_betas": 5e-4, "w_ortho": 0.1, "w_prior": 0.0},
    "min_of_n": {"b": 0.03, "w_rec": 1.0, "w_prior": 1.0, "w_3d": 0.0, "temperature": 1.0},
    "deterministic": {"b": 0.03, "w_rec": 1.0, "w_prior": 1.0, "w_3d": 0.0},
}

#: The weights ``train.temper_steps`` ramps from 0 to their full values (an objective must declare both).
TEMPERED_WEIGHTS = ("w_rec", "w_prior")


def objective_weights(name: str) -> dict[str, float]:
    """The keywords (with defaults) objective ``name`` declares in :data:`OBJECTIVE_WEIGHTS`; a copy."""
    get_objective(name)  # an unknown name names the known ones
    if name not in OBJECTIVE_WEIGHTS:
        raise ValueError(f"objective {name!r} declares no weights: register it with register_objective(name, fn, "
                         "weights), where weights maps each keyword it takes besides num_samples to its default")
    return dict(OBJECTIVE_WEIGHTS[name])


def register_objective(name: str, fn: Objective, weights: Mapping[str, float], overwrite: bool = False) -> None:
    """Add ``fn`` to :data:`OBJECTIVES` under ``name`` with the keywords it takes besides ``(model, batch,
    num_samples)`` and their defaults (``{}`` for none), so that configs can name it."""
    if name in OBJECTIVES and not overwrite:
        raise ValueError(f"objective {name!r} is already registered; pass overwrite=True to replace it")
    OBJECTIVES[name] = fn
    OBJECTIVE_WEIGHTS[name] = {k: float(v) for k, v in weights.items()}
