"""Batched Hamiltonian Monte Carlo, and replica exchange across likelihood temperatures.

:func:`hmc` runs G groups (items) × C chains in one tensor operation: per-group step size by dual
averaging (Hoffman & Gelman, 2014), a per-group dense metric (the chains' pooled within-chain covariance)
estimated twice in the warm-up, a fixed number of leapfrog steps with a jittered step size.

:func:`tempered_hmc` adds **replica exchange** (parallel tempering; Swendsen & Wang, 1986; Geyer, 1991):
every item gets K rungs ``log p̃_β(x) = β · log L(x) + log p(x)`` with 1 = β_0 > β_1 > … > β_{K-1}, each
rung its own C chains, step size and metric, and after every transition neighbouring rungs propose to
swap their states (chain c with chain c), accepted with probability
``min(1, exp((β_k − β_{k+1}) · (log L(x_{k+1}) − log L(x_k))))``. The hot rungs, where the likelihood is
flattened, cross between discrete modes (a limb's depth flip) that HMC at β = 1 cannot, and the swaps
carry those states down; the β = 1 rung's draws then weigh the modes by their mass. Only β = 1's draws
are returned.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["HMCResult", "hmc", "tempered_hmc", "geometric_ladder"]

LogDensity = Callable[[Tensor], Tensor]  # x (N, D) -> log p̃(x) (N,)
LogParts = Callable[[Tensor], tuple[Tensor, Tensor]]  # x (N, D) -> (log L(x) (N,), log p(x) (N,))
Jump = Callable[[Tensor, Tensor], Tensor]  # (x (N, D), inverse (N,) bool) -> T(x), or T⁻¹(x) where inverse


@dataclass
class HMCResult:
    """What :func:`hmc` and :func:`tempered_hmc` return.

    Attributes:
        samples: (G, C, n, D) the draws after warm-up (β = 1's only, for :func:`tempered_hmc`).
        log_density: (G, C, n) log p̃ of each draw.
        accept: (G,) the mean acceptance probability while sampling.
        step_size: (G,) the adapted step size.
        divergent: (G,) the fraction of sampling transitions whose energy error exceeded 1000.
        swap_accept: (G, K - 1) for :func:`tempered_hmc`: the acceptance rate of swaps between rungs k and
            k + 1 while sampling; None for :func:`hmc`.
        jump_accept: (G,) for :func:`hmc` with ``jump``: the acceptance rate of the jumps while sampling.
    """

    samples: Tensor
    log_density: Tensor
    accept: Tensor
    step_size: Tensor
    divergent: Tensor
    swap_accept: Tensor | None = None
    jump_accept: Tensor | None = None


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


class _Chains:
    """G·C chains of one density; once a metric is set they move in whitened coordinates u (x = L u, a
    unit mass), and :meth:`positions` / :meth:`set_positions` speak x."""

    def __init__(self, f: LogDensity, x: Tensor, inv_mass: Tensor) -> None:
        self.base, self.f, self.u, self.inv_mass = f, f, x, inv_mass
        self.chol: Tensor | None = None
        self.logp, self.grad = _value_and_grad(f, x)

    def positions(self) -> Tensor:
        return self.u if self.chol is None else (self.chol @ self.u[..., None])[..., 0]

    def set_positions(self, x: Tensor) -> None:
        self.u = x if self.chol is None else torch.linalg.solve_triangular(self.chol, x[..., None], upper=False)[..., 0]
        self.logp, self.grad = _value_and_grad(self.f, self.u)

    def set_metric(self, chol: Tensor) -> None:
        x = self.positions()
        self.chol, self.inv_mass = chol, torch.ones_like(x)
        self.f = lambda u: self.base((chol @ u[..., None])[..., 0])  # a constant Jacobian: same target
        self.set_positions(x)

    def step(self, eps: Tensor, steps: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        self.u, self.logp, self.grad, accept, error = _transition(
            self.f, self.u, self.logp, self.grad, eps, self.inv_mass, steps, generator)
        return accept, error


Exchange = Callable[[_Chains, int, bool], None]  # (chains, transition index, sampling?) -> None


def _initial_step(ch: _Chains, G: int, C: int, generator: torch.Generator | None) -> Tensor:
    """A step size per group whose single leapfrog step is accepted with probability about 1/2
    (Hoffman & Gelman's heuristic: halve or double from 0.1 for up to 12 rounds)."""
    eps = ch.u.new_full((G,), 0.1)
    for _ in range(12):
        _, _, _, accept, _ = _transition(ch.f, ch.u, ch.logp, ch.grad, eps.repeat_interleave(C), ch.inv_mass, 1,
                                         generator)
        eps = torch.where(accept.view(G, C).mean(1) > 0.5, eps * 2, eps / 2)
    return eps


def _check(x0: Tensor, num_warmup: int, num_samples: int, num_steps: int, thin: int) -> None:
    if x0.dim() != 3:
        raise ValueError(f"x0 must be (G, C, D), got {tuple(x0.shape)}")
    if num_warmup < 20 or num_samples < 1 or num_steps < 1 or thin < 1:
        raise ValueError("need num_warmup >= 20 and num_samples, num_steps, thin >= 1")


def _run(f: LogDensity, x0: Tensor, num_warmup: int, num_samples: int, num_steps: int, target_accept: float,
         scale: Tensor | None, thin: int, generator: torch.Generator | None, exchange: Exchange | None = None,
         keep: int | None = None) -> HMCResult:
    """The HMC loop of :func:`hmc`; ``exchange`` runs after every transition; ``keep`` groups of every
    ``G // keep`` (the first of each block) are returned (None: all)."""
    G, C, D = x0.shape
    x = x0.reshape(G * C, D).detach().clone()
    inv_mass = (torch.ones_like(x) if scale is None else scale.reshape(G * C, D).to(x).square()).clone()
    ch = _Chains(f, x, inv_mass)
    if not bool(torch.isfinite(ch.logp).all()):
        raise ValueError("log_density is not finite at some starting states: start the chains where the "
                         "target is defined")
    eps = _initial_step(ch, G, C, generator)
    adapt = _DualAveraging(eps, target_accept)
    # Stan-like windows: step size alone, then the metric from the draws of [15 %, 40 %) and again, with
    # the better-mixing chains, from [40 %, 85 %); the last 15 % adapt the step size to the final metric.
    updates = {int(0.4 * num_warmup) - 1: int(0.15 * num_warmup), num_warmup - int(0.15 * num_warmup) - 1:
               int(0.4 * num_warmup)}
    window: list[Tensor] = []
    eye = torch.eye(D, dtype=x.dtype, device=x.device)

    def jittered(base: Tensor) -> Tensor:
        jitter = 1 + 0.2 * (2 * torch.rand(G * C, generator=generator, dtype=x.dtype, device=x.device) - 1)
        return base.repeat_interleave(C) * jitter

    for it in range(num_warmup):
        accept, _ = ch.step(jittered(eps), num_steps, generator)
        eps = adapt.update(accept.view(G, C).mean(1))
        if exchange is not None:
            exchange(ch, it, False)
        if any(lo <= it <= end for end, lo in updates.items()):
            window.append(ch.positions().view(G, C, D))
        if it in updates:  # the metric from the window (in x), then adapt the step size afresh
            draws = torch.stack(window, 2)  # (G, C, w, D)
            window = []
            centred = (draws - draws.mean(2, keepdim=True)).reshape(G, -1, D)  # within-chain deviations
            n = centred.shape[1]
            cov = centred.transpose(1, 2) @ centred / max(n - C, 1)
            shrink = 1e-3 * cov.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-12)
            cov = (n / (n + 5)) * cov + (5 / (n + 5)) * shrink[:, None, None] * eye
            ch.set_metric(torch.linalg.cholesky(cov + 1e-10 * eye).repeat_interleave(C, 0))  # (G·C, D, D)
            eps = _initial_step(ch, G, C, generator)
            adapt = _DualAveraging(eps, target_accept)
    eps = adapt.log_eps_bar.exp()
    out, out_logp, accepts, divergent = [], [], [], []
    for it in range(num_samples * thin):
        accept, error = ch.step(jittered(eps), num_steps, generator)
        accepts.append(accept)
        divergent.append(error > 1000)
        if (it + 1) % thin == 0:  # recorded before the swap: each draw ends an HMC transition
            out.append(ch.positions().view(G, C, D))
            out_logp.append(ch.logp.view(G, C))
        if exchange is not None:
            exchange(ch, num_warmup + it, True)
    step = G // (keep or G)
    return HMCResult(
        samples=torch.stack(out, 2)[::step], log_density=torch.stack(out_logp, 2)[::step],
        accept=torch.stack(accepts).view(-1, G, C).mean((0, 2))[::step], step_size=eps[::step],
        divergent=torch.stack(divergent).view(-1, G, C).float().mean((0, 2))[::step])


def hmc(log_density: LogDensity, x0: Tensor, num_warmup: int = 200, num_samples: int = 100,
        num_steps: int = 10, target_accept: float = 0.8, scale: Tensor | None = None, thin: int = 1,
        generator: torch.Generator | None = None, jump: Jump | None = None) -> HMCResult:
    """Batched HMC: G groups (items) of C chains each, all in one tensor operation.

    Args:
        log_density: ``x (G·C, D) → (G·C,)`` the unnormalised log-density (group-major rows; each group's
            rows may see their own target, e.g. :class:`~mhe.reference.target.ModelTarget`).
        x0: (G, C, D) starting states (start chains apart to test mixing with
            :func:`~mhe.reference.diagnostics.split_rhat`).
        num_warmup: warm-up transitions (discarded). The step size is adapted throughout, the metric
            twice: each group's chains' pooled within-chain covariance over [15 %, 40 %) and again over
            [40 %, 85 %) of the warm-up (the whole matrix: HMC goes on in u with x = L u, L Lᵀ = that
            covariance, a unit mass); the mass matrix starts from ``scale``.
        num_samples: transitions kept (every ``thin``-th of ``num_samples · thin``).
        num_steps: leapfrog steps per transition (the step size jittered by ±20 % every transition).
        target_accept: the mean acceptance the step size is adapted to.
        scale: (G, C, D) or (G·C, D) typical posterior standard deviations to start the mass matrix from.
        generator: for the momenta and the Metropolis draws.
        jump: a volume-preserving bijection T between discrete modes (e.g. the palm's depth flip,
            :meth:`~mhe.reference.target.ModelTarget.flip_jump`), called as ``jump(x, inverse)``. After every
            transition each chain proposes T(x) or T⁻¹(x) (probability 1/2 each), accepted with probability
            ``min(1, p̃(x') / p̃(x))``: a Metropolis move that leaves p̃ invariant and crosses between modes HMC
            cannot. Its acceptance rate is ``jump_accept``.

    Returns:
        :class:`HMCResult`.
    """
    _check(x0, num_warmup, num_samples, num_steps, thin)
    if jump is None:
        return _run(log_density, x0, num_warmup, num_samples, num_steps, target_accept, scale, thin, generator)
    G, C, _ = x0.shape
    taken = torch.zeros(G, dtype=x0.dtype, device=x0.device)
    tries = [0]

    def move(ch: _Chains, it: int, sampling: bool) -> None:
        x = ch.positions()
        inverse = torch.rand(len(x), generator=generator, device=x.device) < 0.5
        proposal = jump(x.detach(), inverse)
        with torch.no_grad():
            log_ratio = torch.nan_to_num(log_density(proposal) - ch.logp, nan=-math.inf)
        u = torch.rand(log_ratio.shape, generator=generator, dtype=x.dtype, device=x.device)
        take = u.log() < log_ratio
        if bool(take.any()):
            ch.set_positions(torch.where(take[:, None], proposal, x))
        if sampling:
            taken.add_(take.to(x.dtype).view(G, C).mean(1))
            tries[0] += 1

    res = _run(log_density, x0, num_warmup, num_samples, num_steps, target_accept, scale, thin, generator, move)
    res.jump_accept = taken / max(tries[0], 1)
    return res


def geometric_ladder(rungs: int, beta_min: float) -> tuple[float, ...]:
    """``rungs`` inverse temperatures from 1 down to ``beta_min``, evenly spaced in log β."""
    if rungs < 1 or not 0 < beta_min <= 1:
        raise ValueError(f"need rungs >= 1 and 0 < beta_min <= 1, got rungs={rungs}, beta_min={beta_min}")
    if rungs == 1:
        return (1.0,)
    return tuple(float(beta_min ** (k / (rungs - 1))) for k in range(rungs))


def tempered_hmc(log_parts: LogParts, x0: Tensor, betas: Sequence[float], num_warmup: int = 200,
                 num_samples: int = 100, num_steps: int = 10, target_accept: float = 0.8,
                 scale: Tensor | None = None, thin: int = 1, generator: torch.Generator | None = None) -> HMCResult:
    """Replica-exchange HMC (parallel tempering of the likelihood) for G items × C chains.

    Args:
        log_parts: ``x (G·K·C, D) → (log L (N,), log p (N,))``, rows item-major, then rung-major, then
            chain (e.g. :meth:`~mhe.reference.target.ModelTarget.parts` of a target built with ``chains = K·C``).
        x0: (G, K·C, D) or (G, K, C, D) starting states, rung by rung.
        betas: the K inverse temperatures of the likelihood, ``betas[0] == 1`` and decreasing
            (:func:`geometric_ladder`); rung k's density is ``β_k log L + log p``.
        num_warmup, num_samples, num_steps, target_accept, thin, generator: as :func:`hmc`, per rung (each
            rung adapts its own step size and metric).
        scale: (G, K·C, D), (G, K, C, D) or one row per chain: start of the mass matrices.

    Returns:
        :class:`HMCResult` of β = 1's chains (G, C, n, D), with ``swap_accept`` (G, K - 1).
    """
    K = len(betas)
    b = torch.as_tensor(list(betas), dtype=torch.float64)
    if K < 1 or abs(float(b[0]) - 1) > 1e-12 or not bool((b[1:] < b[:-1]).all()) or not bool((b > 0).all()):
        raise ValueError(f"betas must start at 1 and decrease, all > 0 (e.g. geometric_ladder(4, 0.1)); got {betas}")
    if x0.dim() == 4:
        x0 = x0.flatten(1, 2)
    _check(x0, num_warmup, num_samples, num_steps, thin)
    G, KC, D = x0.shape
    if KC % K:
        raise ValueError(f"x0 must hold K·C = a multiple of K = {K} chains per item, got {KC}")
    C = KC // K
    beta_rows = b.to(x0).repeat_interleave(C).repeat(G)  # (G·K·C,)

    def tempered(x: Tensor) -> Tensor:
        loglik, prior = log_parts(x)
        return beta_rows * loglik + prior

    beta = b.to(x0)
    swaps = torch.zeros(G, max(K - 1, 1), dtype=x0.dtype, device=x0.device)
    tries = torch.zeros_like(swaps)

    def exchange(ch: _Chains, it: int, sampling: bool) -> None:
        if K < 2:
            return
        x = ch.positions().view(G, K, C, D)
        with torch.no_grad():
            loglik = log_parts(x.reshape(-1, D))[0].view(G, K, C)
        loglik = torch.nan_to_num(loglik, nan=-math.inf)
        lo = torch.arange(it % 2, K - 1, 2, device=x.device)  # even pairs, then odd pairs
        if len(lo) == 0:
            return
        log_ratio = (beta[lo] - beta[lo + 1])[None, :, None] * (loglik[:, lo + 1] - loglik[:, lo])
        log_ratio = torch.nan_to_num(log_ratio, nan=-math.inf)
        u = torch.rand(log_ratio.shape, generator=generator, dtype=x.dtype, device=x.device)
        take = u.log() < log_ratio  # (G, pairs, C)
        new = x.clone()
        new[:, lo] = torch.where(take[..., None], x[:, lo + 1], x[:, lo])
        new[:, lo + 1] = torch.where(take[..., None], x[:, lo], x[:, lo + 1])
        ch.set_positions(new.view(-1, D))
        if sampling:
            swaps[:, lo] += take.to(x.dtype).mean(-1)
            tries[:, lo] += 1

    if scale is not None:
        scale = scale.reshape(G, KC, D)
    res = _run(tempered, x0.view(G * K, C, D), num_warmup, num_samples, num_steps, target_accept,
               None if scale is None else scale.reshape(G * K, C, D), thin, generator, exchange, keep=G)
    res.swap_accept = (swaps / tries.clamp_min(1))[:, : K - 1]
    return res
