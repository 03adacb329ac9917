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
* **Is the spread calibrated?** :func:`calibration_curve`: for each level q, the fraction of ground-truth
  joints that fall inside the model's central q-region of its hypotheses for that joint; ideal is the
  diagonal. The protocol is cGNF's (Pierzchlewicz et al.): the central q-region of a joint is the ball
  around the hypotheses' coordinate-wise median that holds a fraction q of them, at q = 0.05 … 0.95
  (:data:`CALIBRATION_LEVELS`). If the truth is distributed like one more hypothesis, it falls inside
  with probability q (a rank argument, whatever the distribution's shape). :func:`calibration_gap` is the
  mean absolute distance of a curve from the diagonal: the *calibration score*, 0 when calibrated.

:func:`diagnose_model` puts the three together with selection by extra evidence (:mod:`mhe.selection`)
for one model over a data loader, on all items and on the ambiguous subset (bodies: the data's
``ambiguous`` flag; hands: :func:`mhe.data.occluded_hands`), one row each. How widely to sample
for selection is a setting like any other: :func:`selection_sweep` measures selection at several
temperatures on a (validation) loader. The same holds for the weight of the depth-flip mixture
(``model.flip_temperature``): :func:`flip_calibration_sweep` scores each temperature on a (validation) loader.
And for calibration itself: :func:`calibration_sweep` scores the spread at each sampling temperature, so that a
temperature can be chosen on validation (post-hoc calibration) and reported beside T = 1.

Every function here takes a model and data. Which models, which items and which settings make the committed
tables in ``figures/``, and reading the choices back from them, is the lab's business:
``mhe.lab.diagnostics_runs`` (``diagnostics_table``, ``test_split``, ``selection_temperatures``,
``flip_temperature_choice``), run by ``tools/diagnostics.py``, ``tools/selection_validation.py`` and
``tools/flip_calibration.py``.

How many hypotheses are worth drawing? :func:`best_of_s` turns the errors of S hypotheses into the expected
best-of-s error for every s up to S (the BH-MPJPE of s hypotheses), and :func:`best_of_s_table` measures that
curve for several models on a few items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = [
    "BOTH_TILTS",
    "CALIBRATION_LEVELS",
    "DEFAULT_ALPHAS",
    "SELECTION_MEASURES",
    "best_of_s",
    "best_of_s_table",
    "calibration_curve",
    "calibration_gap",
    "calibration_sweep",
    "choose_temperature",
    "diagnose_model",
    "flip_calibration_sweep",
    "ground_truth_log_likelihood",
    "hypotheses_ess",
    "importance_ess",
    "joint_masks",
    "selection_sweep",
]

#: cGNF's calibration levels q = 0.05 … 0.95: the package's calibration protocol (every table and figure).
CALIBRATION_LEVELS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))
#: the levels :func:`calibration_curve` and :func:`calibration_gap` use unless told otherwise.
DEFAULT_ALPHAS = CALIBRATION_LEVELS


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
    hypotheses: Tensor, truth: Tensor, mask: Tensor | None = None, alphas: Sequence[float] = DEFAULT_ALPHAS,
    centre: Literal["median", "mean"] = "median",
) -> Tensor:
    """Fraction of ground-truth points inside the central q-region of the hypotheses, for each level q.

    Args:
        hypotheses: (B, S, J, D) S hypotheses of J points (joints) in D dimensions.
        truth: (B, J, D) the ground truth.
        mask: (B, J) bool, which (item, joint) pairs count (e.g. the occluded joints); all when None.
        alphas: levels in (0, 1) (default: cGNF's q = 0.05 … 0.95).
        centre: the centre of the balls: the hypotheses' coordinate-wise ``"median"`` (cGNF's protocol,
            the default) or their ``"mean"``.

    Returns:
        (len(alphas),) float64: for each q, the fraction of counted pairs whose truth lies within the
        radius around the centre that holds ⌈q·S⌉ of the S hypotheses.
    """
    if hypotheses.dim() != 4 or truth.shape != (hypotheses.shape[0], *hypotheses.shape[2:]):
        raise ValueError(f"expected hypotheses (B, S, J, D) and truth (B, J, D), got {tuple(hypotheses.shape)} "
                         f"and {tuple(truth.shape)}")
    B, S, J, _ = hypotheses.shape
    if S < 2:
        raise ValueError("a calibration curve needs at least 2 hypotheses per item")
    if centre not in ("median", "mean"):
        raise ValueError(f"centre must be 'median' or 'mean', got {centre!r}")
    alphas_t = torch.as_tensor(list(alphas), dtype=torch.float64)
    if ((alphas_t <= 0) | (alphas_t >= 1)).any():
        raise ValueError(f"alphas must lie in (0, 1), got {list(alphas)}")
    mask = torch.ones(B, J, dtype=torch.bool) if mask is None else mask.bool().cpu()
    if mask.shape != (B, J):
        raise ValueError(f"mask must be (B, J) = ({B}, {J}), got {tuple(mask.shape)}")
    if not mask.any():
        return torch.full((len(alphas_t),), float("nan"), dtype=torch.float64)
    h, t = hypotheses.double().cpu(), truth.double().cpu()
    mid = h.mean(1) if centre == "mean" else _median(h)  # (B, J, D)
    d_hyp = torch.linalg.vector_norm(h - mid[:, None], dim=-1).sort(dim=1).values  # (B, S, J)
    d_gt = torch.linalg.vector_norm(t - mid, dim=-1)  # (B, J)
    k = torch.ceil(alphas_t * S - 1e-9).long().clamp(1, S) - 1  # index of the radius holding ⌈qS⌉ hypotheses
    radius = d_hyp[:, k]  # (B, A, J)
    inside = d_gt[:, None] <= radius  # (B, A, J)
    return (inside & mask[:, None]).sum((0, 2)).double() / mask.sum()


