"""What the synthetic hands' poses and rotations are drawn from: the MANO model's PCA pose space with
anatomical joint limits, and the global rotation ranges.

:class:`HandKinematics` holds, for one MANO model (real or stand-in), its 45-D PCA basis and per finger
joint the anatomical axes (flexion, abduction, twist) derived from the model's own rest geometry, with
the limits of :mod:`mhe.body.limits`; :meth:`HandKinematics.pose_params` turns drawn numbers into poses
inside those limits and inside the paper's PCA prior box (:data:`PCA_BOX`). Shapes stay in the prior box
:data:`BETA_BOX`. The global rotation is uniform, or with ``rotation="ho3d"`` (:data:`ROTATIONS`) a
uniform rotation mapped into an HO3D-like range by :func:`ho3d_rotvecs` (the palm normal within
:data:`HO3D_MAX_TILT` degrees of the viewing axis); :func:`palm_tilt` measures that angle.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch import Tensor

from mhe.body.limits import FINGER_LIMITS, JOINT_KIND, anatomical_axes, palm_normal

__all__ = ["BETA_BOX", "HO3D_MAX_TILT", "PCA_BOX", "ROTATIONS", "HandKinematics", "ho3d_rotvecs", "kinematics",
           "palm_tilt"]

PCA_BOX = 2.0  # the paper's PCA prior is flat for |x| <= 2
BETA_BOX = 0.03  # ... and for |beta| <= 0.03
ROTATIONS = ("uniform", "ho3d")  # SyntheticHands(rotation=...): the first is the default
# rotation="ho3d": the palm normal lies within this many degrees of the viewing axis (either way).
HO3D_MAX_TILT = 60.0
_COS_TILT = 0.5  # cos(HO3D_MAX_TILT), exact

# Per articulated joint (MANO joints 1..15) the anatomical limits of mhe.body.limits: flexion range,
# |abduction| and |twist| in radians (FINGER_LIMITS, JOINT_KIND).
_FINGER_CHAINS = {"index": (1, 2, 3), "middle": (4, 5, 6), "pinky": (7, 8, 9), "ring": (10, 11, 12),
                  "thumb": (13, 14, 15)}  # fmt: skip


class HandKinematics:
    """What pose sampling needs from one MANO model: its PCA basis and anatomical joint axes.

    Attributes (float64): ``components (45, 45)`` (rows), ``pinv (45, 45)``, ``mean (45,)``,
    ``rest (21, 3)`` keypoints of the flat hand, ``palm (3,)`` the unit normal out of its palm,
    ``axes (15, 3, 3)`` per articulated joint the rows (flexion, abduction, twist), ``limits (15, 4)``
    (flex min, flex max, |abduction|, |twist|).
    Flexion curls a finger towards the palm: the axis is bone x palm normal (for the thumb, bone x
    the direction across the palm towards the little finger).
    """

    def __init__(self, mano: Any) -> None:
        comps = getattr(mano, "hand_components", None)
        if comps is None or getattr(mano, "use_pca", True) is False or tuple(comps.shape) != (45, 45):
            raise ValueError(
                "SyntheticHands needs a MANO model with the full 45-component PCA pose space; "
                "build it with mhe.body.load_mano() (use_pca=True, num_pca_comps=45)."
            )
        self.components = comps.detach().cpu().double()
        self.pinv = torch.linalg.pinv(self.components)
        self.mean = mano.hand_mean.detach().cpu().double().reshape(45)
        dtype = mano.shapedirs.dtype
        device = mano.shapedirs.device
        flat = (-self.mean @ self.pinv).to(dtype=dtype, device=device)  # all local rotations zero
        with torch.no_grad():
            zeros = torch.zeros(1, 13, dtype=dtype, device=device)
            out = mano(zeros[:, :3], flat[None], zeros[:, 3:])
        J = out.joints[0].detach().cpu().double()
        self.rest = J
        side = getattr(mano, "side", "right")
        self.palm = palm_normal(J, side)  # unit normal out of the palm, in the model frame (rest hand, mean shape)
        self.axes = anatomical_axes(J, side)
        self.limits = torch.tensor([FINGER_LIMITS[k] for k in JOINT_KIND], dtype=torch.float64)

    def to_components(self, aa: Tensor) -> Tensor:
        """Finger axis-angle aa (..., 45) -> (flex, abduction, twist) per joint (..., 15, 3)."""
        return torch.einsum("jab,...jb->...ja", self.axes, aa.reshape(*aa.shape[:-1], 15, 3))

    def from_components(self, c: Tensor) -> Tensor:
        """Inverse of :meth:`to_components`: (..., 15, 3) -> axis-angle (..., 45)."""
        return torch.einsum("jab,...ja->...jb", self.axes, c).reshape(*c.shape[:-2], 45)

    def clamp(self, aa: Tensor) -> Tensor:
        """Clamp each joint's flexion, abduction and twist of aa (..., 45) to the joint limits."""
        c = self.to_components(aa)
        lim = self.limits
        c = torch.stack([
            torch.maximum(torch.minimum(c[..., 0], lim[:, 1]), lim[:, 0]),
            torch.maximum(torch.minimum(c[..., 1], lim[:, 2]), -lim[:, 2]),
            torch.maximum(torch.minimum(c[..., 2], lim[:, 3]), -lim[:, 3]),
        ], dim=-1)  # fmt: skip
        return self.from_components(c)

    def to_params(self, aa: Tensor) -> Tensor:
        """Finger axis-angle (..., 45) -> PCA coefficients (..., 45) (exact for a full-rank basis)."""
        return (aa - self.mean) @ self.pinv

    def to_axis_angle(self, params: Tensor) -> Tensor:
        """PCA coefficients (..., 45) -> finger axis-angle (..., 45), the mean pose added."""
        return params @ self.components + self.mean

    def pose_params(self, z: Tensor, curl: np.ndarray) -> Tensor:
        """One plausible pose for each of B items from its random numbers: the PCA draws z (B, 45)
        float64 and the finger curls (B, 5) (grasp level, noise and stretched-out fingers applied)
        -> PCA coefficients (B, 45) float64 inside the joint limits and the PCA box."""
        c = self.to_components(self.to_axis_angle(z))
        for f, joints in enumerate(_FINGER_CHAINS.values()):
            bend = torch.from_numpy(0.75 * curl[:, f])
            for j in joints:
                c[:, j - 1, 0] += bend * self.limits[j - 1, 1]
        aa = self.from_components(c)
        params = z
        for _ in range(3):
            params = self.to_params(self.clamp(aa)).clamp(-PCA_BOX, PCA_BOX)
            aa = self.to_axis_angle(params)
        return params


