"""Anatomical finger-joint limits for MANO: is a hypothesis a hand a person can make?

Each of MANO's 15 articulated finger joints has a local rotation (axis-angle, 3 numbers). Projected on
three anatomical axes derived from the model's own rest geometry, it splits into **flexion** (curling
towards the palm), **abduction** (spreading sideways) and **twist** (about the bone). A real finger
flexes through a wide range, spreads a little at the knuckles and hardly twists at all; the limits
below say by how much, per joint kind. They are the limits the synthetic benchmark
(:mod:`mhe.data.synthetic`) draws its hands within, chosen from the ranges of motion reported in hand
anatomy (MCP flexion up to ~90°, PIP ~100°, DIP ~70-80°, a few degrees of passive twist) and loosened a
little for MANO's approximate joint centres.

The split is linear (the axis-angle vector projected on the three axes), which is accurate for the
small abduction and twist that matter here and is differentiable everywhere, so the same numbers give
a soft prior (:meth:`FingerLimits.log_prior`) and a hard plausibility test (:meth:`FingerLimits.plausible`).

Inputs are always the **full local rotations** of the 15 finger joints, (..., 45), i.e. the rotations
of a MANO built with ``flat_hand_mean=True`` (for ``flat_hand_mean=False`` add ``hands_mean``; the
hand spec of :mod:`mhe.models.hand` does this for every pose parameterisation).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from mhe.body.keypoints import HAND_PARENTS

__all__ = ["FINGER_LIMITS", "JOINT_KIND", "PLAUSIBLE_TOLERANCE", "FingerLimits", "anatomical_axes", "finger_limits",
           "palm_normal"]

# Per joint kind: (flexion min, flexion max, |abduction| max, |twist| max) in radians.
FINGER_LIMITS: dict[str, tuple[float, float, float, float]] = {
    "mcp": (-0.3, 1.6, 0.35, 0.15),
    "pip": (-0.05, 1.8, 0.08, 0.08),
    "dip": (-0.1, 1.3, 0.08, 0.08),
    "thumb_cmc": (-0.5, 1.0, 0.7, 0.4),
    "thumb_mcp": (-0.3, 1.0, 0.25, 0.2),
    "thumb_ip": (-0.3, 1.4, 0.08, 0.08),
}
# The kind of MANO joints 1..15 (index, middle, pinky, ring: MCP, PIP, DIP; then the thumb).
JOINT_KIND: tuple[str, ...] = ("mcp", "pip", "dip") * 4 + ("thumb_cmc", "thumb_mcp", "thumb_ip")
# A hypothesis is plausible when no joint leaves its limits by more than this (radians, ~7°). The
# benchmark clamps its hands into the limits and then into the PCA prior's box, which pushes a few
# joints up to ~0.11 rad back out; at 0.12 every validation hand of the benchmark passes (chosen on
# the validation split: 86 % pass at 0.05, 97 % at 0.08, 99.5 % at 0.10, 100 % at 0.12).
PLAUSIBLE_TOLERANCE = 0.12
# Weight of the soft joint-limit prior per squared radian outside a limit (0.1 rad out costs 2 nats).
JOINT_LIMIT_WEIGHT = 200.0


def rest_keypoints(mano: Any) -> Tensor:
    """The 21 keypoints (float64) of the mean-shape hand with every rotation zero (the flat hand)."""
    template = mano.v_template.detach().double()
    joints = mano.J_regressor.detach().double() @ template
    tips = template[mano.tip_vertex_ids.detach().cpu()]
    return torch.cat([joints, tips], dim=0)


def palm_normal(rest: Tensor, side: str = "right") -> Tensor:
    """The unit normal out of the palm ``(3,)`` float64, from the flat hand's keypoints ``rest (21, 3)``."""
    J = rest.double()
    palm = torch.linalg.cross(J[1] - J[7], J[4] - J[0])  # thumb side x forward: out of a right palm
    if side == "left":
        palm = -palm
    return palm / palm.norm()


def anatomical_axes(rest: Tensor, side: str = "right") -> Tensor:
    """Per finger joint the rows (flexion, abduction, twist) of its anatomical frame ``(15, 3, 3)``
    float64, from the 21 keypoints ``rest (21, 3)`` of the flat hand (every rotation zero)."""
    J = rest.double()
    thumb_side = J[1] - J[7]
    palm = palm_normal(J, side)
    across = 0.6 * palm - thumb_side / thumb_side.norm()
    child = {int(p): j for j, p in enumerate(HAND_PARENTS) if p > 0}  # finger joint -> next keypoint
    axes = torch.zeros(15, 3, 3, dtype=torch.float64)
    for j in range(1, 16):
        bone = J[child[j]] - J[j]
        bone = bone / bone.norm()
        flex = torch.linalg.cross(bone, across if j >= 13 else palm)
        flex = flex / flex.norm()
        axes[j - 1] = torch.stack([flex, torch.linalg.cross(flex, bone), bone])
    return axes


