"""Pose priors: the soft box and ball log-densities and the official constants, in one place.

Every prior here is the log of an *unnormalised* density that is flat inside a region and falls off
quadratically outside it, so it never fights the likelihood where the pose is plausible but keeps the
entropy term from spreading hypotheses without bound (``docs/method.md``, "The pose prior"). The hand
model (:mod:`mhe.models.hand`) combines them (and the anatomical joint limits of :mod:`mhe.body.limits`)
through :func:`hand_log_prior`; the toy arm uses :func:`box_prior` on its joint angles.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from mhe.utils import has_values

if TYPE_CHECKING:
    from mhe.body.limits import FingerLimits

# The official hand priors: a soft box on the 45 MANO PCA coefficients, a soft ball on the global
# rotation (axis-angle), a tight soft box on the shape β.
PCA_HALF_WIDTH, PCA_WEIGHT = 2.0, 50.0
ROT_RADIUS, ROT_WEIGHT = math.pi, 5.0
BETA_HALF_WIDTH, BETA_WEIGHT = 0.03, 50.0
# For the per-joint axis-angle / 6D flow options (not in the official code): a soft box of ±π/2 per
# joint axis around the mean pose.
AA_HALF_WIDTH, AA_WEIGHT = math.pi / 2, 50.0
# The official per-joint axis-angle option: MANO's flat hand mean and a soft ball ‖θ‖ <= π on the 45-D
# finger vector (weighted as the rotation ball).
AA_BALL_RADIUS, AA_BALL_WEIGHT = math.pi, 5.0
# Weight of the 6D orthonormality penalty (the 6D → rotation map has a 3-D fibre per joint).
ORTHO_WEIGHT = 50.0


def box_prior(x: Tensor, half_width: float | Tensor, weight: float) -> Tensor:
    """Soft box log-prior -weight·Σ_D relu(|x|/half_width - 1)²: flat inside, quadratic outside.

    Args:
        x: (..., D).
        half_width: scalar or (D,) half-widths of the box (> 0).
        weight: penalty weight.

    Returns:
        (...) log of the unnormalised prior.
    """
    half_width = torch.as_tensor(half_width, dtype=x.dtype, device=x.device)
    if has_values(half_width) and (half_width <= 0).any():
        raise ValueError("box_prior half_width must be > 0")
    return -weight * torch.relu(x.abs() / half_width - 1).square().sum(-1)


def ball_prior(x: Tensor, radius: float, weight: float) -> Tensor:
    """Soft ball log-prior -weight·relu(‖x‖/radius - 1)²: flat inside the ball.

    Args:
        x: (..., D).
        radius: ball radius (> 0).
        weight: penalty weight.

    Returns:
        (...) log of the unnormalised prior.
    """
    if not radius > 0:
        raise ValueError(f"ball_prior radius must be > 0, got {radius}")
    return -weight * torch.relu(x.norm(dim=-1) / radius - 1).square()


def rot6d_orthonormality(theta: Tensor) -> Tensor:
    """Squared deviation of 6D rotations from an orthonormal pair: ``θ (..., R·6)`` → ``(...)``.

    Each 6-vector (a, b) should have unit columns and a·b = 0; the sum over the R rotations of
    ``(|a|-1)² + (|b|-1)² + (a·b)²`` is returned (0 exactly on valid rotations).
    """
    a, b = theta.unflatten(-1, (-1, 2, 3)).unbind(-2)
    off = (a.norm(dim=-1) - 1).square() + (b.norm(dim=-1) - 1).square() + (a * b).sum(-1).square()
    return off.sum(-1)


def hand_log_prior(
    theta: Tensor,
    pose_repr: str,
    global_orient: Tensor,
    betas: Tensor,
    *,
    pose_prior: str = "box",
    offset_aa: Tensor | None = None,
    full_aa: Tensor | None = None,
    limits: FingerLimits | None = None,
    joint_limit_weight: float | None = None,
) -> Tensor:
    """The hand's log-prior of S hypotheses per item ``(B, S)``: finger pose, global rotation and shape.

    Args:
        theta: (B, S, D) the flow's finger-pose samples (PCA coefficients, axis-angle or 6D per joint).
        pose_repr: "pca", "axis_angle" or "6d" (6D adds the orthonormality penalty whatever the prior).
        global_orient: (B, 3) axis-angle of the deterministic head, or (B, S, 3) when the flow samples
            the rotation (official ball of radius π either way).
        betas: (B, 10) shape (official tight box).
        pose_prior: "box" (PCA: the official box on the coefficients; per-joint: a box of ±π/2 per
            axis on ``offset_aa``), "official" (PCA: the box; per-joint: a ball ‖full_aa‖ <= π) or
            "joint_limits" (``limits.log_prior(full_aa)``, plus the PCA box for PCA).
        offset_aa: (B, S, 45) the poses as axis-angle offsets from MANO's mean pose ("box", per-joint).
        full_aa: (B, S, 45) the poses as full local rotations ("official" per-joint, "joint_limits").
        limits: a :class:`mhe.body.limits.FingerLimits` ("joint_limits").
        joint_limit_weight: its weight per squared radian (default ``mhe.body.limits.JOINT_LIMIT_WEIGHT``).

    Returns:
        (B, S) log of the unnormalised prior.
    """
    if pose_prior not in ("box", "official", "joint_limits"):
        raise ValueError(f"pose_prior must be 'box', 'official' or 'joint_limits', got {pose_prior!r}")

    def need(x: Tensor | None, what: str) -> Tensor:
        if x is None:
            raise ValueError(f"pose_repr={pose_repr!r} with pose_prior={pose_prior!r} needs {what}")
        return x

    def need_limits() -> FingerLimits:
        if limits is None:
            raise ValueError(
                f"pose_prior={pose_prior!r} needs limits (a mhe.body.limits.FingerLimits, e.g. finger_limits(mano))"
            )
        return limits

    if pose_repr == "pca":
        pose = box_prior(theta, PCA_HALF_WIDTH, PCA_WEIGHT)
    elif pose_prior == "box":
        pose = box_prior(need(offset_aa, "offset_aa"), AA_HALF_WIDTH, AA_WEIGHT)
    elif pose_prior == "official":
        pose = ball_prior(need(full_aa, "full_aa"), AA_BALL_RADIUS, AA_BALL_WEIGHT)
    else:
        pose = torch.zeros_like(theta[..., 0])
    if pose_prior == "joint_limits":
        lim, aa = need_limits(), need(full_aa, "full_aa")
        pose = pose + (lim.log_prior(aa) if joint_limit_weight is None else lim.log_prior(aa, joint_limit_weight))
    if pose_repr == "6d":
        pose = pose - ORTHO_WEIGHT * rot6d_orthonormality(theta)
    rot = ball_prior(global_orient, ROT_RADIUS, ROT_WEIGHT)
    if rot.dim() == 1:
        rot = rot[:, None]
    beta = box_prior(betas, BETA_HALF_WIDTH, BETA_WEIGHT)
    return pose + rot + beta[:, None]
