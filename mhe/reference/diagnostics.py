"""Convergence diagnostics of Markov chains: rank-normalised split R-hat and bulk ESS (Vehtari et al., 2021).

:func:`split_rhat` (the larger of the bulk and the folded R-hat) and :func:`ess_bulk` take ``draws (..., C, n)``
(C chains of n draws of each quantity), so that chains started apart can show whether they met.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["split_rhat", "ess_bulk"]


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
