"""The paper's two-link arm: its geometry and exact inverse (:class:`TwoLinkArm`), a conditional flow over its
angles that implements the :mod:`mhe.objectives` model protocol (:class:`ArmModel`), and its training
(:func:`fit_arm`, with the aids of :class:`ArmOptions` and the score-function estimator
:func:`score_function_loss`); see the package docstring of :mod:`mhe.toy`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mhe.flows import ConditionalFlow
from mhe.objectives import Hypotheses, box_prior, get_objective, laplace_log_likelihood
from mhe.training import LossFn, Schedule, adam, fit, recursive_cosine_lr
from mhe.utils import seed_everything

# -- the two-link arm ---------------------------------------------------------------------------


class TwoLinkArm:
    """The planar two-link arm (unit links) and its exact inverse from keypoint heights.

    Angles ``(..., 2)`` are (α1, α2); the prior support is α1 ∈ [-π/2, π/2], α2 ∈ [-π, π].
    """

    #: Prior box half-widths of (α1, α2).
    HALF_WIDTH = (math.pi / 2, math.pi)

    @staticmethod
    def _check(angles: Tensor, name: str = "angles") -> None:
        if angles.shape[-1:] != (2,):
            raise ValueError(f"{name} must have shape (..., 2), got {tuple(angles.shape)}")

    def keypoints(self, angles: Tensor) -> Tensor:
        """Elbow and tip positions (..., 2, 2) (keypoint, xy) for angles (..., 2)."""
        self._check(angles)
        a1, a12 = angles[..., 0], angles[..., 0] + angles[..., 1]
        elbow = torch.stack([a1.sin(), a1.cos()], -1)
        tip = elbow + torch.stack([a12.sin(), a12.cos()], -1)
        return torch.stack([elbow, tip], -2)

    def heights(self, angles: Tensor) -> Tensor:
        """The observation (elbow_y, tip_y): (..., 2) for angles (..., 2)."""
        self._check(angles)
        a1 = angles[..., 0]
        return torch.stack([a1.cos(), a1.cos() + (a1 + angles[..., 1]).cos()], -1)

    def solutions(self, heights: Tensor) -> Tensor:
        """The four exact solutions (..., 4, 2) for heights (..., 2), inside the prior support.

        Order: (α1 ≥ 0, tip +), (α1 ≥ 0, tip -), (α1 ≤ 0, tip +), (α1 ≤ 0, tip -), where "tip ±" is
        the sign of the tip link's absolute angle α1 + α2. Heights outside the reachable set
        (elbow_y ∈ [0, 1], tip_y - elbow_y ∈ [-1, 1]) are clamped onto it, so noisy observations
        get the solutions of the nearest reachable heights.
        """
        self._check(heights, "heights")
        # elbow_y = cos α1 with α1 ∈ [-π/2, π/2]  =>  α1 = ±acos(elbow_y).
        a1 = heights[..., 0].clamp(0.0, 1.0).acos()
        # tip_y - elbow_y = cos(α1 + α2)  =>  α1 + α2 = ±acos(·).
        a12 = (heights[..., 1] - heights[..., 0]).clamp(-1.0, 1.0).acos()
        sols = []
        for s1 in (1.0, -1.0):
            for s12 in (1.0, -1.0):
                alpha1 = s1 * a1
                alpha2 = s12 * a12 - alpha1
                # Wrap α2 into [-π, π] (it is defined modulo 2π).
                alpha2 = torch.atan2(alpha2.sin(), alpha2.cos())
                sols.append(torch.stack([alpha1, alpha2], -1))
        return torch.stack(sols, -2)

    def log_prior(self, angles: Tensor, weight: float = 300.0) -> Tensor:
        """Soft box log-prior (...,) on α1 ∈ [-π/2, π/2], α2 ∈ [-π, π] for angles (..., 2)."""
        self._check(angles)
        return box_prior(angles, angles.new_tensor(self.HALF_WIDTH), weight)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n angle pairs (n, 2) uniform on the prior box."""
        u = torch.rand(n, 2, generator=generator) * 2 - 1
        return u * torch.tensor(self.HALF_WIDTH)


