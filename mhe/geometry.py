"""Geometry shared by the hand, body and toy code: rotations, cameras, normalisation, alignment.

Rotations go through `roma` (axis-angle, matrices, the continuous 6D representation of Zhou et al.,
CVPR 2019). Cameras follow OpenCV: x right, y down, z forward (depth, larger is farther). The
official MHEntropy hand camera is orthographic in crop coordinates ``[-1, 1]``:
``uv = exp(log_scale) * xyz[..., :2] + trans``. Hand joints are compared after making them relative to
a root joint and dividing by one bone length (the paper's convention), and PA-MPJPE aligns with a
similarity transform (Procrustes / Umeyama). Every function broadcasts over leading dimensions ``...``
and creates nothing on a fixed device.
"""

from __future__ import annotations

import roma
import torch
from torch import Tensor

__all__ = [
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "rot6d_to_matrix",
    "matrix_to_rot6d",
    "project_orthographic",
    "project_pinhole",
    "root_relative",
    "procrustes_align",
    "crop_to_pixels",
    "pixels_to_crop",
]


def _check_last(x: Tensor, sizes: tuple[int, ...], name: str, what: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {what}, got {type(x).__name__}")
    if x.dim() < len(sizes) or tuple(x.shape[x.dim() - len(sizes):]) != sizes:
        raise ValueError(f"{name} must have shape {what}, got {tuple(x.shape)}")


def axis_angle_to_matrix(aa: Tensor) -> Tensor:
    """Rotation vectors ``aa (..., 3)`` (axis times angle in radians) to matrices ``(..., 3, 3)``."""
    _check_last(aa, (3,), "aa", "(..., 3)")
    return roma.rotvec_to_rotmat(aa)


def matrix_to_axis_angle(R: Tensor) -> Tensor:
    """Rotation matrices ``R (..., 3, 3)`` to rotation vectors ``(..., 3)`` with angle in ``[0, pi]``."""
    _check_last(R, (3, 3), "R", "(..., 3, 3)")
    return roma.rotmat_to_rotvec(R)


def rot6d_to_matrix(x: Tensor) -> Tensor:
    """6D rotation representation ``x (..., 6)`` to rotation matrices ``(..., 3, 3)``.

    ``x[..., :3]`` and ``x[..., 3:]`` are two (unnormalised) vectors; Gram-Schmidt turns them into the
    first two columns of ``R`` and their cross product is the third (Zhou et al. 2019, as in ProHMR).
    """
    _check_last(x, (6,), "x", "(..., 6)")
    return roma.special_gramschmidt(torch.stack((x[..., :3], x[..., 3:]), dim=-1))


def matrix_to_rot6d(R: Tensor) -> Tensor:
    """Rotation matrices ``R (..., 3, 3)`` to the 6D representation ``(..., 6)``: first two columns."""
    _check_last(R, (3, 3), "R", "(..., 3, 3)")
    return torch.cat((R[..., :, 0], R[..., :, 1]), dim=-1)


def project_orthographic(xyz: Tensor, log_scale: Tensor, trans: Tensor) -> Tensor:
    """Weak-perspective projection to crop coordinates (the official MHEntropy hand camera).

    ``xyz (..., J, 3)``, ``log_scale (...)``, ``trans (..., 2)`` -> ``uv (..., J, 2)`` with
    ``uv = exp(log_scale) * xyz[..., :2] + trans``. Depth ``z`` is dropped: every 3D pose that differs
    only in depth projects to the same ``uv`` (the ambiguity MHEntropy models).
    """
    _check_last(xyz, (3,), "xyz", "(..., J, 3)")
    _check_last(trans, (2,), "trans", "(..., 2)")
    if xyz.dim() < 2:
        raise ValueError(f"xyz must have shape (..., J, 3), got {tuple(xyz.shape)}")
    return torch.exp(log_scale)[..., None, None] * xyz[..., :2] + trans[..., None, :]


def project_pinhole(xyz: Tensor, K: Tensor) -> Tensor:
    """Perspective projection with intrinsics ``K (..., 3, 3)`` of camera-frame points ``xyz (..., J, 3)``.

    Returns pixels ``uv (..., J, 2) = (K xyz)[:2] / (K xyz)[2]``. Points must lie in front of the camera
    (``z > 0`` in the OpenCV convention); points at ``z = 0`` give inf.
    """
    _check_last(xyz, (3,), "xyz", "(..., J, 3)")
    _check_last(K, (3, 3), "K", "(..., 3, 3)")
    uvw = torch.matmul(xyz, K.transpose(-1, -2))
    return uvw[..., :2] / uvw[..., 2:3]


def root_relative(
    joints: Tensor, root: int = 4, bone: tuple[int, int] = (4, 5)
) -> tuple[Tensor, Tensor]:
    """Subtract the root joint and divide by one bone length.

    ``joints (..., J, 3)`` -> ``(normalised (..., J, 3), scale (...))`` where ``scale`` is the length of
    ``bone``. Defaults are the paper's hand convention in this package's keypoint order (root = middle
    MCP, bone = middle MCP -> PIP); multiply by a reference bone length to get metric units back.
    """
    _check_last(joints, (3,), "joints", "(..., J, 3)")
    if joints.dim() < 2:
        raise ValueError(f"joints must have shape (..., J, 3), got {tuple(joints.shape)}")
    num = joints.shape[-2]
    for name, idx in (("root", root), ("bone[0]", bone[0]), ("bone[1]", bone[1])):
        if not -num <= idx < num:
            raise IndexError(f"{name}={idx} is out of range for {num} joints")
    scale = torch.linalg.vector_norm(joints[..., bone[1], :] - joints[..., bone[0], :], dim=-1)
    centred = joints - joints[..., root : root + 1, :]
    # A zero-length bone only happens for degenerate input; keep the result finite instead of NaN.
    return centred / scale.clamp_min(torch.finfo(joints.dtype).tiny)[..., None, None], scale


def procrustes_align(pred: Tensor, gt: Tensor) -> Tensor:
    """Align ``pred (..., J, 3)`` to ``gt (..., J, 3)`` with the best similarity transform.

    Minimises ``sum_j |s R pred_j + t - gt_j|^2`` over a scale ``s``, a proper rotation ``R``
    (no reflection) and a translation ``t`` (Umeyama 1991, through ``roma.rigid_points_registration``);
    returns the aligned prediction ``(..., J, 3)``. PA-MPJPE is the mean distance to ``gt`` after this.
    """
    _check_last(pred, (3,), "pred", "(..., J, 3)")
    _check_last(gt, (3,), "gt", "(..., J, 3)")
    if pred.shape[-2] != gt.shape[-2]:
        raise ValueError(
            f"pred and gt must hold the same joints, got {pred.shape[-2]} and {gt.shape[-2]}"
        )
    if pred.shape[-2] < 3:
        raise ValueError("procrustes_align needs at least 3 joints to fix a rotation")
    pred, gt = torch.broadcast_tensors(pred, gt)
    R, t, s = roma.rigid_points_registration(pred, gt, compute_scaling=True)
    return s[..., None, None] * torch.matmul(pred, R.transpose(-1, -2)) + t[..., None, :]


def crop_to_pixels(uv: Tensor, size: int = 256) -> Tensor:
    """Crop coordinates in ``[-1, 1]`` to pixels in ``[0, size]``; shapes ``(..., 2)`` are kept."""
    return (uv + 1.0) * (size / 2.0)


def pixels_to_crop(px: Tensor, size: int = 256) -> Tensor:
    """Pixels in ``[0, size]`` to crop coordinates in ``[-1, 1]``; inverse of :func:`crop_to_pixels`."""
    return px * (2.0 / size) - 1.0
