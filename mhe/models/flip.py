"""The depth-flip mixture: a conditional flow over (6D global rotation, pose) wrapped into a two-branch mixture.

From 2D keypoints a palm tilted towards the camera and the same palm tilted away look almost alike, and
reverse KL, being mode-seeking, rarely keeps both tilts. :class:`DepthFlipMixture` wraps a base flow
``q0(x | c)`` the way zuko composes a transform around a base distribution: it is itself a conditional
density with the base flow's interface (``rsample_and_log_prob``, ``log_prob``, ``mode``), and

    q(x | c) = P0(c) · q0(x | c + v0) + P1(c) · q0(flip(x) | c + v1)

where ``flip`` mirrors the rigid part (the palm) in depth (:meth:`DepthFlipMixture.flip`, an involution with
a unit Jacobian, so ``q0(flip x)`` needs no correction), ``P1 = sigmoid(logit(c))`` is a learned branch
probability and ``v0``, ``v1`` are learned context offsets: each branch has a flow context of its own, so the
flipped tilt can take a pose of its own. In training, :meth:`DepthFlipMixture.enumerate` returns both branches
of every draw with their weights, so the discrete choice is summed out exactly and ``P1`` gets gradients. At
evaluation ``P1`` is temperature-scaled, ``sigmoid(logit / temperature)`` (``model.flip_temperature``; reverse
KL makes the learned weight overconfident, ``tools/flip_calibration.py`` chooses the temperature on validation).

:class:`~mhe.models.multi_hypothesis.MultiHypothesisModel` composes it around its flow when
``model.flip_mixture`` is true. Checkpoints written before the mixture was its own module keep its tensors at
the model's top level (``flip_head.*``, ``branch_context``) and the base flow at ``flow.*``;
:func:`upgrade_state_dict` maps them onto this module's names (``flow.flip_head.*``, ``flow.branch_context``,
``flow.base.*``) at load.

Variants of the mixture that were tried and not adopted (shared branches, one palm tilt per branch, each
branch's own KL) are described with their validation numbers in ``docs/variants.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mhe.flows import ConditionalFlow


class DepthFlipMixture(nn.Module):
    """A base conditional flow over ``(6D rotation, pose)`` and its depth flip, mixed by a learned weight.

    Args:
        base: the flow ``q0(x | c)``; its first six variables are the global rotation in 6D.
        reflection: ``S (3, 3)``, the reflection across the rigid part's plane in the body model's frame
            (:meth:`~mhe.models.multi_hypothesis.BodySpec.flip_reflection`).
        context_dim: C, the width of the context.
        temperature: the branch weight's logit is divided by it in eval mode (1: the weight as trained).
    """

    reflection: Tensor

    def __init__(self, base: ConditionalFlow, reflection: Tensor, context_dim: int, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"model.flip_temperature must be positive, got {temperature!r}")
        self.base = base
        self.register_buffer("reflection", reflection.float(), persistent=False)
        self.flip_head = nn.Linear(context_dim, 1)  # logit of the flipped branch's probability
        nn.init.zeros_(self.flip_head.weight)
        nn.init.zeros_(self.flip_head.bias)  # both tilts equally likely at the start
        # each branch's flow context is the encoder's plus a learned vector (zero at the start)
        self.branch_context = nn.Parameter(torch.zeros(2, context_dim))
        self.temperature = float(temperature)

    # -- the flip -------------------------------------------------------------------------------

    def flip(self, theta: Tensor) -> Tensor:
        """The depth flip of flow variables ``θ (..., D)``: the 6D rotation (a, b) becomes that of
        ``R' = diag(1, 1, -1) · R · S`` (S: the reflection), the pose is unchanged.

        The lengths |a|, |b⊥| and the component b·a/|a| are kept, and R ↦ R' multiplies R by rotations on
        both sides (``diag(1, 1, -1) = -diag(-1, -1, 1)``, ``S = -(rotation by π about the normal)``),
        which preserves the invariant measure of rotations: the map is an involution with a unit
        Jacobian, so ``q0(flip(x))`` is a density without correction."""
        a, b = theta[..., 0:3], theta[..., 3:6]
        na = torch.linalg.vector_norm(a, dim=-1, keepdim=True)
        r1 = a / na
        b_par = (b * r1).sum(-1, keepdim=True)
        b_perp = b - b_par * r1
        nb = torch.linalg.vector_norm(b_perp, dim=-1, keepdim=True)
        r2 = b_perp / nb
        R = torch.stack([r1, r2, torch.linalg.cross(r1, r2, dim=-1)], dim=-1)
        mirror = torch.tensor([1.0, 1.0, -1.0], dtype=theta.dtype, device=theta.device)
        R = mirror[:, None] * (R @ self.reflection.to(theta.dtype))
        return torch.cat([na * R[..., 0], b_par * R[..., 0] + nb * R[..., 1], theta[..., 6:]], dim=-1)

    # -- the branches ---------------------------------------------------------------------------

    def log_weights(self, ctx: Tensor) -> tuple[Tensor, Tensor]:
        """log P(not flipped), log P(flipped) ``(B, 1)`` each, from the context ``(B, C)``: ``sigmoid(±logit)``,
        in eval mode with the logit divided by :attr:`temperature` (post-hoc calibration; every density
        and sample of the eval-mode mixture uses the calibrated weights)."""
        logit = self.flip_head(ctx)
        if not self.training and self.temperature != 1.0:
            logit = logit / self.temperature
        return torch.nn.functional.logsigmoid(-logit), torch.nn.functional.logsigmoid(logit)

    def branch_contexts(self, ctx: Tensor) -> tuple[Tensor, Tensor]:
        """The base flow's context of the unflipped and of the flipped branch ``(B, C)`` each."""
        return ctx + self.branch_context[0], ctx + self.branch_context[1]

    def branches(self, ctx: Tensor, num_samples: int,
                 temperature: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Draws of both branches and their mixture densities: ``(x0, log q(x0), x1, log q(x1), log P1)`` with
        ``x0 (B, S, D)`` drawn from q0(· | c0), ``x1 = flip(u1)`` with ``u1`` drawn from q0(· | c1), the log-densities
        ``(B, S)`` under the whole mixture and ``log P1 (B, 1)``. The unflipped branch is drawn first."""
        c0, c1 = self.branch_contexts(ctx)
        x0, log_q0_x0 = self.base.rsample_and_log_prob(c0, num_samples, temperature)
        u1, log_q1_u1 = self.base.rsample_and_log_prob(c1, num_samples, temperature)
        x1 = self.flip(u1)
        log_p0, log_p1 = self.log_weights(ctx)
        # flip is an involution with a unit Jacobian: q0(flip x | c1) is the flipped branch's density at x
        log_q1_x0 = self.base.log_prob(self.flip(x0), c1)
        log_q0_x1 = self.base.log_prob(x1, c0)
        log_q_x0 = torch.logaddexp(log_p0 + log_q0_x0, log_p1 + log_q1_x0)
        log_q_x1 = torch.logaddexp(log_p0 + log_q0_x1, log_p1 + log_q1_u1)
        return x0, log_q_x0, x1, log_q_x1, log_p1

    # -- the interface of the base flow ---------------------------------------------------------

    def enumerate(self, ctx: Tensor, num_samples: int, temperature: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
        """Both branches of S draws, for training: ``x (B, 2S, D)`` (the S unflipped draws, then the S flipped
        ones), their mixture log-density ``(B, 2S)`` and weights ``(B, 2S)`` summing to 1 per row (P0 / S and
        P1 / S): an expectation under q is the weighted sum, with the branch choice summed out exactly."""
        x0, log_q0, x1, log_q1, log_p1 = self.branches(ctx, num_samples, temperature)
        p1 = log_p1.exp().expand(-1, num_samples)
        return torch.cat([x0, x1], 1), torch.cat([log_q0, log_q1], 1), torch.cat([1 - p1, p1], 1) / num_samples

    def rsample_and_log_prob(self, ctx: Tensor, num_samples: int, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
        """S draws ``(B, S, D)`` of the mixture and their log-density ``(B, S)``: each draw takes the flipped
        branch with probability P1 (one uniform number per draw, after both branches are drawn)."""
        x0, log_q0, x1, log_q1, log_p1 = self.branches(ctx, num_samples, temperature)
        pick = torch.rand(log_q0.shape, device=log_q0.device) < log_p1.exp()
        return torch.where(pick[..., None], x1, x0), torch.where(pick, log_q1, log_q0)

    def mode(self, ctx: Tensor) -> tuple[Tensor, Tensor]:
        """The zero-noise draw ``(B, 1, D)`` of the more probable branch and its log-density ``(B, 1)``
        (no random numbers drawn)."""
        x0, log_q0, x1, log_q1, log_p1 = self.branches(ctx, 1, 0.0)
        pick = log_p1 > math.log(0.5)
        return torch.where(pick[..., None], x1, x0), torch.where(pick, log_q1, log_q0)

    def log_prob(self, x: Tensor, ctx: Tensor) -> Tensor:
        """``log q(x | ctx)`` of flow variables ``x (B, D)`` → ``(B,)``."""
        log_p0, log_p1 = self.log_weights(ctx)
        c0, c1 = self.branch_contexts(ctx)
        return torch.logaddexp(log_p0[:, 0] + self.base.log_prob(x, c0),
                               log_p1[:, 0] + self.base.log_prob(self.flip(x), c1))

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:g}"


#: Where checkpoints written before the mixture was its own module kept its tensors (model-level names).
_OLD_LAYOUT = {"flip_head.weight": "flow.flip_head.weight", "flip_head.bias": "flow.flip_head.bias",
               "branch_context": "flow.branch_context"}


def upgrade_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A model state dict of the old layout (the mixture inline in the model: ``flip_head.*``,
    ``branch_context`` and the base flow at ``flow.*``) renamed to this module's (``flow.flip_head.*``,
    ``flow.branch_context``, ``flow.base.*``); any other state dict is returned unchanged (as a new dict)."""
    if "flip_head.weight" not in state:
        return dict(state)
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key in _OLD_LAYOUT:
            out[_OLD_LAYOUT[key]] = value
        elif key.startswith("flow."):
            out["flow.base." + key[len("flow."):]] = value
        else:
            out[key] = value
    return out