def arm_batch(heights: Tensor, angles: Tensor | None = None) -> dict[str, Tensor]:
    """An objectives batch from heights (B, 2): ``obs`` (B, 2, 1), ``visible`` (B, 2) all True,
    and ``params`` (B, 2) when ground-truth ``angles`` are given."""
    if heights.dim() != 2 or heights.shape[-1] != 2:
        raise ValueError(f"heights must have shape (B, 2), got {tuple(heights.shape)}")
    batch = {
        "obs": heights.unsqueeze(-1),
        "visible": torch.ones(heights.shape, dtype=torch.bool, device=heights.device),
    }
    if angles is not None:
        batch["params"] = angles
    return batch


class ArmModel(nn.Module):
    """A conditional flow q(α | heights) with the two-link arm as its "body model".

    Implements the :mod:`mhe.objectives` model protocol: the flow's samples are the angles
    ``params (B, S, 2)``, ``pred_obs`` are their heights ``(B, S, 2, 1)``, ``log_prior`` the soft
    box, ``keypoints`` the elbow and tip ``(B, S, 2, 2)``.

    The flow works in scaled coordinates y with α = M y, a fixed linear map: with ``absolute``
    the flow's second coordinate is the tip link's absolute angle α1 + α2 (there the four
    solutions are the product (±acos h1) × (±acos(h2 - h1)), one sign per coordinate), and
    ``scale`` stretches N(0, I) over the prior box so that the untrained flow already reaches
    every mode. log q(α) = log q_y(y) - log|det M|, exactly.
    """

    mix: Tensor
    mix_inv: Tensor
    #: set by :func:`fit_arm`: the objective's value per step, the options, the training time in seconds
    history: list[float]
    options: ArmOptions
    train_seconds: float

    def __init__(
        self,
        transforms: int = 2,
        hidden: tuple[int, ...] = (64, 64),
        kind: str = "nsf_coupling",
        prior_weight: float = 300.0,
        bound: float = 5.0,
        absolute: bool = True,
        bins: int = 16,
        scale: tuple[float, float] = (1.0, 2.0),
        antithetic: bool = True,
    ) -> None:
        super().__init__()
        self.arm = TwoLinkArm()
        self.prior_weight = prior_weight
        self.antithetic = antithetic
        self.flow = ConditionalFlow(2, 2, transforms=transforms, hidden=hidden, kind=kind, bound=bound, bins=bins)
        s1, s2 = scale
        # α1 = s1·y1;  α2 = s2·y2 - s1·y1 (absolute) or s2·y2 (relative).
        mix = torch.tensor([[s1, 0.0], [-s1 if absolute else 0.0, s2]])
        self.register_buffer("mix", mix)
        self.register_buffer("mix_inv", torch.linalg.inv(mix))
        self.log_det = math.log(abs(s1 * s2))

    def _context(self, batch: dict) -> Tensor:
        obs = batch["obs"]
        if obs.dim() != 3 or obs.shape[1:] != (2, 1):
            raise ValueError(f"arm obs must have shape (B, 2, 1), got {tuple(obs.shape)}")
        return obs[..., 0]

    def _hypotheses(self, y: Tensor, log_q_y: Tensor) -> Hypotheses:
        angles = y @ self.mix.T
        return Hypotheses(
            params=angles,
            log_q=log_q_y - self.log_det,
            pred_obs=self.arm.heights(angles).unsqueeze(-1),
            log_prior=self.arm.log_prior(angles, self.prior_weight),
            keypoints=self.arm.keypoints(angles),
        )

    def hypotheses(self, batch: dict, num_samples: int, temperature: float = 1.0) -> Hypotheses:
        """S reparameterised hypotheses per observation (see class docstring for shapes)."""
        y, log_q = self.flow.rsample_and_log_prob(
            self._context(batch), num_samples, temperature, antithetic=self.antithetic
        )
        return self._hypotheses(y, log_q)

    def mode(self, batch: dict) -> Hypotheses:
        """The zero-noise hypothesis (S = 1)."""
        y, log_q = self.flow.rsample_and_log_prob(self._context(batch), 1, temperature=0.0)
        return self._hypotheses(y, log_q)

    def log_prob(self, batch: dict, params: Tensor) -> Tensor:
        """log q(params | heights): (B,) for params (B, 2), or (B, S) for params (B, S, 2)."""
        return self.flow.log_prob(params @ self.mix_inv.T, self._context(batch)) - self.log_det

    @torch.no_grad()
    def sample(self, heights: Tensor, num_samples: int, temperature: float = 1.0) -> Tensor:
        """Angles (B, S, 2) for heights (B, 2)."""
        y = self.flow.sample(arm_batch(heights)["obs"][..., 0], num_samples, temperature)
        return y @ self.mix.T


