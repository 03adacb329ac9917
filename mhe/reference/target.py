"""The target of a reference posterior: the very function a model's flow is trained against.

MHEntropy trains ``q(θ | obs)`` by reverse KL against the unnormalised target

    log p̃(θ | obs) = w_rec · Σ_visible log Laplace(obs | pred_obs(θ), b) + w_prior · log p(θ)

with the deterministic head's outputs (global rotation, shape β, camera) held fixed
(:func:`mhe.objectives.mhentropy`). :class:`ModelTarget` writes this down as a differentiable function
of θ for one batch, by the model's own :meth:`decode` (the same keypoints and prior as the flow's
hypotheses), so that Markov chains can draw from it: **reference 1**. With ``sample_head=True`` the
head's rotation (where the flow does not already sample it) and shape become variables too, under the
prior the synthetic benchmarks draw them from (:class:`HeadPrior`): **reference 2**, the target a
model that also samples its head would have. :meth:`ModelTarget.parts` gives the likelihood and the
prior apart, for tempering the likelihood (:func:`mhe.reference.sampler.tempered_hmc`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import roma
import torch
from torch import Tensor

from mhe.geometry import axis_angle_to_matrix, matrix_to_rot6d, rot6d_to_matrix
from mhe.objectives import Hypotheses, laplace_log_likelihood
from mhe.priors import box_prior

__all__ = ["HeadPrior", "HEAD_PRIORS", "ModelTarget"]


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
        # a model whose flow samples the shape (model.shape_in_flow) has β in its flow variable already
        self.sample_shape = self.sample_head and not model.shape_in_flow
        if self.sample_head:
            name = model.spec.name
            if head_prior is None and name not in HEAD_PRIORS:
                raise ValueError(f"no head prior for a {name!r} body; pass head_prior=HeadPrior(...)")
            self.head_prior = head_prior or HEAD_PRIORS[name]
            if self.sample_rotation and self.head_prior.rotation != "uniform":
                raise ValueError(f"reference 2 samples the head's rotation under a uniform prior; got "
                                 f"rotation={self.head_prior.rotation!r} in {self.head_prior}")
        self.dim = self.flow_dim + (4 if self.sample_rotation else 0) + (self.shape_dim if self.sample_shape else 0)

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
        if self.sample_shape:
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

    def parts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(the weighted log-likelihood ``w_rec · Σ log Laplace`` (N,), the weighted log-prior + the head
        prior (N,)) of states ``x (N, D)``: their sum is :meth:`log_density`; tempering scales the first."""
        theta, head, extra = self.split(x)
        hyp = self.model.decode(theta, theta.new_zeros(len(theta), 1), head)
        loglik = laplace_log_likelihood(hyp.pred_obs, self.obs, self.visible, self.b)[:, 0]
        return self.w_rec * loglik, self.w_prior * hyp.log_prior[:, 0] + extra

    def log_density(self, x: Tensor) -> Tensor:
        """log p̃ ``(N,)`` of states ``x (N, D)``: the objective's likelihood and prior (+ the head prior)."""
        loglik, prior = self.parts(x)
        return loglik + prior

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
        if self.sample_shape:
            parts.append(self._rows("betas").detach().clone())
        return torch.cat(parts, -1)

    def flip_jump(self, x: Tensor, inverse: Tensor) -> Tensor:
        """The palm's depth flip as a move between states ``x (N, D)``: the rotation's quaternion q goes to
        q' with R(q') = diag(1, 1, -1) · R(q) · S (rows where ``inverse (N,)`` is true: the inverse map), the
        rest of x unchanged. The map is q → q_z ⊗ q ⊗ c (q_z: a half turn about z, c = q_z ⊗ q(diag(1, 1, -1)
        · S)), orthogonal on R⁴: it keeps |q| and the volume, so proposing it or its inverse with
        probability 1/2 each and accepting by the ratio of p̃ leaves p̃ invariant (``hmc(..., jump=)``).
        Only with the rotation sampled (reference 2 of a model whose head gives the rotation)."""
        if not self.sample_rotation:
            raise ValueError("flip_jump moves the sampled rotation: build the target with sample_head=True for a "
                             "model whose head gives the rotation (rotation_in_flow false)")
        at = self.flow_dim
        q = x[:, at: at + 4]
        half_turn = q.new_tensor([0.0, 0.0, 1.0, 0.0])  # xyzw: π about z, whose matrix is -diag(1, 1, -1)
        mirror = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
        c = roma.quat_product(half_turn.double(), roma.rotmat_to_unitquat(mirror @ self.model.spec.flip_reflection()))
        c = c.to(q).expand_as(q)
        hz = half_turn.expand_as(q)
        forward = roma.quat_product(roma.quat_product(hz, q), c)
        backward = roma.quat_product(roma.quat_product(roma.quat_conjugation(hz), q), roma.quat_conjugation(c))
        out = x.clone()
        out[:, at: at + 4] = torch.where(inverse.to(x.device)[:, None].bool(), backward, forward)
        return out

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
        if self.sample_shape:
            parts.append(sd.new_full((B * C, self.shape_dim), self.head_prior.beta_sd))
        return torch.cat(parts, -1)