def joint_masks(visible: Tensor, root: int) -> tuple[Tensor, Tensor]:
    """The (item, joint) pairs calibration is scored on, from ``visible (N, J)``: the occluded and the visible
    joints, both without the root (the origin of root-relative joints, which never moves) → two (N, J) bools."""
    visible = torch.as_tensor(visible).bool()
    not_root = torch.ones_like(visible)
    not_root[..., root] = False
    return ~visible & not_root, visible & not_root


def _median(h: Tensor) -> Tensor:
    """The coordinate-wise median over dim 1 of (B, S, ...) → (B, ...); for an even S the mean of the middle two."""
    S = h.shape[1]
    return h.sort(dim=1).values[:, [(S - 1) // 2, S // 2]].mean(1)


def calibration_gap(curve: Tensor, alphas: Sequence[float] = DEFAULT_ALPHAS) -> float:
    """Mean absolute distance of a calibration curve from the diagonal (0 = calibrated)."""
    alphas_t = torch.as_tensor(list(alphas), dtype=torch.float64)
    if curve.shape != alphas_t.shape:
        raise ValueError(f"curve has {tuple(curve.shape)} values for {len(alphas_t)} alphas")
    return float((curve.double() - alphas_t).abs().mean())


def best_of_s(errors: Tensor, sizes: Sequence[int]) -> Tensor:
    """Expected error of the best of s hypotheses, for each s of ``sizes``, from the errors of S i.i.d. ones.

    Args:
        errors: (B, S) the error of each of S hypotheses drawn independently per item (e.g. MPJPE, mm).
        sizes: the s to report, each in [1, S].

    Returns:
        (len(sizes),) float64: for each s, the mean over items of the minimum error among s hypotheses. The S
        hypotheses are cut into ⌊S/s⌋ disjoint groups of s and the groups' minima averaged, an unbiased
        estimate of E[min of s] that uses every hypothesis (s = 1 gives the mean error, s = S the BH error).
    """
    if errors.dim() != 2:
        raise ValueError(f"errors must be (B, S), got {tuple(errors.shape)}")
    B, S = errors.shape
    out = []
    for s in sizes:
        s = int(s)
        if not 1 <= s <= S:
            raise ValueError(f"every size must lie in [1, S = {S}], got {s}")
        groups = S // s
        out.append(errors[:, :groups * s].double().reshape(B, groups, s).min(-1).values.mean())
    return torch.stack(out) if out else torch.zeros(0, dtype=torch.float64)


@torch.no_grad()
def best_of_s_table(models: Mapping[str, Any], dataset: Any, sizes: Sequence[int], *, temperature: float = 0.8,
                    seed: int = 0, batch_size: int = 4):
    """:func:`best_of_s` of the 3D MPJPE (mm) of each model on ``dataset`` → a DataFrame with columns ``model``,
    ``S`` and ``mpjpe_bh`` (one row per model and size), and ``mpjpe_mode``, the model's mode (its zero-noise
    hypothesis; NaN when the model has none). Each model draws max(sizes) hypotheses per item at
    ``temperature`` (seeded by ``seed``); memory grows as ``batch_size`` × max(sizes)."""
    import pandas as pd
    from torch.utils.data import DataLoader

    from mhe.evaluation import collect_predictions
    from mhe.metrics import mpjpe

    top = max(int(s) for s in sizes)
    rows = []
    for name, model in models.items():
        p = collect_predictions(model, DataLoader(dataset, batch_size=batch_size), num_samples=top,
                                temperature=temperature, seed=seed)
        curve = best_of_s(mpjpe(p["pred_xyz"], p["gt_xyz"]), sizes)
        mode = float(mpjpe(p["mode_xyz"], p["gt_xyz"]).mean()) if "mode_xyz" in p else float("nan")
        rows += [{"model": name, "S": int(s), "mpjpe_bh": float(v), "mpjpe_mode": mode}
                 for s, v in zip(sizes, curve, strict=True)]
    return pd.DataFrame(rows)


@torch.no_grad()
def calibration_sweep(
    model: Any,
    loader: Iterable[dict],
    temperatures: Sequence[float],
    *,
    num_samples: int = 200,
    levels: Sequence[float] = CALIBRATION_LEVELS,
    seed: int = 0,
) -> list[dict[str, float]]:
    """The calibration of a model's hypotheses at each sampling temperature (post-hoc calibration).

    For each T of ``temperatures``, ``num_samples`` hypotheses per item at T (seeded by ``seed``) give one
    row: ``temperature``, ``n_items``; the :func:`calibration_gap` (the score) and the fraction inside the
    central 90 % region of the occluded (``score_occ``, ``inside_90_occ``) and the visible (``score_vis``,
    ``inside_90_vis``) non-root joints; ``spread_mm_occ``, the occluded joints' mean distance of a hypothesis to
    their coordinate-wise median; and the 3D MPJPE (mm) of the best hypothesis (``mpjpe_bh``) and of an average
    one (``mpjpe_mean``). A row's scores are NaN where no joint of that kind is counted."""
    from mhe.evaluation import collect_predictions
    from mhe.metrics import mpjpe

    if any(not t > 0 for t in temperatures):
        raise ValueError(f"temperatures must be positive, got {list(temperatures)}")
    root = model.spec.root
    rows = []
    for t in temperatures:
        p = collect_predictions(model, loader, num_samples=num_samples, temperature=float(t), seed=seed)
        h, truth = p["pred_xyz"], p["gt_xyz"]
        occluded, visible = joint_masks(p["visible"], root)
        row = {"temperature": float(t), "n_items": int(h.shape[0])}
        for name, mask in (("occ", occluded), ("vis", visible)):
            curve = calibration_curve(h, truth, mask, (*levels, 0.9))  # 0.9 last: the 90 % region's share
            row[f"score_{name}"] = calibration_gap(curve[:-1], levels)
            row[f"inside_90_{name}"] = float(curve[-1])
        spread = torch.linalg.vector_norm(h.double() - _median(h.double())[:, None], dim=-1).mean(1)  # (N, J)
        row["spread_mm_occ"] = float(spread[occluded].mean()) if occluded.any() else float("nan")
        errors = mpjpe(h, truth)
        row["mpjpe_bh"] = float(errors.min(1).values.mean())
        row["mpjpe_mean"] = float(errors.mean())
        rows.append(row)
    return rows


def choose_temperature(temperatures: Sequence[float], scores: Sequence[float]) -> float:
    """The temperature of the lowest calibration score (post-hoc calibration, chosen on validation); scores
    within 1e-12 of it tie, and the tie goes to the temperature nearest 1 (the flow's own spread)."""
    t, s = torch.as_tensor(list(temperatures), dtype=torch.float64), torch.as_tensor(list(scores), dtype=torch.float64)
    if t.shape != s.shape or not len(t):
        raise ValueError(f"need one score per temperature, got {len(t)} temperatures and {len(s)} scores")
    tied = s <= s.nan_to_num(float("inf")).min() + 1e-12
    return float(t[tied][(t[tied] - 1.0).abs().argmin()])


def _calib_columns(curve: Tensor, alphas: Sequence[float], prefix: str) -> dict[str, float]:
    return {f"{prefix}_{a:g}": float(v) for a, v in zip(alphas, curve, strict=True)}


@torch.no_grad()
def diagnose_model(
    model: Any,
    loader: Iterable[dict],
    *,
    subset: Callable[[Tensor], Tensor] | None = None,
    subset_name: str = "ambiguous",
    b: float = 0.03,
    num_samples: int = 200,
    temperature: float = 0.8,
    calibration_samples: int = 200,
    depth_joints: Sequence[int] = (),
    view_angle: float = 90.0,
    noise_mm: float = 0.0,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    seed: int = 0,
) -> list[dict[str, float | str]]:
    """Posterior diagnostics and selection by extra evidence of one model, on all items and on a subset.

    Args:
        model: a :class:`mhe.models.multi_hypothesis.MultiHypothesisModel` (hand or body).
        loader: the items, in batches (``mhe.evaluation.EVAL_BATCH_SIZE`` for the official sampling).
        subset: ``visible (N, J) -> (N,) bool`` picking the ambiguous items; ``None``: the data's own
            ``ambiguous`` flag (bodies).
        subset_name: the ``subset`` value of the second row.
        b: the Laplace scale of the target whose ESS is measured (the MHEntropy objective's).
        num_samples, temperature: the sampling the selection works on (the official evaluation's, or the
            temperature chosen for selection on the validation split:
            ``mhe.lab.diagnostics_runs.selection_temperatures``).
        calibration_samples: hypotheses at temperature 1 for the ESS and the calibration curve.
        depth_joints: the joints whose depths :func:`mhe.selection.depth_scores` is given.
        view_angle: the second view, turned about the first camera's y axis (90°: a side view).
        noise_mm: the noise on the noisy second view's keypoints (a second row of selection).
        alphas: the calibration levels.
        seed: every random generator is seeded with it (the sampling and the noise).

    Returns:
        Two dicts, ``subset`` "all" then ``subset_name``, each with ``n_items``, ``temperature``; ``ess``
        (mean ESS / S of :func:`hypotheses_ess`), ``gt_loglik_per_dim`` (mean :func:`ground_truth_log_likelihood`),
        ``calibration_gap_occ`` / ``calibration_gap_vis`` (occluded / visible non-root joints, 3D) and the
        occluded joints' curve ``calib_occ_<α>`` (all NaN for a deterministic model); the MPJPE (mm) of the
        ``mode``, the ``mean`` hypothesis (a random pick on average), the ``oracle`` (BH-MPJPE) and of the
        hypothesis selected by the second view (``selected_side_view``), by the noisy second view
        (``selected_side_view_noisy``) and by the joints' depths (``selected_depths``).
    """
    from mhe.evaluation import collect_predictions
    from mhe.rng import isolated_rng

    root = model.spec.root
    deterministic = bool(getattr(model, "deterministic", False))
    ess, ll = [], []
    if not deterministic:
        with isolated_rng(seed):
            for batch in loader:
                ess.append(hypotheses_ess(model, batch, num_samples=calibration_samples, b=b))
                ll.append(ground_truth_log_likelihood(model, batch))
        p1 = collect_predictions(model, loader, num_samples=calibration_samples, temperature=1.0, seed=seed)
    p = collect_predictions(model, loader, num_samples=num_samples, temperature=temperature, seed=seed)
    pick = p["ambiguous"].bool() if subset is None else subset(p["visible"]).bool()
    occluded, visible = joint_masks(p["visible"], root)
    side, noisy, depth = _evidence_scores(p, view_angle, noise_mm, depth_joints, seed)
    rows = []
    for name, keep in (("all", torch.ones_like(pick)), (subset_name, pick)):
        row: dict[str, float | str] = {"subset": name, "n_items": int(keep.sum()), "temperature": float(temperature)}
        nan = float("nan")
        if deterministic or not keep.any():
            row.update({"ess": nan, "gt_loglik_per_dim": nan, "calibration_gap_occ": nan, "calibration_gap_vis": nan})
            row.update({f"calib_occ_{a:g}": nan for a in alphas})
        else:
            row["ess"] = float(torch.cat(ess)[keep].nanmean())
            row["gt_loglik_per_dim"] = float(torch.cat(ll)[keep].double().mean())
            curve = calibration_curve(p1["pred_xyz"][keep], p1["gt_xyz"][keep], occluded[keep], alphas)
            row["calibration_gap_occ"] = calibration_gap(curve, alphas)
            row["calibration_gap_vis"] = calibration_gap(
                calibration_curve(p1["pred_xyz"][keep], p1["gt_xyz"][keep], visible[keep], alphas), alphas)
            row.update(_calib_columns(curve, alphas, "calib_occ"))
        row.update(_selection_columns(p, keep, side, noisy, depth))
        rows.append(row)
    return rows


def _evidence_scores(p: dict, view_angle: float, noise_mm: float, depth_joints: Sequence[int],
                     seed: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """The scores ``(N, S)`` of the predictions ``p`` by the second view, by the noisy second view and by
    the joints' depths (``None`` without depth joints)."""
    from mhe import selection as sel

    rotation = sel.view_rotation(view_angle)
    side = sel.second_view_scores(p["pred_xyz"], p["gt_xyz"], rotation)
    noisy = sel.second_view_scores(p["pred_xyz"], p["gt_xyz"], rotation, noise_mm=noise_mm,
                                   generator=torch.Generator().manual_seed(seed))
    depth = sel.depth_scores(p["pred_xyz"], p["gt_xyz"], depth_joints) if depth_joints else None
    return side, noisy, depth


SELECTION_MEASURES = ("mode", "mean", "oracle", "selected_side_view", "selected_side_view_noisy", "selected_depths")


def _selection_columns(p: dict, keep: Tensor, side: Tensor, noisy: Tensor, depth: Tensor | None) -> dict[str, float]:
    """MPJPE (mm) over the items ``keep`` of the mode, the mean hypothesis, the oracle and the hypotheses
    selected by each score ``(N, S)`` (NaN where there is no item or no score): :data:`SELECTION_MEASURES`."""
    from mhe import selection as sel

    if not keep.any():
        return {k: float("nan") for k in SELECTION_MEASURES}
    xyz, gt = p["pred_xyz"][keep], p["gt_xyz"][keep]
    report = sel.selection_report(xyz, gt, side[keep], p["mode_xyz"][keep])
    return {"mode": report["mpjpe_mode"], "mean": report["mpjpe_mean"], "oracle": report["mpjpe_bh"],
            "selected_side_view": report["mpjpe_selected"],
            "selected_side_view_noisy": sel.selection_report(xyz, gt, noisy[keep])["mpjpe_selected"],
            "selected_depths": (sel.selection_report(xyz, gt, depth[keep])["mpjpe_selected"]
                                if depth is not None else float("nan"))}


def selection_sweep(
    model: Any,
    loader: Iterable[dict],
    temperatures: Sequence[float],
    subsets: Mapping[str, Callable[[Tensor], Tensor] | None],
    *,
    num_samples: int = 200,
    depth_joints: Sequence[int] = (),
    view_angle: float = 90.0,
    noise_mm: float = 0.0,
    seed: int = 0,
) -> list[dict[str, float | str]]:
    """Selection by extra evidence (as in :func:`diagnose_model`) at each sampling temperature: the setting
    to choose on the validation split. ``subsets`` maps a name to ``visible (N, J) -> (N,) bool`` (``None``:
    the data's ``ambiguous`` flag; ``lambda v: torch.ones(len(v), dtype=torch.bool)``: every item). One dict
    per (temperature, subset): ``temperature``, ``subset``, ``n_items`` and :data:`SELECTION_MEASURES`."""
    from mhe.evaluation import collect_predictions

    rows: list[dict[str, float | str]] = []
    for t in temperatures:
        p = collect_predictions(model, loader, num_samples=num_samples, temperature=float(t), seed=seed)
        side, noisy, depth = _evidence_scores(p, view_angle, noise_mm, depth_joints, seed)
        for name, subset in subsets.items():
            keep = (p["ambiguous"] if subset is None else subset(p["visible"])).bool()
            rows.append({"temperature": float(t), "subset": name, "n_items": int(keep.sum()),
                         **_selection_columns(p, keep, side, noisy, depth)})
    return rows


# a tilt "has hypotheses" when its weight is at least this (2 of the official 200)
BOTH_TILTS = 0.01

# the columns of evaluate_model that flip_calibration_sweep keeps beside the log-likelihood
_FLIP_COLUMNS = ("mpjpe_bh", "mpjpe_mean", "mpjpe_mode", "ah", "rd_mm", "plausible", "flip_rate", "mpjpe_bh_flip",
                 "mpjpe_bh_noflip", "flip_gap")


def flip_calibration_sweep(
    model: Any,
    loader: Iterable[dict],
    flip_temperatures: Sequence[float],
    *,
    num_samples: int = 200,
    temperature: float = 0.8,
    seed: int = 0,
    metrics: bool = True,
) -> list[dict[str, float]]:
    """Temperature scaling of a flip-mixture model's branch weight, on a (validation) loader.

    For each ``τ`` of ``flip_temperatures`` the model's eval-mode ``flip_temperature`` is set to τ (and put
    back afterwards) and one row is returned: ``flip_temperature``, ``n_items``, ``gt_log_lik`` (the mean
    of :func:`ground_truth_log_likelihood`, nats per dimension: the criterion, the higher the better calibrated),
    ``flipped_weight`` (the mean P(flipped)), ``both_tilts`` (the share of items whose less likely tilt has a
    weight of at least :data:`BOTH_TILTS`: two hypotheses in 200) and, with ``metrics``, the official sampling's
    BH / mean / mode MPJPE, ``rd_mm``, ``plausible`` and the depth-flip split (:func:`mhe.evaluation.evaluate_model`
    with ``num_samples`` hypotheses at ``temperature``, seeded by ``seed``), AH included: hypotheses on the
    tilt a hand's weight had shut out may explain its visible keypoints worse. Only the branch weight changes with τ:
    each branch's flow density and samples stay the model's."""
    from mhe.evaluation import evaluate_model

    if not getattr(model, "flip_mixture", False):
        raise ValueError("flip_calibration_sweep needs a model with the depth-flip mixture (model.flip_mixture: true)")
    if any(not t > 0 for t in flip_temperatures):
        raise ValueError(f"flip temperatures must be positive, got {list(flip_temperatures)}")
    was, mode = model.flip_temperature, model.training
    model.eval()
    rows = []
    try:
        for tau in flip_temperatures:
            model.flip_temperature = float(tau)
            ll, weight, both, n = 0.0, 0.0, 0, 0
            with torch.no_grad():
                for batch in loader:
                    ll += float(ground_truth_log_likelihood(model, batch).double().sum())
                    p1 = model.flip_log_weights(model.context(batch))[1].exp().double()
                    weight += float(p1.sum())
                    both += int((torch.minimum(p1, 1 - p1) >= BOTH_TILTS).sum())
                    n += len(batch["visible"])
            row = {"flip_temperature": float(tau), "n_items": n, "gt_log_lik": ll / n, "flipped_weight": weight / n,
                   "both_tilts": both / n}
            if metrics:
                scores = evaluate_model(model, loader, num_samples=num_samples, temperature=temperature, seed=seed)
                row.update({k: scores[k] for k in _FLIP_COLUMNS})
            rows.append(row)
    finally:
        model.flip_temperature = was
        model.train(mode)
    return rows