ARM_OBJECTIVES = ("mhentropy", "no_entropy", "no_reconstruction", "no_prior", "nll")

#: Term weights (w_rec, w_prior, w_ent) of the sampling objectives, as in :data:`mhe.objectives.OBJECTIVES`.
ARM_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "mhentropy": (1.0, 1.0, 1.0),
    "no_entropy": (1.0, 1.0, 0.0),
    "no_reconstruction": (0.0, 1.0, 1.0),
    "no_prior": (1.0, 0.0, 1.0),
}


@dataclass
class ArmOptions:
    """Training options of :func:`fit_arm` (every field can be passed as a keyword).

    The sampling objectives train in two phases, each with its own Adam and cosine-annealed
    learning rate, on the same reverse KL:

    1. *pathwise* (the first ``1 - polish`` of the steps): reparameterised gradients, clipped to
       norm ``clip``, at learning rate ``lr``; during the first ``anneal`` of all steps the Laplace
       scale decays geometrically from ``b_start`` to ``b`` (tempering), then stays at ``b``;
    2. *polish* (the last ``polish`` of the steps, at ``b``): score-function gradients
       (:func:`score_function_loss`), unclipped, at learning rate ``lr_polish``. Objectives without
       the entropy term (``no_entropy``) skip it and train with pathwise gradients throughout.

    With the defaults the pathwise phase is exactly the tempering. See :func:`fit_arm` for why.
    The defaults were chosen on held-out observations (notebook 01,
    ``benchmarks/bench_toy_posterior.py``); a fit takes about 15 s on one CPU thread. 1000 steps (1500 before
    issue 28, to bring notebook 01 under a minute) keep the picture: largest mass gap to the exact posterior
    0.037 and 0.042 for seeds 0 and 1 against 0.020 at 1500 steps (seed 0), coverage 0.77 against 0.78;
    750 steps reached 0.055 to 0.060. The aids are explained in ``docs/toy_training.md``.
    """

    steps: int = 1000  # optimiser steps (both phases together)
    batch_size: int = 32  # observations per step (NLL: batch_size × num_samples annotated pairs)
    num_samples: int = 16  # hypotheses S per observation (sampling objectives)
    lr: float = 5e-3  # Adam learning rate of the pathwise phase and of NLL (cosine-annealed to 0)
    clip: float = 10.0  # gradient-norm clip of pathwise and NLL steps (score-function steps are not clipped)
    anneal: float = 0.4  # fraction of all steps over which b decays from b_start to b (tempering)
    b_start: float = 1.0  # initial Laplace scale of the tempering (a nearly flat likelihood)
    polish: float = 0.6  # fraction of the steps, at the end, with score-function gradients (skipped without entropy)
    lr_polish: float = 5e-4  # Adam learning rate of the polish phase (cosine-annealed to 0)
    b: float = 0.05  # Laplace scale of the height likelihood
    noise: float = 0.01  # std of the Gaussian noise on observed heights
    prior_weight: float = 300.0  # weight of the soft box prior
    transforms: int = 4  # coupling layers (each angle transformed twice, conditioned on the other)
    hidden: tuple[int, ...] = (64, 64)  # hyper-network widths
    kind: str = "nsf_coupling"  # flow kind (see mhe.flows)
    bins: int = 16  # spline bins (nsf_coupling)
    bound: float = 5.0  # splines act on [-bound, bound] in the flow's coordinates
    absolute: bool = True  # flow over absolute link angles (α1, α1 + α2) instead of (α1, α2)
    scale: tuple[float, float] = (1.0, 2.0)  # flow coordinates × scale = angles: N(0, I) spans the box
    antithetic: bool = True  # pathwise samples in antithetic pairs (z, -z)
    ema: float = 0.98  # decay of the exponential moving average of the weights (0 = off)
    n_train: int = 10_000  # NLL: size of the annotated training set
    bias: float = 0.0  # NLL: probability that an elbow-left annotation is flipped to its twin


