"""A reference posterior: samples of the very target a model's flow is trained against, by batched HMC.

MHEntropy trains ``q(θ | obs)`` by reverse KL against the unnormalised target

    log p̃(θ | obs) = w_rec · Σ_visible log Laplace(obs | pred_obs(θ), b) + w_prior · log p(θ)

with the deterministic head's outputs (global rotation, shape β, camera) held fixed
(:func:`mhe.objectives.mhentropy`). :class:`ModelTarget` writes this down as a differentiable function
of θ for one batch, by the model's own :meth:`decode` (the same keypoints and prior as the flow's
hypotheses), so that Markov chains can draw from it: **reference 1**. With ``sample_head=True`` the
head's rotation (where the flow does not already sample it) and shape become variables too, under the
prior the synthetic benchmarks draw them from (:class:`HeadPrior`): **reference 2**, the target a
model that also samples its head would have.

:func:`hmc` is a Hamiltonian Monte Carlo sampler batched over G groups (items) × C chains in one
tensor operation: per-group step size by dual averaging (Hoffman & Gelman, 2014) and a per-group
dense metric (the chains' covariance) estimated in the warm-up, a fixed number of leapfrog steps with a jittered step
size. :func:`split_rhat` (rank-normalised split R-hat, folded too) and :func:`ess_bulk` (bulk effective
sample size) are those of Vehtari et al. (2021), so that chains started apart can show whether they
met. docs/reference_posterior.md describes the method and its validation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import roma
import torch
from torch import Tensor

from mhe.geometry import axis_angle_to_matrix, matrix_to_rot6d, rot6d_to_matrix
from mhe.objectives import Hypotheses, laplace_log_likelihood
from mhe.priors import box_prior

__all__ = [
    "HeadPrior",
    "HEAD_PRIORS",
    "ModelTarget",
    "HMCResult",
    "hmc",
    "split_rhat",
    "ess_bulk",
]

LogDensity = Callable[[Tensor], Tensor]  # x (N, D) -> log p̃(x) (N,)


# -- the target -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadPrior:
    """The prior of the head's outputs in reference 2: how the synthetic benchmark draws them.

    Attributes:
        rotation: "uniform" (the global rotation is uniform over all rotations, as
            ``SyntheticHands(rotation="uniform")``) or None (the flow samples the rotation already).
        beta_sd: the shape β is Gaussian with this standard deviation per coefficient ...
        beta_box: ... clipped to ``|β| <= beta_box`` (a soft box of weight 50 here, so HMC sees no wall).
    """

    rotation: str | None
    beta_sd: float
    beta_box: float


#: By body spec name: hands draw β ~ N(0, 0.012²) clipped to ±0.03 and a uniform rotation
#: (mhe/data/synthetic.py); bodies β ~ N(0, 0.5²) clipped to ±1 (mhe/data/synthetic_bodies.py), their
#: rotation is in the flow.
HEAD_PRIORS = {"hand": HeadPrior("uniform", 0.012, 0.03), "body": HeadPrior(None, 0.5, 1.0)}
BOX_WEIGHT = 50.0
QUAT_RADIUS = math.sqrt(3.0)  # the mode of |q| for q ~ N(0, I_4): where chains start


class ModelTarget:
    """log p̃(x | obs) of a multi-hypothesis model for one batch of B items, each repeated C times.

    ``x (B·C, D)`` (item-major: rows ``i·C … i·C + C - 1`` belong to item i) is the flow's variable θ
    (``model.flow_dim``), followed with ``sample_head=True`` by a quaternion ``q (4)`` when the head
    gives the rotation (the rotation is that of ``q / |q|``; ``q ~ N(0, I_4)`` makes it uniform) and the
    shape ``β (shape_dim)``.

    Args:
        model: a :class:`mhe.models.multi_hypothesis.MultiHypothesisModel` (its ``context``,
            ``deterministic_head``, ``decode`` and ``spec``).
        batch: the items (``obs``, ``visible`` and what the encoder reads).
        chains: C, rows per item.
        b, w_rec, w_prior: the objective's Laplace scale and weights (``cfg.objective``).
        sample_head: reference 2 (rotation and shape sampled) instead of reference 1 (held at the head's).
        head_prior: the prior of the sampled head outputs (default: :data:`HEAD_PRIORS` of the spec's name).
    """

    def __init__(self, model, batch: dict, chains: int, b: float, w_rec: float = 1.0, w_prior: float = 1.0,
                 sample_head: bool = False, head_prior: HeadPrior | None = None) -> None:
        if chains < 1:
            raise ValueError(f"chains must be >= 1, got {chains}")
        self.model, self.chains, self.b = model, chains, float(b)
        self.w_rec, self.w_prior, self.sample_head = float(w_rec), float(w_prior), bool(sample_head)
        with torch.no_grad():
            self.head = model.deterministic_head(model.context(batch))
        self.obs = batch["obs"].to(self.head["betas"]).repeat_interleave(chains, 0)
        self.visible = batch["visible"].to(self.obs.device).bool().repeat_interleave(chains, 0)
        self.flow_dim = int(model.flow_dim)
        self.shape_dim = int(model.spec.shape_dim)
        self.sample_rotation = self.sample_head and not model.rotation_in_flow
        if self.sample_head:
            name = model.spec.name
            if head_prior is None and name not in HEAD_PRIORS:
                raise ValueError(f"no head prior for a {name!r} body; pass head_prior=HeadPrior(...)")
            self.head_prior = head_prior or HEAD_PRIORS[name]
            if self.sample_rotation and self.head_prior.rotation != "uniform":
                raise ValueError(f"reference 2 samples the head's rotation under a uniform prior; got "
                                 f"rotation={self.head_prior.rotation!r} in {self.head_prior}")
        self.dim = self.flow_dim + (4 if self.sample_rotation else 0) + (self.shape_dim if self.sample_head else 0)

    def _rows(self, key: str) -> Tensor:
        return self.head[key].repeat_interleave(self.chains, 0)

    def split(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """``x (N, D)`` → (θ (N, 1, flow_dim), the head's outputs per row, the head variables' log-prior (N,))."""
        if x.dim() != 2 or x.shape[-1] != self.dim or len(x) != len(self.obs):
            raise ValueError(f"x must be (B·C, D) = ({len(self.obs)}, {self.dim}), got {tuple(x.shape)}")
        head = {k: self._rows(k) for k in self.head}
        extra = x.new_zeros(len(x))
        at = self.flow_dim
        if self.sample_rotation:
            q = x[:, at: at + 4]
            at += 4
            head["global_orient"] = roma.unitquat_to_rotvec(q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12))
            extra = extra - 0.5 * q.square().sum(-1)
        if self.sample_head:
            beta = x[:, at: at + self.shape_dim]
            head["betas"] = beta
            prior = self.head_prior
            extra = (extra - 0.5 * (beta / prior.beta_sd).square().sum(-1)
                     + box_prior(beta, prior.beta_box, BOX_WEIGHT))
        return x[:, None, : self.flow_dim], head, extra

    def decode(self, x: Tensor) -> Hypotheses:
        """The model's hypotheses ``(N, 1, ...)`` of states ``x (N, D)`` (keypoints, prior, joints)."""
        theta, head, _ = self.split(x)
        return self.model.decode(theta, theta.new_zeros(len(theta), 1), head)

    def log_density(self, x: Tensor) -> Tensor:
        """log p̃ ``(N,)`` of states ``x (N, D)``: the objective's likelihood and prior (+ the head prior)."""
        theta, head, extra = self.split(x)
        hyp = self.model.decode(theta, theta.new_zeros(len(theta), 1), head)
        loglik = laplace_log_likelihood(hyp.pred_obs, self.obs, self.visible, self.b)[:, 0]
        return self.w_rec * loglik + self.w_prior * hyp.log_prior[:, 0] + extra

    def __call__(self, x: Tensor) -> Tensor:
        return self.log_density(x)

    def initial(self, theta: Tensor, flip: Tensor | None = None) -> Tensor:
        """Starting states ``(B·C, D)`` from flow variables ``theta (B, C, flow_dim)``: the head's own
        rotation and shape for the extra variables; where ``flip (B, C)`` is true, the palm's depth flip of
        the rotation (``spec.flip_reflection``: the other discrete mode a single view leaves open)."""
        B, C, _ = theta.shape
        if C != self.chains:
            raise ValueError(f"theta must have C = {self.chains} chains per item, got {C}")
        theta = theta.detach().reshape(B * C, -1).clone()
        flip_rows = None if flip is None else flip.reshape(-1).to(theta.device).bool()
        if flip_rows is not None and self.model.rotation_in_flow:
            flipped = matrix_to_rot6d(self._flip_matrix(rot6d_to_matrix(theta[:, :6])))
            theta[:, :6] = torch.where(flip_rows[:, None], flipped, theta[:, :6])
        parts = [theta]
        if self.sample_rotation:
            R = axis_angle_to_matrix(self._rows("global_orient").detach())
            if flip_rows is not None:
                R = torch.where(flip_rows[:, None, None], self._flip_matrix(R), R)
            parts.append(roma.rotmat_to_unitquat(R) * QUAT_RADIUS)
        if self.sample_head:
            parts.append(self._rows("betas").detach().clone())
        return torch.cat(parts, -1)

    def _flip_matrix(self, R: Tensor) -> Tensor:
        """``diag(1, 1, -1) · R · S``: the rotation that puts the palm at its mirror image in depth."""
        S = self.model.spec.flip_reflection().to(R)
        mirror = torch.tensor([1.0, 1.0, -1.0], dtype=R.dtype, device=R.device)
        return mirror[:, None] * (R @ S)

    def scales(self, theta: Tensor) -> Tensor:
        """Per-dimension scales ``(B·C, D)`` to start the mass matrix from: the spread of the flow's
        ``theta (B, C, flow_dim)`` over its C draws for θ, the prior's for the extra variables."""
        B, C, _ = theta.shape
        sd = theta.detach().std(1, keepdim=True).clamp(1e-3, 1.0).expand(B, C, -1).reshape(B * C, -1)
        parts = [sd]
        if self.sample_rotation:
            parts.append(sd.new_full((B * C, 4), 0.1))
        if self.sample_head:
            parts.append(sd.new_full((B * C, self.shape_dim), self.head_prior.beta_sd))
        return torch.cat(parts, -1)


# -- the sampler ----------------------------------------------------------------------------------


@dataclass
class HMCResult:
    """What :func:`hmc` returns.

    Attributes:
        samples: (G, C, n, D) the draws after warm-up.
        log_density: (G, C, n) log p̃ of each draw.
        accept: (G,) the mean acceptance probability while sampling.
        step_size: (G,) the adapted step size.
        divergent: (G,) the fraction of sampling transitions whose energy error exceeded 1000.
    """

    samples: Tensor
    log_density: Tensor
    accept: Tensor
    step_size: Tensor
    divergent: Tensor


def _value_and_grad(f: LogDensity, x: Tensor) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        value = f(x)
        (grad,) = torch.autograd.grad(value.sum(), x)
    value, grad = value.detach(), grad.detach()
    bad = ~torch.isfinite(value) | ~torch.isfinite(grad).all(-1)
    value = torch.where(bad, torch.full_like(value, -math.inf), value)
    return value, torch.where(bad[:, None], torch.zeros_like(grad), grad)


def _transition(f: LogDensity, x: Tensor, logp: Tensor, grad: Tensor, eps: Tensor, inv_mass: Tensor,
                steps: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One HMC transition of every row: ``steps`` leapfrog steps of size ``eps (N,)``, then Metropolis.
    Returns the new (x, log p̃, gradient), the acceptance probability (N,) and the energy error (N,)."""
    p = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device) / inv_mass.sqrt()
    energy0 = -logp + 0.5 * (p.square() * inv_mass).sum(-1)
    e = eps[:, None]
    x1, logp1, grad1 = x, logp, grad
    p = p + 0.5 * e * grad1
    for step in range(steps):
        x1 = x1 + e * inv_mass * p
        logp1, grad1 = _value_and_grad(f, x1)
        if step < steps - 1:
            p = p + e * grad1
    p = p + 0.5 * e * grad1
    error = -logp1 + 0.5 * (p.square() * inv_mass).sum(-1) - energy0
    error = torch.where(torch.isfinite(error), error, torch.full_like(error, math.inf))
    accept = torch.exp(-error.clamp_min(0.0))
    u = torch.rand(accept.shape, generator=generator, dtype=x.dtype, device=x.device)
    take = u < accept
    return (torch.where(take[:, None], x1, x), torch.where(take, logp1, logp),
            torch.where(take[:, None], grad1, grad), accept, error)


class _DualAveraging:
    """Hoffman & Gelman's (2014) step-size adaptation, one per group, towards a mean acceptance."""

    def __init__(self, eps: Tensor, target: float) -> None:
        self.mu, self.target = torch.log(10 * eps), target
        self.h_bar, self.log_eps_bar, self.t = torch.zeros_like(eps), torch.log(eps), 0
        self.log_eps = torch.log(eps)

    def update(self, accept: Tensor) -> Tensor:
        self.t += 1
        t, t0, gamma, kappa = self.t, 10.0, 0.05, 0.75
        self.h_bar = (1 - 1 / (t + t0)) * self.h_bar + (self.target - accept) / (t + t0)
        self.log_eps = self.mu - math.sqrt(t) / gamma * self.h_bar
        w = t ** -kappa
        self.log_eps_bar = w * self.log_eps + (1 - w) * self.log_eps_bar
        return self.log_eps.exp()


def hmc(log_density: LogDensity, x0: Tensor, num_warmup: int = 200, num_samples: int = 100,
        num_steps: int = 10, target_accept: float = 0.8, scale: Tensor | None = None, thin: int = 1,
        generator: torch.Generator | None = None) -> HMCResult:
    """Batched HMC: G groups (items) of C chains each, all in one tensor operation.

    Args:
        log_density: ``x (G·C, D) → (G·C,)`` the unnormalised log-density (group-major rows; each group's
            rows may see their own target, e.g. :class:`ModelTarget`).
        x0: (G, C, D) starting states (start chains apart to test mixing with :func:`split_rhat`).
        num_warmup: warm-up transitions (discarded). The step size is adapted throughout, the metric
            twice: each group's chains' pooled within-chain covariance over [15 %, 40 %) and again over
            [40 %, 85 %) of the warm-up (the whole matrix: HMC goes on in u with x = L u, L Lᵀ = that
            covariance, a unit mass); the mass matrix starts from ``scale``.
        num_samples: transitions kept (every ``thin``-th of ``num_samples · thin``).
        num_steps: leapfrog steps per transition (the step size jittered by ±20 % every transition).
        target_accept: the mean acceptance the step size is adapted to.
        scale: (G, C, D) or (G·C, D) typical posterior standard deviations to start the mass matrix from.
        generator: for the momenta and the Metropolis draws.

    Returns:
        :class:`HMCResult`.
    """
    if x0.dim() != 3:
        raise ValueError(f"x0 must be (G, C, D), got {tuple(x0.shape)}")
    if num_warmup < 20 or num_samples < 1 or num_steps < 1 or thin < 1:
        raise ValueError("need num_warmup >= 20 and num_samples, num_steps, thin >= 1")
    G, C, D = x0.shape
    x = x0.reshape(G * C, D).detach().clone()
    inv_mass = (torch.ones_like(x) if scale is None else scale.reshape(G * C, D).to(x).square()).clone()
    f, chol = log_density, None  # after the first half of the warm-up: x = L u, HMC on u with a unit mass
    logp, grad = _value_and_grad(f, x)
    if not bool(torch.isfinite(logp).all()):
        raise ValueError("log_density is not finite at some starting states: start the chains where the "
                         "target is defined")
    eps = _initial_step(f, x, logp, grad, inv_mass, G, C, generator)
    adapt = _DualAveraging(eps, target_accept)
    # Stan-like windows: step size alone, then the metric from the draws of [15 %, 40 %) and again, with
    # the better-mixing chains, from [40 %, 85 %); the last 15 % adapt the step size to the final metric.
    updates = {int(0.4 * num_warmup) - 1: int(0.15 * num_warmup), num_warmup - int(0.15 * num_warmup) - 1:
               int(0.4 * num_warmup)}
    window: list[Tensor] = []
    eye = torch.eye(D, dtype=x.dtype, device=x.device)
    for it in range(num_warmup):
        jitter = 1 + 0.2 * (2 * torch.rand(G * C, generator=generator, dtype=x.dtype, device=x.device) - 1)
        step = eps.repeat_interleave(C) * jitter
        x, logp, grad, accept, _ = _transition(f, x, logp, grad, step, inv_mass, num_steps, generator)
        eps = adapt.update(accept.view(G, C).mean(1))
        if any(lo <= it <= end for end, lo in updates.items()):
            window.append((x if chol is None else (chol @ x[..., None])[..., 0]).view(G, C, D))
        if it in updates:  # the metric from the window (in x), then adapt the step size afresh
            draws = torch.stack(window, 2)  # (G, C, w, D)
            window = []
            centred = (draws - draws.mean(2, keepdim=True)).reshape(G, -1, D)  # within-chain deviations
            n = centred.shape[1]
            cov = centred.transpose(1, 2) @ centred / max(n - C, 1)
            shrink = 1e-3 * cov.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-12)
            cov = (n / (n + 5)) * cov + (5 / (n + 5)) * shrink[:, None, None] * eye
            x_now = x if chol is None else (chol @ x[..., None])[..., 0]
            chol = torch.linalg.cholesky(cov + 1e-10 * eye).repeat_interleave(C, 0)  # (G·C, D, D)
            f = _linear(log_density, chol)
            x = torch.linalg.solve_triangular(chol, x_now[..., None], upper=False)[..., 0]
            inv_mass = torch.ones_like(x)
            logp, grad = _value_and_grad(f, x)
            eps = _initial_step(f, x, logp, grad, inv_mass, G, C, generator)
            adapt = _DualAveraging(eps, target_accept)
    eps = adapt.log_eps_bar.exp()
    step_base = eps.repeat_interleave(C)
    out, out_logp, accepts, divergent = [], [], [], []
    for it in range(num_samples * thin):
        jitter = 1 + 0.2 * (2 * torch.rand(G * C, generator=generator, dtype=x.dtype, device=x.device) - 1)
        x, logp, grad, accept, error = _transition(
            f, x, logp, grad, step_base * jitter, inv_mass, num_steps, generator)
        accepts.append(accept)
        divergent.append(error > 1000)
        if (it + 1) % thin == 0:
            out.append((x if chol is None else (chol @ x[..., None])[..., 0]).view(G, C, D))
            out_logp.append(logp.view(G, C))
    return HMCResult(
        samples=torch.stack(out, 2), log_density=torch.stack(out_logp, 2),
        accept=torch.stack(accepts).view(-1, G, C).mean((0, 2)), step_size=eps,
        divergent=torch.stack(divergent).view(-1, G, C).float().mean((0, 2)))


def _linear(f: LogDensity, chol: Tensor) -> LogDensity:
    """``u ↦ f(L u)`` for per-row ``L (N, D, D)`` (a constant Jacobian: the same target up to a constant)."""
    return lambda u: f((chol @ u[..., None])[..., 0])


def _initial_step(f: LogDensity, x: Tensor, logp: Tensor, grad: Tensor, inv_mass: Tensor, G: int, C: int,
                  generator: torch.Generator | None) -> Tensor:
    """A step size per group whose single leapfrog step is accepted with probability about 1/2
    (Hoffman & Gelman's heuristic: halve or double from 0.1 for up to 12 rounds)."""
    eps = x.new_full((G,), 0.1)
    for _ in range(12):
        _, _, _, accept, _ = _transition(f, x, logp, grad, eps.repeat_interleave(C), inv_mass, 1, generator)
        a = accept.view(G, C).mean(1)
        eps = torch.where(a > 0.5, eps * 2, eps / 2)
    return eps


# -- diagnostics ----------------------------------------------------------------------------------


def _rank_normal(draws: Tensor) -> Tensor:
    """Ranks over all chains and draws of each quantity, mapped to normal scores ``(..., C, n)``."""
    shape = draws.shape
    flat = draws.reshape(*shape[:-2], -1).double()
    ranks = flat.argsort(-1).argsort(-1).double() + 1  # ties are rare for continuous draws
    total = flat.shape[-1]
    z = torch.special.ndtri((ranks - 0.375) / (total + 0.25))
    return z.reshape(shape)


def _split(draws: Tensor) -> Tensor:
    """Each chain cut into its two halves: ``(..., C, n)`` → ``(..., 2C, n // 2)``."""
    n = draws.shape[-1] // 2
    return torch.cat([draws[..., :n], draws[..., -n:]], -2)


def _rhat(chains: Tensor) -> Tensor:
    n = chains.shape[-1]
    within = chains.var(-1).mean(-1)
    between = n * chains.mean(-1).var(-1)
    return (((n - 1) / n * within + between / n) / within).sqrt()


def split_rhat(draws: Tensor) -> Tensor:
    """Rank-normalised split R-hat of ``draws (..., C, n)`` (C chains of n draws) → ``(...)``: the larger of
    the bulk and the folded (|x - median|, the tails) R-hat of Vehtari et al. (2021). About 1 when the
    chains agree; well above 1.01 when they sample different regions (e.g. stuck in separate modes)."""
    if draws.dim() < 2 or draws.shape[-1] < 4 or draws.shape[-2] < 1:
        raise ValueError(f"draws must be (..., C, n) with n >= 4, got {tuple(draws.shape)}")
    bulk = _rhat(_split(_rank_normal(draws)))
    median = draws.flatten(-2).median(-1).values[..., None, None]
    folded = _rhat(_split(_rank_normal((draws - median).abs())))
    return torch.maximum(bulk, folded)


def ess_bulk(draws: Tensor) -> Tensor:
    """Bulk effective sample size of ``draws (..., C, n)`` → ``(...)``: rank-normalised split chains,
    autocorrelations by FFT combined over chains, summed in pairs until the first negative pair
    (Geyer's initial positive sequence, made monotone), as Vehtari et al. (2021)."""
    z = _split(_rank_normal(draws))
    m, n = z.shape[-2], z.shape[-1]
    centred = z - z.mean(-1, keepdim=True)
    f = torch.fft.rfft(centred, n=2 * n)
    acov = torch.fft.irfft(f * f.conj(), n=2 * n)[..., :n] / n  # (..., m, n) biased autocovariance
    chain_var = acov[..., 0] * n / (n - 1)
    within = chain_var.mean(-1)
    var_plus = within * (n - 1) / n + z.mean(-1).var(-1) if m > 1 else within * (n - 1) / n
    rho = 1 - (within[..., None] - acov.mean(-2)) / var_plus[..., None]  # (..., n)
    rho = torch.cat([torch.ones_like(rho[..., :1]), rho[..., 1:]], -1)
    pairs = rho[..., 0: n - 1: 2] + rho[..., 1: n: 2]  # (..., n // 2)
    positive = torch.cumprod((pairs > 0).double(), -1)
    pairs = torch.where(positive > 0, pairs, torch.zeros_like(pairs))
    pairs = torch.cummin(pairs, -1).values  # monotone
    tau = -1 + 2 * pairs.sum(-1)
    return m * n / tau.clamp_min(1.0 / math.log10(max(m * n, 10)))
