"""A tiny experiment for the trainer, checkpoint, DDP and CLI tests (no hand model needed).

The model is a conditional diagonal Gaussian q(θ | obs) = N(W x + c, diag(exp(2 s))) with
x = (obs · visible, visible) flattened: a one-layer "flow" with closed forms. The target is
p(θ | obs) = N(A x, I) for a fixed matrix A, so the reverse-KL optimum is known exactly
(mean A x, unit scale), which the tests check training against.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from mhe.config import ExperimentConfig
from mhe.lab.builders import Experiment

K, D = 3, 2
IN = K * 3


def features(batch: dict) -> Tensor:
    vis = batch["visible"].float()
    return torch.cat([(batch["obs"] * vis[..., None]).flatten(1), vis], dim=1)


def target_matrix(device: torch.device | None = None) -> Tensor:
    g = torch.Generator().manual_seed(1234)
    return (torch.randn(D, IN, generator=g) * 0.5).to(device)


class DictDataset(Dataset):
    """Fixed items drawn from ``seed``: obs (K, 2), visible (K,), params (D,) = A x (the target mean)."""

    def __init__(self, size: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.obs = torch.randn(size, K, 2, generator=g)
        self.visible = torch.rand(size, K, generator=g) > 0.3
        x = features({"obs": self.obs, "visible": self.visible})
        self.params = x @ target_matrix().T

    def __len__(self) -> int:
        return len(self.obs)

    def __getitem__(self, i: int) -> dict:
        return {"obs": self.obs[i], "visible": self.visible[i], "params": self.params[i], "index": i}


class GaussianModel(nn.Module):
    """q(θ | obs) = N(W x + c, diag(exp(2 s(x)))): implements hypotheses / mode / log_prob."""

    def __init__(self) -> None:
        super().__init__()
        self.mean = nn.Linear(IN, D)
        self.log_scale = nn.Linear(IN, D)

    def _dist(self, batch: dict) -> tuple[Tensor, Tensor]:
        x = features(batch)
        return self.mean(x), self.log_scale(x)

    def hypotheses(self, batch: dict, num_samples: int, temperature: float = 1.0) -> dict:
        mu, s = self._dist(batch)
        eps = torch.randn(mu.shape[0], num_samples, D, device=mu.device) * temperature
        params = mu[:, None] + s.exp()[:, None] * eps
        log_q = (-0.5 * (eps**2) - s[:, None] - 0.5 * math.log(2 * math.pi)).sum(-1)
        return {"params": params, "log_q": log_q}

    def log_prob(self, batch: dict, params: Tensor) -> Tensor:
        mu, s = self._dist(batch)
        z = (params - mu) / s.exp()
        return (-0.5 * z**2 - s - 0.5 * math.log(2 * math.pi)).sum(-1)


def reverse_kl(model: GaussianModel, batch: dict, num_samples: int = 4, w_ent: float = 1.0) -> tuple:
    """E_q[-log p(θ | obs) + w_ent log q(θ)] with p = N(A x, I), from reparameterised samples."""
    hyp = model.hypotheses(batch, num_samples)
    target = features(batch) @ target_matrix(batch["obs"].device).T
    neg_log_p = 0.5 * ((hyp["params"] - target[:, None]) ** 2).sum(-1)
    rec, log_q = neg_log_p.mean(), hyp["log_q"].mean()
    loss = rec + w_ent * log_q
    return loss, {"reconstruction": rec.item(), "entropy": -log_q.item()}


def mse(model: GaussianModel, batch: dict, num_samples: int = 1) -> tuple:
    """Deterministic: mean squared error of the mean against the stored params (no sampling)."""
    mu, _ = model._dist(batch)
    loss = ((mu - batch["params"]) ** 2).sum(-1).mean()
    return loss, {"mse": loss.item()}


def evaluate(model: GaussianModel, loader, *, num_samples: int, temperature: float) -> dict:
    """Mean distance of the sampled hypotheses' mean to the target mean; mean predicted scale."""
    errs, scales = [], []
    for batch in loader:
        hyp = model.hypotheses(batch, num_samples, temperature)
        errs.append((hyp["params"].mean(1) - batch["params"]).norm(dim=-1))
        scales.append(model._dist(batch)[1].exp().mean(-1))
    return {"mean_err": torch.cat(errs).mean().item(), "scale": torch.cat(scales).mean().item()}


def small_config(tmp_path, **train) -> ExperimentConfig:
    cfg = ExperimentConfig(name="dummy", seed=0, device="cpu")
    cfg.data.dataset = "dummy-gaussian"
    cfg.data.train_size = 40
    cfg.data.val_size = 16
    cfg.objective.name = "dummy"
    cfg.objective.b = None
    cfg.train.batch_size = 8
    cfg.train.epochs = 2
    cfg.train.lr = 1e-2
    cfg.train.num_samples = 4
    cfg.train.eval_samples = 8
    cfg.train.progress = False
    cfg.train.out_dir = str(tmp_path / "run")
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def build(cfg: ExperimentConfig) -> Experiment:
    """The experiment builder the tests register under "dummy-gaussian"."""
    return Experiment(
        GaussianModel(),
        DictDataset(cfg.data.train_size or 40, seed=cfg.data.data_seed),
        DictDataset(cfg.data.val_size or 16, seed=cfg.data.data_seed + 1),
        evaluate,
        DictDataset(12, seed=cfg.data.data_seed + 2),
    )


def register() -> None:
    """Register the dummy experiment and objective (idempotent)."""
    from mhe.lab.builders import EXPERIMENTS, register_experiment

    if EXPERIMENTS.get("dummy-gaussian") is not build:
        register_experiment("dummy-gaussian", build, overwrite=True)


def flat_params(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])