def observe(angles: Tensor, noise: float, generator: torch.Generator | None = None) -> Tensor:
    """Noisy heights (B, 2) of angles (B, 2)."""
    heights = TwoLinkArm().heights(angles)
    return heights + noise * torch.randn(heights.shape, generator=generator)


def score_function_loss(
    model: ArmModel,
    batch: dict,
    num_samples: int = 16,
    b: float = 0.05,
    w_rec: float = 1.0,
    w_prior: float = 1.0,
    w_ent: float = 1.0,
) -> tuple[Tensor, dict[str, float]]:
    """The MHEntropy objective with a score-function (REINFORCE) gradient instead of a pathwise one.

    The objective is the same as :func:`mhe.objectives.mhentropy`: the mean over B, S of the
    per-hypothesis cost c(θ) = -w_rec·log p(obs|θ) - w_prior·log p(θ) + w_ent·log q(θ), i.e.
    KL(q || p(θ | obs)) up to a constant for unit weights. Its gradient is estimated as

        ∇ E_q[c] = E_q[(c(θ) - c̄) ∇ log q(θ)],   θ drawn without gradient,

    where c̄ is the leave-one-out mean of the other S - 1 hypotheses of the same observation (a
    baseline independent of θ, so the estimate stays unbiased; the term E_q[∇ log q] that the
    entropy adds has expectation zero and is dropped). The hypotheses are i.i.d. (no antithetic
    pairs, whose partner would make the baseline depend on θ).

    Returns:
        a surrogate whose gradient is that estimate (its value is not the objective), and terms as
        in :func:`mhe.objectives.mhentropy`, whose ``loss`` is the objective's value.
    """
    if num_samples < 2:
        raise ValueError(f"the score-function estimator needs num_samples >= 2, got {num_samples}")
    surrogate, loglik, hyp, cost = score_function_parts(model, batch, num_samples, b, w_rec, w_prior, w_ent)
    terms = {
        "reconstruction": -loglik.mean().item(),
        "prior": -hyp.log_prior.mean().item(),
        "entropy": -hyp.log_q.mean().item(),
        "loss": cost.mean().item(),
    }
    return surrogate, terms


def score_function_parts(
    model: ArmModel, batch: dict, num_samples: int, b: float, w_rec: float | Tensor, w_prior: float | Tensor,
    w_ent: float | Tensor,
) -> tuple[Tensor, Tensor, Hypotheses, Tensor]:
    """:func:`score_function_loss`'s tensors, without a float taken out (so that it also runs under
    ``torch.func.vmap``, with the weights as tensors): the surrogate, the log-likelihood (B, S), the hypotheses
    (drawn without gradient) and the cost c (B, S)."""
    with torch.no_grad():
        y, log_q = model.flow.rsample_and_log_prob(model._context(batch), num_samples, antithetic=False)
        hyp = model._hypotheses(y, log_q)
        loglik = laplace_log_likelihood(hyp.pred_obs, batch["obs"], batch["visible"], b)
        cost = -w_rec * loglik - w_prior * hyp.log_prior + w_ent * hyp.log_q  # (B, S)
        baseline = (cost.sum(1, keepdim=True) - cost) / (num_samples - 1)
    surrogate = ((cost - baseline) * model.log_prob(batch, hyp.params)).mean()
    return surrogate, loglik, hyp, cost


def shifted(schedule: Schedule, first: int) -> Schedule:
    """``schedule`` restarted at step ``first``: its value of step k is ``schedule(k - first)``."""
    return lambda step: schedule(step - first)


def tempered_b(opts: ArmOptions, beta: float) -> float:
    """The Laplace scale at tempering factor β: b_start^(1-β) · b^β, from ``b_start`` (β = 0) geometrically to ``b``
    (β = 1); :func:`fit_arm` ramps β linearly to 1 over the first ``anneal`` of the steps."""
    return opts.b_start ** (1 - beta) * opts.b ** beta