class FingerLimits(nn.Module):
    """Joint limits of one MANO model: anatomical axes ``(15, 3, 3)``, bounds ``lower, upper (15, 3)`` and
    the flat hand's palm normal ``palm (3,)``.

    Build it with :func:`finger_limits` (cached per model) or ``FingerLimits(mano)``; move it with ``.to``.
    Flexion's axis is bone × palm normal (for the thumb, bone × a direction across the palm towards the
    little finger), abduction's is flexion × bone, twist's is the bone; the bone of joint j runs from it
    to its child keypoint in the flat hand.
    """

    axes: Tensor
    lower: Tensor
    upper: Tensor

    def __init__(self, mano: Any) -> None:
        super().__init__()
        rest, side = rest_keypoints(mano), getattr(mano, "side", "right")
        axes = anatomical_axes(rest, side)
        lim = torch.tensor([FINGER_LIMITS[k] for k in JOINT_KIND], dtype=torch.float64)
        lower = torch.stack([lim[:, 0], -lim[:, 2], -lim[:, 3]], dim=-1)
        upper = torch.stack([lim[:, 1], lim[:, 2], lim[:, 3]], dim=-1)
        dtype = mano.shapedirs.dtype
        self.register_buffer("axes", axes.to(dtype), persistent=False)
        self.register_buffer("lower", lower.to(dtype), persistent=False)
        self.register_buffer("upper", upper.to(dtype), persistent=False)
        self.palm = palm_normal(rest, side)  # (3,) float64: the flat hand's palm normal (not a buffer)
        self.side = getattr(mano, "side", "right")

    @staticmethod
    def _check(aa: Tensor) -> None:
        if aa.shape[-1] != 45:
            raise ValueError(
                f"finger poses must be (..., 45) axis-angle of the 15 finger joints, got {tuple(aa.shape)}"
            )

    def components(self, aa: Tensor) -> Tensor:
        """Full local finger rotations ``aa (..., 45)`` → (flexion, abduction, twist) per joint ``(..., 15, 3)``."""
        self._check(aa)
        return torch.einsum("jab,...jb->...ja", self.axes.to(aa.dtype), aa.unflatten(-1, (15, 3)))

    def from_components(self, c: Tensor) -> Tensor:
        """Inverse of :meth:`components`: ``(..., 15, 3)`` → axis-angle ``(..., 45)``."""
        return torch.einsum("jab,...ja->...jb", self.axes.to(c.dtype), c).flatten(-2)

    def clamp(self, aa: Tensor) -> Tensor:
        """``aa (..., 45)`` with every joint's flexion, abduction and twist clamped into its limits."""
        c = self.components(aa)
        c = torch.maximum(torch.minimum(c, self.upper.to(c.dtype)), self.lower.to(c.dtype))
        return self.from_components(c)

    def violation(self, aa: Tensor) -> Tensor:
        """Radians by which each component leaves its limits (0 inside): ``(..., 45)`` → ``(..., 15, 3)``."""
        c = self.components(aa)
        return torch.relu(c - self.upper.to(c.dtype)) + torch.relu(self.lower.to(c.dtype) - c)

    def plausible(self, aa: Tensor, tolerance: float = PLAUSIBLE_TOLERANCE) -> Tensor:
        """Whether every finger joint of ``aa (..., 45)`` is within its limits up to ``tolerance`` → ``(...)`` bool."""
        return (self.violation(aa) <= tolerance).flatten(-2).all(-1)

    def log_prior(self, aa: Tensor, weight: float = JOINT_LIMIT_WEIGHT) -> Tensor:
        """Soft joint-limit log-prior ``-weight · Σ violation²`` (flat inside the limits): ``(..., 45)`` → ``(...)``."""
        return -weight * self.violation(aa).square().flatten(-2).sum(-1)

    def extra_repr(self) -> str:
        tol = PLAUSIBLE_TOLERANCE
        return f"side={self.side}, joints=15, tolerance={tol} rad ({math.degrees(tol):.1f}°)"


_CACHE: dict[int, FingerLimits] = {}


def finger_limits(mano: Any) -> FingerLimits:
    """The :class:`FingerLimits` of ``mano`` (built once per model object, on the CPU)."""
    key = id(mano)
    if key not in _CACHE or _CACHE[key].side != getattr(mano, "side", "right"):
        _CACHE[key] = FingerLimits(mano)
    return _CACHE[key]