_KINEMATICS: dict[int, HandKinematics] = {}


def kinematics(mano: Any) -> HandKinematics:
    """The :class:`HandKinematics` of a MANO model, built once per model object."""
    key = id(mano)
    if key not in _KINEMATICS:
        _KINEMATICS[key] = HandKinematics(mano)
    return _KINEMATICS[key]


def ho3d_rotvecs(quats: np.ndarray, palm: np.ndarray) -> np.ndarray:
    """Uniform rotations, mapped into the HO3D-like range (``rotation="ho3d"``) -> rotation vectors (N, 3).

    quats (N, 4) are the (unnormalised) quaternions ``Rotation.random`` draws, palm (3,) the model's
    palm normal. The rotation R takes the palm normal to n = R palm, at polar angle theta from the
    viewing axis +z; n is turned, within its vertical plane (about the axis z x n), to the angle
    theta' with cos theta' = sign(cos theta) (1 - (1 - |cos theta|) (1 - cos HO3D_MAX_TILT)). A uniform
    rotation has cos theta uniform in [-1, 1], so cos theta' is uniform on the two caps |cos| >=
    cos HO3D_MAX_TILT (the palm towards or away from the camera, equally likely), the azimuth of n
    (the in-plane angle) stays uniform, and so does the roll about n: the result is uniform over the
    rotations whose palm normal lies in the caps. Only IEEE-exact arithmetic (+, -, x, /, sqrt) on
    top of scipy's conversions, element by element, so that one item or many give the same bits.
    """
    rot = Rotation.from_quat(quats)
    q, m = rot.as_quat(), rot.as_matrix()
    n = m[:, :, 0] * palm[0] + m[:, :, 1] * palm[1] + m[:, :, 2] * palm[2]  # (N, 3) R palm
    c = n[:, 2]
    h = np.sqrt(n[:, 0] * n[:, 0] + n[:, 1] * n[:, 1])
    c2 = np.where(c < 0, -1.0, 1.0) * (1.0 - (1.0 - np.abs(c)) * (1.0 - _COS_TILT))
    h2 = np.sqrt(np.maximum(1.0 - c2 * c2, 0.0))
    flat = h > 0
    safe = np.where(flat, h, 1.0)
    ax, ay = np.where(flat, n[:, 0] / safe, 1.0), np.where(flat, n[:, 1] / safe, 0.0)  # azimuth of n
    # Turning about k = z x a = (-ay, ax, 0) by phi takes polar angle theta to theta + phi.
    cos_phi = np.minimum(c * c2 + h * h2, 1.0)
    sin_phi = h2 * c - c2 * h
    half_cos = np.sqrt((1.0 + cos_phi) / 2.0)  # |phi| <= 90 degrees: no division by zero below
    half_sin = sin_phi / (2.0 * half_cos)
    px, py, pw = -ay * half_sin, ax * half_sin, half_cos  # the turn as a quaternion (x, y, 0, w)
    qx, qy, qz, qw = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    # Hamilton product turn * R (scalar last): R first, then the turn.
    out = np.stack([
        pw * qx + qw * px + py * qz,
        pw * qy + qw * py - px * qz,
        pw * qz + px * qy - py * qx,
        pw * qw - px * qx - py * qy,
    ], axis=-1)  # fmt: skip
    return Rotation.from_quat(out).as_rotvec()


def palm_tilt(global_orient: Tensor, palm: Tensor) -> Tensor:
    """Angle in degrees (...,) between the palm normal and the viewing axis, either way: 0 when the palm
    or the back of the hand faces the camera squarely, 90 when the hand is seen edge-on.

    global_orient (..., 3) axis-angle (an item's ``global_orient``), palm (3,) the model's palm normal
    (``SyntheticHands.kin.palm``). With ``rotation="ho3d"`` every item has tilt <= :data:`HO3D_MAX_TILT`.
    """
    R = Rotation.from_rotvec(global_orient.detach().double().reshape(-1, 3).cpu().numpy())
    n = R.apply(palm.detach().double().cpu().numpy())
    tilt = np.degrees(np.arccos(np.clip(np.abs(n[:, 2]) / np.linalg.norm(n, axis=-1), 0.0, 1.0)))
    return torch.from_numpy(tilt).reshape(global_orient.shape[:-1])