def arm_options(steps: int | None, options: dict) -> ArmOptions:
    """The :class:`ArmOptions` of ``options`` (any of its fields) and ``steps`` (None: the default), checked."""
    unknown = set(options) - set(ArmOptions.__dataclass_fields__)
    if unknown:
        raise TypeError(
            f"unknown fit_arm options {sorted(unknown)}; valid: {sorted(ArmOptions.__dataclass_fields__)}"
        )
    opts = ArmOptions(**options)
    if steps is not None:
        opts.steps = steps
    if opts.steps < 1:
        raise ValueError(f"steps must be >= 1, got {opts.steps}")
    if not 0.0 <= opts.bias <= 1.0:
        raise ValueError(f"bias must be in [0, 1], got {opts.bias}")
    if not 0.0 <= opts.anneal <= 1.0:
        raise ValueError(f"anneal must be in [0, 1], got {opts.anneal}")
    if not 0.0 <= opts.polish <= 1.0 or opts.anneal + opts.polish > 1.0:
        raise ValueError(
            f"polish must be in [0, 1] with anneal + polish <= 1 (tempering happens before the polish "
            f"phase), got anneal={opts.anneal}, polish={opts.polish}"
        )
    return opts


def new_arm_model(opts: ArmOptions) -> ArmModel:
    """An untrained :class:`ArmModel` with the architecture of ``opts`` (its initialisation draws from torch's
    global random generator)."""
    return ArmModel(opts.transforms, opts.hidden, opts.kind, opts.prior_weight, opts.bound, opts.absolute,
                    opts.bins, opts.scale, opts.antithetic)


def observations(opts: ArmOptions, generator: torch.Generator) -> Iterator[dict[str, Tensor]]:
    """The sampling objectives' batches: every step fresh noisy observations of prior-uniform poses."""
    arm = TwoLinkArm()
    while True:
        yield arm_batch(observe(arm.sample_prior(opts.batch_size, generator), opts.noise, generator))


Phase = tuple[LossFn, int, int, float, float | None]


def arm_phases(opts: ArmOptions, pathwise: LossFn, score: LossFn, polish: bool) -> list[Phase]:
    """The phases of a sampling objective's fit: (loss, first step, last step + 1, learning rate, gradient clip)
    for the pathwise phase and the polish phase (``polish`` False: the pathwise phase for all the steps), the
    empty ones left out."""
    # No polish without the entropy term: q collapses to a point, where score-function gradients degenerate
    # (∇ log q grows without bound as q narrows) and push the point off its solution.
    polish_steps = round(opts.polish * opts.steps) if polish else 0
    phases: list[Phase] = [(pathwise, 0, opts.steps - polish_steps, opts.lr, opts.clip),
                           (score, opts.steps - polish_steps, opts.steps, opts.lr_polish, None)]
    return [phase for phase in phases if phase[2] > phase[1]]


def fit_arm(objective: str, steps: int | None = None, seed: int = 0, **options) -> ArmModel:
    """Train an :class:`ArmModel` with ``objective`` and return it in eval mode.

    Args:
        objective: one of ``"mhentropy"``, ``"no_entropy"``, ``"no_reconstruction"``,
            ``"no_prior"`` (observations only) or ``"nll"`` (one ground-truth angle pair per
            observation, from a fixed training set of ``n_train`` pairs; ``bias`` ∈ [0, 1] is the
            probability that an elbow-left annotation is replaced by its elbow-right twin, which
            has the same heights, e.g. an annotator who always picks one side).
        steps: optimiser steps (default :attr:`ArmOptions.steps`).
        seed: seeds the flow's initialisation, the data and the samples.
        options: any :class:`ArmOptions` field.

    The sampling objectives see fresh noisy observations of prior-uniform poses every step. Every
    step minimises the same reverse KL (likelihood + prior + entropy); the training aids only
    change the path to its minimum and how its gradient is estimated:

    - **Tempering** (the first ``anneal`` of the steps): the likelihood scale decays from
      ``b_start`` (nearly flat) to ``b``, so the flow first spreads over the prior and the four
      modes then separate out of it; without it reverse KL keeps whichever modes it meets first.
    - **Pathwise gradients first** (the first ``1 - polish`` of the steps; by default exactly the
      tempering): reparameterised samples, the estimator of the hands and bodies, place and shape
      each mode fast.
    - **Score-function gradients last** (the ``polish`` phase, :func:`score_function_loss`): a
      pathwise gradient only learns *how much* mass each mode gets from the rare samples that
      fall between the modes (inside a mode, log q - log p shifts by a constant when a mode has
      too much mass, and the gradient of a constant is zero). Those samples carry large
      gradients that clipping and Adam's normalisation cut short, so with pathwise gradients
      alone the mode masses drift while the KL barely changes (a 0.35 / 0.15 split of two
      equally likely modes costs 0.04 nats). The score-function estimator sees the excess mass
      on every sample of the heavy mode (its cost is higher) and evens the masses out; it is
      noisier for shapes, which the pathwise phase has already fitted. Without the entropy term
      (``no_entropy``) there is no polish phase: q collapses to a point, where the score-function
      estimator degenerates (∇ log q grows without bound as q narrows) and would push the point
      off its solution, so that ablation trains with pathwise gradients for all its steps.
    - A lower, cosine-annealed learning rate in the polish phase and an exponential moving
      average of the weights (``ema``) settle the final weights.

    ``nll`` trains with Adam at ``lr`` (cosine-annealed), clipped, for ``steps`` steps. The model gets
    ``.options`` (the :class:`ArmOptions`), ``.history`` (the objective's value per step) and
    ``.train_seconds``.
    """
    if objective not in ARM_OBJECTIVES:
        raise ValueError(
            f"unknown arm objective {objective!r}; choose one of {', '.join(ARM_OBJECTIVES)}"
        )
    opts = arm_options(steps, options)
    generator = seed_everything(seed)
    model = new_arm_model(opts)
    arm = model.arm
    history: list[float] = []
    ema = [p.detach().clone() for p in model.parameters()] if opts.ema > 0 else None

    def after_step(step: int, terms: dict[str, float]) -> None:
        if ema is not None:
            with torch.no_grad():
                for avg, p in zip(ema, model.parameters(), strict=True):
                    avg.lerp_(p, 1 - opts.ema)
        history.append(terms["loss"])

    start = time.perf_counter()
    model.train()
    if objective == "nll":
        train_angles = arm.sample_prior(opts.n_train, generator)
        flip = (train_angles[:, 0] < 0) & (torch.rand(opts.n_train, generator=generator) < opts.bias)
        train_angles = torch.where(flip[:, None], -train_angles, train_angles)
        train_heights = observe(train_angles, opts.noise, generator)
        nll = get_objective("nll")

        def annotated() -> Iterator[dict[str, Tensor]]:
            while True:
                idx = torch.randint(opts.n_train, (opts.batch_size * opts.num_samples,), generator=generator)
                yield arm_batch(train_heights[idx], train_angles[idx])

        fit(lambda batch, beta: nll(model, batch), adam(model.parameters(), opts.lr), annotated(),
            steps=opts.steps, lr=recursive_cosine_lr(opts.lr, opts.steps), grad_clip=opts.clip, callback=after_step)
    else:
        w_rec, w_prior, w_ent = ARM_WEIGHTS[objective]
        pathwise_fn = get_objective(objective)

        def pathwise(batch: dict, beta: float) -> tuple[Tensor, dict[str, float]]:
            return pathwise_fn(model, batch, num_samples=opts.num_samples, b=tempered_b(opts, beta))

        def score(batch: dict, beta: float) -> tuple[Tensor, dict[str, float]]:
            return score_function_loss(model, batch, opts.num_samples, tempered_b(opts, beta), w_rec=w_rec,
                                       w_prior=w_prior, w_ent=w_ent)

        batches = observations(opts, generator)
        for loss_fn, first, end, lr, clip in arm_phases(opts, pathwise, score, w_ent > 0):
            cosine = recursive_cosine_lr(lr, end - first)  # a fresh Adam and schedule per phase
            fit(loss_fn, adam(model.parameters(), lr), batches, steps=end, start_step=first,
                lr=shifted(cosine, first), grad_clip=clip,
                tempering=round(opts.anneal * opts.steps), callback=after_step)
    if ema is not None:
        with torch.no_grad():
            for avg, p in zip(ema, model.parameters(), strict=True):
                p.copy_(avg)
    model.train_seconds = time.perf_counter() - start
    model.options = opts
    model.history = history
    return model.eval()
