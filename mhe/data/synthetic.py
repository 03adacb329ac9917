"""Synthetic occluded hands: a license-free benchmark that is ambiguous in the ways HO3D is.

Each item is a MANO hand (real or stand-in, through :func:`mhe.body.load_mano`) in a plausible pose,
seen by the package's orthographic camera, with a convex "object" (sphere, box or cylinder) held near
it. Poses are drawn in the model's 45-D PCA space (correlated fingers) around its mean pose, plus a
shared grasp level that curls the fingers together; every finger joint's rotation is then split into
flexion / abduction / twist about anatomical axes derived from the model's own rest geometry (so the
same code serves the stand-in and the real MANO), clamped to per-joint limits, and mapped back into
the PCA box |x| <= 2 of the paper's prior. Shape ``betas`` stay inside the prior box |b| <= 0.03 and
the global rotation is uniform (or, with ``rotation="ho3d"``, limited to an HO3D-like range: the palm
normal within 60 degrees of the viewing axis). The camera scale and translation make the hand fill the
256 crop. A joint is *occluded* when the object lies on its viewing ray (``mhe.data.render.Occluder``),
when the hand's own rasterised surface is more than ``self_tolerance`` in front of it, or when it falls
outside the crop (or, with ``visibility="official"``, by HO3D's rule on the rendered depth map and hand
mask). The object is sized per item so that it covers about ``occlusion`` of the 20 non-root joints.
Items are generated on the fly, deterministically from (split, seed, index), optionally cached; a whole
split is generated many items at a time (:meth:`SyntheticHands.generate_many`: each item's random
numbers from its own stream, the MANO forward, camera, occluder and z-buffer batched), the same items.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.spatial.transform import Rotation
from torch import Tensor
from torch.utils.data import Dataset

from mhe.body import FINGER_OF_KEYPOINT, HAND_BONE, HAND_KEYPOINTS, HAND_PARENTS, HAND_ROOT, load_mano
from mhe.body.limits import FINGER_LIMITS, JOINT_KIND, anatomical_axes, palm_normal
from mhe.data.ho3d import official_visibility
from mhe.data.render import (
    OCCLUDER_KINDS,
    Occluder,
    depth_at_pixels,
    depth_in_windows,
    rasterize,
    rasterize_batch,
    render_crop,
)
from mhe.geometry import crop_to_pixels, project_orthographic
from mhe.utils import atomic_torch_save, display_path

__all__ = [
    "DEFAULT_SIZES",
    "HO3D_MAX_TILT",
    "OFFICIAL_CROP",
    "OFFICIAL_TOLERANCE",
    "OFFICIAL_WINDOW",
    "ROTATIONS",
    "VISIBILITY_RULES",
    "HandKinematics",
    "SyntheticHands",
    "consistent_alternative",
    "occluded_hands",
    "occlusion_rates",
    "occlusion_stats",
    "palm_tilt",
]

DEFAULT_SIZES = {"train": 20000, "val": 1000, "test": 1000}
# Bump when the generator changes what an item holds: disk caches of older items are then ignored.
GENERATOR_VERSION = 1
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
_SPLIT_NAME = {"train": "training", "val": "validation", "test": "test"}
_NON_ROOT = [j for j in range(21) if j != HAND_ROOT]
PCA_BOX = 2.0  # the paper's PCA prior is flat for |x| <= 2
BETA_BOX = 0.03  # ... and for |beta| <= 0.03
VISIBILITY_RULES = ("depth", "official")  # SyntheticHands(visibility=...): the first is the default
ROTATIONS = ("uniform", "ho3d")  # SyntheticHands(rotation=...): the first is the default
# visibility="official": HO3D's rule (mhe.data.ho3d.official_visibility) in pixels of the 256 px crop.
OFFICIAL_CROP = 256
OFFICIAL_WINDOW = 9
OFFICIAL_TOLERANCE = 0.040  # metres a joint may lie behind the depth map
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

    def sample_params(self, rng: np.random.Generator) -> Tensor:
        """One plausible pose: PCA coefficients (45,) inside the prior box, float64."""
        sigma = np.maximum(0.85 ** np.arange(45), 0.15)
        z = torch.from_numpy(rng.normal(0.0, sigma))
        c = self.to_components(self.to_axis_angle(z))
        # A shared grasp level curls the fingers together; now and then one finger stays out.
        grasp = rng.uniform(0.0, 1.0) ** 1.3
        curl = np.clip(grasp + rng.normal(0.0, 0.2, 5), 0.0, 1.0)
        curl[rng.uniform(size=5) < 0.12] = rng.uniform(0.0, 0.15)
        for f, joints in enumerate(_FINGER_CHAINS.values()):
            for j in joints:
                c[j - 1, 0] += 0.75 * curl[f] * self.limits[j - 1, 1]
        aa = self.from_components(c)
        params = z
        for _ in range(3):  # the limits and the PCA box, alternately; both hold closely at the end
            params = self.to_params(self.clamp(aa)).clamp(-PCA_BOX, PCA_BOX)
            aa = self.to_axis_angle(params)
        return params

    def pose_params(self, z: Tensor, curl: np.ndarray) -> Tensor:
        """:meth:`sample_params` for B poses at once from their random numbers: the PCA draws z (B, 45)
        float64 and the finger curls (B, 5) (grasp level, noise and stretched-out fingers applied)
        -> PCA coefficients (B, 45) float64, operation by operation as :meth:`sample_params`."""
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


def _kinematics(mano: Any) -> HandKinematics:
    key = id(mano)
    if key not in _KINEMATICS:
        _KINEMATICS[key] = HandKinematics(mano)
    return _KINEMATICS[key]


def _place_occluder(rel: Tensor, rng: np.random.Generator, occlusion: float, kind: str | None) -> Occluder | None:
    """An object near the hand that covers about ``occlusion`` of the 20 non-root joints (rel (21, 3) m)."""
    target = rng.binomial(20, occlusion)
    kind = kind or OCCLUDER_KINDS[rng.integers(len(OCCLUDER_KINDS))]
    R = torch.from_numpy(Rotation.random(random_state=rng).as_matrix())
    if kind == "sphere":
        half = torch.ones(3, dtype=torch.float64)
    elif kind == "box":
        half = torch.tensor([1.0, rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.0)], dtype=torch.float64)
    else:
        half = torch.tensor([rng.uniform(1.5, 3.0), 1.0, 1.0], dtype=torch.float64)
    anchor = int(rng.choice([j for j in range(21) if j != HAND_ROOT]))
    centre_xy = rel[anchor, :2] + torch.from_numpy(rng.normal(0.0, 0.008, 2))
    gap = rng.uniform(-0.005, 0.02)
    # The solid's half depth along the viewing axis at unit size (its support in z).
    if kind == "sphere":
        reach = 1.0
    elif kind == "box":
        reach = float((R[2].abs() * half).sum())
    else:
        cos = float(R[2, 0].abs())
        reach = cos * float(half[0]) + math.sqrt(max(0.0, 1 - cos * cos))
    non_root = torch.tensor([j for j in range(21) if j != HAND_ROOT])

    def make(size: float) -> Occluder:
        # The back of the solid stays `gap` in front of the anchor joint as it grows.
        centre = torch.cat([centre_xy, (rel[anchor, 2] - gap - size * reach).reshape(1)])
        return Occluder(kind, centre, R, half * size)

    if target == 0:
        return None
    lo, hi = math.log(0.004), math.log(0.08)
    if int(make(math.exp(hi)).hides(rel[non_root]).sum()) >= target:
        for _ in range(14):  # bisection on log size for the smallest object that covers `target` joints
            mid = (lo + hi) / 2
            if int(make(math.exp(mid)).hides(rel[non_root]).sum()) >= target:
                hi = mid
            else:
                lo = mid
    # 4 % larger, so that the last covered joint is not left on the surface, and rounded to the
    # float32 record the item stores, so that the record alone decides visibility.
    return Occluder.from_vector(make(1.04 * math.exp(hi)).to_vector().float().double())


_EMPTY_OCCLUDER = torch.zeros(16)  # a zero-sized sphere: hides nothing, renders nothing


def _slab_intervals(a: Tensor, b: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """Batched ``render._slab_interval``: depths z with |a + z b| <= h, a (B, N), b (B,), h (B,)."""
    inf = torch.full_like(a, float("inf"))
    flat = (b.abs() < 1e-12)[:, None]
    inside = a.abs() <= h[:, None]
    safe = torch.where(b.abs() < 1e-12, torch.ones_like(b), b)[:, None]
    z1, z2 = (-h[:, None] - a) / safe, (h[:, None] - a) / safe
    lo = torch.where(flat, torch.where(inside, -inf, inf), torch.minimum(z1, z2))
    hi = torch.where(flat, torch.where(inside, inf, -inf), torch.maximum(z1, z2))
    return lo, hi


def _quadratic_intervals(a: Tensor, b: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
    """Batched ``render._quadratic_interval``: depths z with |a + z b|^2 <= r^2, a (B, N, k), b (B, k), r (B,)."""
    A = (b * b).sum(-1)[:, None]
    B = 2 * (a * b[:, None]).sum(-1)
    C = (a * a).sum(-1) - (r * r)[:, None]
    inf = torch.full_like(C, float("inf"))
    along = A < 1e-12  # the ray runs along the axis: inside everywhere or nowhere
    disc = B * B - 4 * A * C
    root = disc.clamp_min(0).sqrt()
    two_a = torch.where(along, torch.ones_like(A), 2 * A)
    lo, hi = (-B - root) / two_a, (-B + root) / two_a
    hit = disc >= 0
    lo, hi = torch.where(hit, lo, inf), torch.where(hit, hi, -inf)
    inside = C <= 0
    return (torch.where(along, torch.where(inside, -inf, inf), lo),
            torch.where(along, torch.where(inside, inf, -inf), hi))


def _entry_depths(kind: Tensor, centre: Tensor, rotation: Tensor, half: Tensor, xy: Tensor) -> Tensor:
    """:meth:`Occluder.entry_depth` of B solids at once, each at its own N rays, with the same arithmetic.

    kind (B,) index into OCCLUDER_KINDS, centre (B, 3), rotation (B, 3, 3), half (B, 3) float64, xy
    (B, N, 2) -> entry depth (B, N) (+inf where the ray misses).
    """
    xy = xy.to(centre.dtype)
    origin = torch.cat([xy, torch.zeros_like(xy[..., :1])], dim=-1) - centre[:, None]
    a = origin @ rotation  # ray origins in the solids' frames, (B, N, 3)
    b = rotation[:, 2]  # the ray direction +z in the solids' frames, (B, 3)
    sphere_lo, sphere_hi = _quadratic_intervals(a, b, half[:, 0])
    slabs = [_slab_intervals(a[..., i], b[:, i], half[:, i]) for i in range(3)]
    box_lo = torch.maximum(torch.maximum(slabs[0][0], slabs[1][0]), slabs[2][0])
    box_hi = torch.minimum(torch.minimum(slabs[0][1], slabs[1][1]), slabs[2][1])
    round_lo, round_hi = _quadratic_intervals(a[..., 1:], b[:, 1:], half[:, 1])
    cyl_lo, cyl_hi = torch.maximum(slabs[0][0], round_lo), torch.minimum(slabs[0][1], round_hi)
    k = kind[:, None]
    lo = torch.where(k == 0, sphere_lo, torch.where(k == 1, box_lo, cyl_lo))
    hi = torch.where(k == 0, sphere_hi, torch.where(k == 1, box_hi, cyl_hi))
    return torch.where(lo <= hi, lo, torch.full_like(lo, float("inf")))


def _records_hide(records: Tensor, points: Tensor) -> Tensor:
    """:meth:`Occluder.hides` for B occluder records (B, 16) float64 and points (B, N, 3) -> (B, N) bool."""
    kind = records[:, 0].round().long()
    enter = _entry_depths(kind, records[:, 1:4], records[:, 4:13].reshape(-1, 3, 3), records[:, 13:16],
                          points[..., :2])
    return enter < points[..., 2].to(enter.dtype)


def _exp(x: Tensor) -> Tensor:
    """math.exp elementwise on a float64 tensor (what the per-item code computes, to the last bit)."""
    return torch.tensor([math.exp(v) for v in x.tolist()], dtype=torch.float64)


def _exps(x: Tensor) -> Tensor:
    """:func:`_exp` for a float tensor of any shape (float64 result, same shape)."""
    x = x.double()
    return _exp(x.reshape(-1)).reshape(x.shape)


def _px_per_mm(camera: Tensor) -> Tensor:
    """Pixels of the 256 px crop per millimetre at the hand, float32 (...,), for cameras (..., 3).

    The orthographic camera maps 1 m to exp(log_scale) crop units and a crop unit to 256 / 2 pixels
    (:func:`mhe.geometry.crop_to_pixels`): exp(log_scale) x 128 / 1000 px per mm, the same everywhere.
    """
    return (_exps(camera[..., 0]) * (OFFICIAL_CROP / 2) / 1000.0).float()


def _ho3d_rotvecs(quats: np.ndarray, palm: np.ndarray) -> np.ndarray:
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


def _window_corners(px: Tensor) -> Tensor:
    """First pixel (column, row) (..., 2) long of the official window around crop pixels px (..., 2):
    the truncated projection (the official code's int()) less half the window."""
    return torch.trunc(px).long() - OFFICIAL_WINDOW // 2


def _window_pixels(corners: Tensor) -> tuple[Tensor, Tensor]:
    """Columns and rows (..., w, w) long of the windows whose first pixels are corners (..., 2)."""
    d = torch.arange(OFFICIAL_WINDOW)
    cols, rows = corners[..., 0, None, None] + d[None, :], corners[..., 1, None, None] + d[:, None]
    return torch.broadcast_tensors(cols, rows)


def _window_rays(corners: Tensor, camera: Tensor) -> Tensor:
    """Camera-frame (x, y) (..., J, w, w, 2) float64 of the viewing rays through the centres of the
    window pixels, for windows corners (..., J, 2) in the 256 px crop of cameras (..., 3)."""
    cols, rows = _window_pixels(corners)
    u = (cols.double() + 0.5) / OFFICIAL_CROP * 2 - 1  # pixel centres, as mhe.data.render.pixel_centres
    v = (rows.double() + 0.5) / OFFICIAL_CROP * 2 - 1
    s = _exps(camera[..., 0])[..., None, None, None]
    tx = camera[..., 1].double()[..., None, None, None]
    ty = camera[..., 2].double()[..., None, None, None]
    return torch.stack([(u - tx) / s, (v - ty) / s], dim=-1)


def _official_item(
    obs: Tensor, z: Tensor, uv_verts: Tensor, vz: Tensor, faces: Tensor, camera: Tensor, occluder: Occluder | None
) -> tuple[Tensor, Tensor]:
    """The official rule for one item -> (object_occluded, self_occluded) (21,) bool.

    The hand's z-buffer (:func:`mhe.data.render.depth_in_windows`) and the object's entry depth are
    rendered at the pixels the rule reads (the 9 x 9 windows of the 256 px crop) into full crop maps,
    which :func:`mhe.data.ho3d.official_visibility` then reads: once with the hand alone (hand mask =
    covered by the mesh, depth = the mesh's), once with the object (hand mask = the mesh in front of
    the object, depth = the nearer of the two). obs (21, 2) crop units, z (21,) joint depths,
    uv_verts (V, 2), vz (V,) the vertices' crop coordinates and depths.
    """
    px = crop_to_pixels(obs, OFFICIAL_CROP)
    corners = _window_corners(px)  # (21, 2)
    hand = depth_in_windows(uv_verts[None], vz[None], faces, OFFICIAL_CROP, corners[None], OFFICIAL_WINDOW)[0]
    if occluder is None:
        solid = torch.full_like(hand, float("inf"))
    else:
        solid = occluder.entry_depth(_window_rays(corners, camera).reshape(-1, 2)).reshape(hand.shape)
    cols, rows = _window_pixels(corners)
    inside = (cols >= 0) & (cols < OFFICIAL_CROP) & (rows >= 0) & (rows < OFFICIAL_CROP)
    at = (rows[inside].numpy(), cols[inside].numpy())
    n = OFFICIAL_CROP
    mesh, mesh_depth = np.zeros((n, n), bool), np.full((n, n), np.inf)
    front, front_depth = np.zeros((n, n), bool), np.full((n, n), np.inf)
    hz, oz = hand[inside].numpy(), solid[inside].numpy()
    mesh[at], mesh_depth[at] = np.isfinite(hz), hz
    front[at], front_depth[at] = np.isfinite(hz) & (hz <= oz), np.minimum(hz, oz)
    uv, zj = px.numpy(), z.double().numpy()
    alone = official_visibility(uv, zj, mesh, mesh_depth, OFFICIAL_WINDOW, OFFICIAL_TOLERANCE)
    seen = official_visibility(uv, zj, front, front_depth, OFFICIAL_WINDOW, OFFICIAL_TOLERANCE)
    return torch.from_numpy(alone & ~seen), torch.from_numpy(~alone)


def _official_batch(
    obs: Tensor, z: Tensor, uv_verts: Tensor, vz: Tensor, faces: Tensor, camera: Tensor, records: Tensor | None
) -> tuple[Tensor, Tensor]:
    """:func:`_official_item` for B items at once -> (object_occluded, self_occluded) (B, 21) bool, the
    rule evaluated on the windows directly. records (B, 16) float32 occluder records (zero: none) or
    None for no objects; the other arguments stacked."""
    B = obs.shape[0]
    corners = _window_corners(crop_to_pixels(obs, OFFICIAL_CROP))  # (B, 21, 2)
    hand = depth_in_windows(uv_verts, vz, faces, OFFICIAL_CROP, corners, OFFICIAL_WINDOW)  # (B, 21, w, w)
    if records is None:
        solid = torch.full_like(hand, float("inf"))
    else:
        rec = records.double()
        rays = _window_rays(corners, camera).reshape(B, -1, 2)
        solid = _entry_depths(rec[:, 0].round().long(), rec[:, 1:4], rec[:, 4:13].reshape(-1, 3, 3), rec[:, 13:16],
                              rays).reshape(hand.shape)
        has_object = records[:, 13:].abs().sum(-1) > 0
        solid = torch.where(has_object[:, None, None, None], solid, torch.full_like(solid, float("inf")))
    cols, rows = _window_pixels(corners)
    inside = (cols >= 0) & (cols < OFFICIAL_CROP) & (rows >= 0) & (rows < OFFICIAL_CROP)
    near = inside & torch.isfinite(hand) & (z.double()[..., None, None] - hand < OFFICIAL_TOLERANCE)
    alone = near.flatten(2).any(-1)
    seen = (near & (hand <= solid)).flatten(2).any(-1)
    return alone & ~seen, ~alone


def _place_occluders(rel: Tensor, draws: dict[str, np.ndarray]) -> Tensor:
    """:func:`_place_occluder` for B items at once from their drawn numbers (``target``, ``kind``,
    ``rotation``, ``half``, ``anchor``, ``centre_noise``, ``gap`` of :func:`_draw_items`), the same
    bisection with the same float64 steps.

    rel (B, 21, 3) float64 metres, root-relative -> the float32 occluder records (B, 16)
    (:meth:`Occluder.to_vector`), zero for the items whose target is 0 joints (no object).
    """
    n = rel.shape[0]
    rows = torch.arange(n)
    kind, target = torch.from_numpy(draws["kind"]), torch.from_numpy(draws["target"])
    R, half = torch.from_numpy(draws["rotation"]), torch.from_numpy(draws["half"])
    anchor = torch.from_numpy(draws["anchor"])
    centre_xy = rel[rows, anchor, :2] + torch.from_numpy(draws["centre_noise"])
    back = rel[rows, anchor, 2] - torch.from_numpy(draws["gap"])
    # The solid's half depth along the viewing axis at unit size (its support in z).
    cos = R[:, 2, 0].abs()
    reach = torch.where(kind == 0, torch.ones_like(cos),
                        torch.where(kind == 1, (R[:, 2].abs() * half).sum(-1),
                                    cos * half[:, 0] + (1 - cos * cos).clamp_min(0.0).sqrt()))
    points = rel[:, _NON_ROOT]

    def make(size: Tensor, i: Tensor) -> Tensor:  # the records of items i at sizes (len(i),), float64
        centre = torch.cat([centre_xy[i], (back[i] - size * reach[i])[:, None]], dim=1)
        return torch.cat([kind[i, None].double(), centre, R[i].reshape(-1, 9), half[i] * size[:, None]], dim=1)

    def covered(size: Tensor, i: Tensor) -> Tensor:
        return _records_hide(make(size, i), points[i]).sum(-1) >= target[i]

    lo = torch.full((n,), math.log(0.004), dtype=torch.float64)
    hi = torch.full((n,), math.log(0.08), dtype=torch.float64)
    placed = (target > 0).nonzero().squeeze(1)
    grow = placed[covered(_exp(hi[placed]), placed)]
    for _ in range(14):  # bisection on log size for the smallest object that covers `target` joints
        mid = (lo[grow] + hi[grow]) / 2
        ok = covered(_exp(mid), grow)
        hi[grow] = torch.where(ok, mid, hi[grow])
        lo[grow] = torch.where(ok, lo[grow], mid)
    records = torch.zeros(n, 16)
    if placed.numel():
        size = torch.tensor([1.04 * math.exp(h) for h in hi[placed].tolist()], dtype=torch.float64)
        records[placed] = make(size, placed).float()
    return records


def _draw_items(
    streams: Sequence[np.random.Generator], occlusion: float, occluder_kind: str | None, images: bool
) -> dict[str, np.ndarray]:
    """Every random number :meth:`SyntheticHands.generate` takes from each item's stream, taken with the
    same calls in the same order, stacked over the N items (float64 unless said).

    Keys: ``z`` (N, 45) PCA draws and ``curl`` (N, 5) finger curls (:meth:`HandKinematics.sample_params`),
    ``orient`` (N, 4) the quaternions ``Rotation.random`` draws, ``betas`` (N, 10) clipped,
    ``cam_scale`` (N,) and ``cam_shift`` (N, 2); with occlusion > 0 also ``target``, ``kind``, ``anchor``
    (N,) int64, ``occ_orient`` (N, 4) and its ``rotation`` (N, 3, 3), ``half`` (N, 3), ``centre_noise``
    (N, 2), ``gap`` (N,) (:func:`_place_occluder`); with images ``skin`` (N, 3), ``hue`` (N, 4) and
    ``background`` (N, 3). Rotations come from the quaternions through one batched ``Rotation``.
    """
    n = len(streams)
    sigma = np.maximum(0.85 ** np.arange(45), 0.15)
    skin_base = np.array([0.87, 0.67, 0.55])
    non_root = np.array(_NON_ROOT)
    fixed = None if occluder_kind is None else OCCLUDER_KINDS.index(occluder_kind)
    d = {"z": np.empty((n, 45)), "curl": np.empty((n, 5)), "orient": np.empty((n, 4)), "betas": np.empty((n, 10)),
         "cam_scale": np.empty(n), "cam_shift": np.empty((n, 2))}
    if occlusion:
        d |= {"target": np.empty(n, np.int64), "kind": np.empty(n, np.int64), "anchor": np.empty(n, np.int64),
              "occ_orient": np.empty((n, 4)), "half": np.ones((n, 3)), "centre_noise": np.empty((n, 2)),
              "gap": np.empty(n)}
    if images:
        d |= {"skin": np.empty((n, 3)), "hue": np.empty((n, 4)), "background": np.empty((n, 3))}
    for i, rng in enumerate(streams):
        d["z"][i] = rng.normal(0.0, sigma)
        grasp = rng.uniform(0.0, 1.0) ** 1.3
        curl = np.clip(grasp + rng.normal(0.0, 0.2, 5), 0.0, 1.0)
        curl[rng.uniform(size=5) < 0.12] = rng.uniform(0.0, 0.15)
        d["curl"][i] = curl
        d["orient"][i] = rng.normal(size=4)  # Rotation.random(random_state=rng)
        d["betas"][i] = np.clip(rng.normal(0.0, 0.012, 10), -BETA_BOX, BETA_BOX)
        d["cam_scale"][i] = rng.uniform(0.7, 0.9)
        d["cam_shift"][i] = rng.uniform(-0.08, 0.08, 2)
        if occlusion:
            d["target"][i] = rng.binomial(20, occlusion)
            kind = fixed if fixed is not None else int(rng.integers(len(OCCLUDER_KINDS)))
            d["kind"][i] = kind
            d["occ_orient"][i] = rng.normal(size=4)
            if kind == 1:  # box
                d["half"][i, 1] = rng.uniform(0.4, 1.0)
                d["half"][i, 2] = rng.uniform(0.4, 1.0)
            elif kind == 2:  # cylinder
                d["half"][i, 0] = rng.uniform(1.5, 3.0)
            d["anchor"][i] = rng.choice(non_root)
            d["centre_noise"][i] = rng.normal(0.0, 0.008, 2)
            d["gap"][i] = rng.uniform(-0.005, 0.02)
        if images:
            d["skin"][i] = np.clip(skin_base + rng.normal(0, 0.05, 3), 0, 1)
            d["hue"][i] = rng.normal(size=4)
            d["background"][i] = rng.uniform(0.1, 0.55, 3)
    if occlusion:
        d["rotation"] = Rotation.from_quat(d["occ_orient"]).as_matrix()
    return d


class SyntheticHands(Dataset):
    """Synthetic occluded hands as a torch Dataset of dicts of float32 tensors (default collate works).

    Args:
        split: "train", "val" or "test"; each split has its own random stream.
        size: number of items (default :data:`DEFAULT_SIZES` of the split).
        seed: item ``i`` is a function of (split, seed, i) only, whatever ``size`` or the cache.
        occlusion: expected fraction of the 20 non-root joints the object covers (0 = no object);
            self-occlusion and leaving the crop come on top (see :func:`occlusion_stats`).
        images: also render ``"image"`` (3, image_size, image_size) in [0, 1].
        image_size: 64 to 128 is plenty for the small image encoders.
        mano: a model from :func:`mhe.body.load_mano` (default: load_mano(), the real MANO if present).
        cache: keep generated items in memory.
        cache_dir: generate the whole split once and keep it in ``cache_dir`` as one file (keyed by
            every argument, the generator version and the body model's checksum); later datasets
            with the same arguments load it instead of generating. Implies ``cache``.
        occluder_kind: force "sphere", "box" or "cylinder" (default: random per item).
        self_tolerance: metres a joint may lie behind the hand's own front surface and still count
            as visible (joints sit inside fingers ~1 cm deep, inside the palm ~1.5 cm).
        progress: when ``cache_dir`` makes the whole split, say so on one line and show a progress
            bar (loading an existing cache prints nothing).
        visibility: the visibility rule. ``"depth"`` (default): occluded when the object lies on the
            joint's viewing ray, or the hand's own surface (z-buffer of a 64 px raster) lies more than
            ``self_tolerance`` in front of the joint, or the joint leaves the crop. ``"official"``:
            HO3D's rule (:func:`mhe.data.ho3d.official_visibility`) on the rendered hand-and-object
            depth map and hand mask, in pixels of the 256 px crop of ``keypoints_2d_px``: visible when
            some pixel of the 9 x 9 window around the joint's (truncated) pixel is hand -- covered by
            the mesh, and the mesh there in front of the object -- and the joint lies less than 40 mm
            behind the depth map there; a joint outside the crop is invisible. The causes are then
            ``self_occluded`` = the rule fails on the hand alone (no object rendered),
            ``object_occluded`` = it passes on the hand alone but fails with the object (disjoint).
            ``self_tolerance`` applies to "depth" only.
        rotation: the global rotations. ``"uniform"`` (default): uniform over all rotations.
            ``"ho3d"``: a range resembling hand-object footage such as HO3D, where a hand holding an
            object that is turned in front of a camera mostly shows the camera its back or its palm,
            at any angle in the image, and is seldom seen edge-on or along the fingers: the palm
            normal lies within :data:`HO3D_MAX_TILT` (60) degrees of the viewing axis, towards or
            away from the camera with equal probability, uniformly over that range (uniform in-plane
            angle and roll about the palm normal). A uniform rotation tilts the palm more than 60
            degrees in half of its items. This is a chosen range, not fitted to HO3D's annotations.
            It hides about as many joints as "uniform" (views of the back, where curled fingertips
            hide behind the knuckles, make up for the edge-on views left out). Drawn from the same
            random numbers as "uniform" (mapped into the range, :func:`_ho3d_rotvecs`), so an item's
            pose, shape, camera jitter and object draws are those of the uniform item with the same
            index. :func:`palm_tilt` measures the tilt.

    Items are built one by one by :meth:`generate` (what ``__getitem__`` does without ``cache_dir``)
    or many at once by :meth:`generate_many` (the whole split for ``cache_dir``, over ten times
    faster): the same items (masks equal, floats up to float32 rounding of the batched MANO forward).

    Item keys: ``obs`` (21, 2) crop units, ``visible`` (21,) bool, ``keypoints_2d_px`` (21, 2) in a
    256 crop, ``px_per_mm`` () float32 pixels of that crop per millimetre at the hand (exp(log_scale)
    x 0.128: a 1 mm shift of a joint in x or y moves its pixel by this much), ``joints_3d`` (21, 3)
    root-relative / bone, ``scale`` () bone length in metres, ``joints_3d_mm`` (21, 3), ``params``
    (45,) PCA pose, ``global_orient`` (3,), ``betas`` (10,), ``camera`` (3,) = (log_scale, tx, ty)
    with project_orthographic(MANO joints - root) = obs, ``object_occluded`` / ``self_occluded`` /
    ``outside`` (21,) bool causes, ``occluder`` (16,) (:meth:`mhe.data.render.Occluder.to_vector`),
    and ``image`` when asked for. The settings and their occlusion rates: docs/formats.md,
    "Synthetic hands".
    """

    def __init__(
        self,
        split: str = "train",
        size: int | None = None,
        seed: int = 0,
        occlusion: float = 0.3,
        images: bool = False,
        image_size: int = 64,
        mano: Any = None,
        cache: bool = False,
        occluder_kind: str | None = None,
        self_tolerance: float = 0.02,
        cache_dir: str | os.PathLike | None = None,
        progress: bool = True,
        visibility: str = "depth",
        rotation: str = "uniform",
    ) -> None:
        if split not in _SPLIT_CODE:
            raise ValueError(f"split must be one of {tuple(_SPLIT_CODE)}, got {split!r}")
        if not 0.0 <= occlusion <= 1.0:
            raise ValueError(f"occlusion is a fraction of joints in [0, 1], got {occlusion}")
        if occluder_kind is not None and occluder_kind not in OCCLUDER_KINDS:
            raise ValueError(f"occluder_kind must be one of {OCCLUDER_KINDS} or None, got {occluder_kind!r}")
        size = DEFAULT_SIZES[split] if size is None else int(size)
        if size < 1:
            raise ValueError(f"size must be a positive number of items, got {size}")
        if not 16 <= int(image_size) <= 512:
            raise ValueError(f"image_size must be between 16 and 512 pixels, got {image_size}")
        if visibility not in VISIBILITY_RULES:
            raise ValueError(f"visibility must be one of {VISIBILITY_RULES}, got {visibility!r}")
        if rotation not in ROTATIONS:
            raise ValueError(f"rotation must be one of {ROTATIONS}, got {rotation!r}")
        self.split, self.size, self.seed = split, size, int(seed)
        self.occlusion, self.occluder_kind = float(occlusion), occluder_kind
        self.images, self.image_size = bool(images), int(image_size)
        self.self_tolerance = float(self_tolerance)
        self.visibility, self.rotation = visibility, rotation
        self.mano = load_mano() if mano is None else mano
        self.kin = _kinematics(self.mano)
        self.faces = torch.as_tensor(np.asarray(self.mano.faces), dtype=torch.long)
        self._cache: dict[int, dict[str, Tensor]] | None = {} if cache or cache_dir else None
        # The disk cache is read (or written) on first access, so building a dataset stays cheap.
        self._stacked: dict[str, Tensor] | None = None
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.progress = bool(progress)
        self._palm = self.kin.palm.numpy()

    def cache_key(self) -> str:
        """A file name that changes with anything that changes the items."""
        source = getattr(self.mano, "source", None)
        model = getattr(source, "md5", "unknown")[:12]
        side = getattr(self.mano, "side", "right")
        parts = [self.split, f"s{self.seed}", f"n{self.size}", f"o{self.occlusion:g}",
                 f"img{self.image_size}" if self.images else "noimg", f"k{self.occluder_kind or 'any'}",
                 f"t{self.self_tolerance:g}", side, model, f"v{GENERATOR_VERSION}"]
        # The default settings add nothing, so that the files of earlier versions stay valid.
        if self.visibility != VISIBILITY_RULES[0]:
            parts.insert(-3, f"vis{self.visibility}")
        if self.rotation != ROTATIONS[0]:
            parts.insert(-3, f"rot{self.rotation}")
        return "synthetic_hands_" + "_".join(parts) + ".pt"

    def _load_or_generate(self, directory: Path) -> dict[str, Tensor]:
        """The whole split, stacked (each field (size, ...)): loaded from ``directory`` when cached
        there, else generated (with a line and a progress bar when ``progress``) and saved there."""
        path = directory / self.cache_key()
        if path.exists():
            try:
                stacked = torch.load(path, map_location="cpu", weights_only=True)
                if not (isinstance(stacked, dict) and "visible" in stacked and "camera" in stacked
                        and all(isinstance(v, Tensor) and len(v) == self.size for v in stacked.values())):
                    raise ValueError("not a stacked split of this size")
                if "px_per_mm" not in stacked:  # written before the key existed: it follows from the camera
                    stacked["px_per_mm"] = _px_per_mm(stacked["camera"])
                return stacked
            except Exception as error:  # a foreign or damaged file: regenerate it
                warnings.warn(f"the synthetic-hands cache {path} is damaged or unreadable "
                              f"({type(error).__name__}: {error}); generating it again", stacklevel=3)
        if self.progress:
            print(f"[mhe] generating {self.size:,} {_SPLIT_NAME[self.split]} hands (synthetic-hands, "
                  f"seed {self.seed}); cached afterwards in {display_path(path)}", flush=True)
        stacked = self.generate_many(progress=self.progress)
        atomic_torch_save(stacked, path)
        return stacked

    def __len__(self) -> int:
        return self.size

    def rng(self, index: int) -> np.random.Generator:
        """The random stream of item ``index`` (independent of every other item and split)."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, _SPLIT_CODE[self.split], index]))

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not -self.size <= index < self.size:
            raise IndexError(f"index {index} out of range for a {self.split} split of {self.size} items")
        index %= self.size
        if self._cache_dir is not None and self._stacked is None:
            self._stacked = self._load_or_generate(self._cache_dir)
        if self._stacked is not None:
            return {k: v[index] for k, v in self._stacked.items()}
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        item = self.generate(index)
        if self._cache is not None:
            self._cache[index] = item
        return item

    def mano_forward(self, global_orient: Tensor, params: Tensor, betas: Tensor) -> Any:
        """The model's forward on (3,), (45,), (10,) tensors -> its output with a batch of one."""
        dtype, device = self.mano.shapedirs.dtype, self.mano.shapedirs.device
        with torch.no_grad():
            return self.mano(*(t.to(dtype=dtype, device=device)[None] for t in (global_orient, params, betas)))

    def generate(self, index: int) -> dict[str, Tensor]:
        """Build item ``index`` from scratch (what ``__getitem__`` caches): a dict of the item keys.

        The reference definition of an item; :meth:`generate_many` reproduces it many at a time."""
        rng = self.rng(index)
        params = self.kin.sample_params(rng).float()
        if self.rotation == "uniform":
            orient = torch.from_numpy(Rotation.random(random_state=rng).as_rotvec()).float()
        else:  # the four numbers Rotation.random draws, mapped into the range
            orient = torch.from_numpy(_ho3d_rotvecs(rng.normal(size=4)[None], self._palm)[0]).float()
        betas = torch.from_numpy(np.clip(rng.normal(0.0, 0.012, 10), -BETA_BOX, BETA_BOX)).float()
        out = self.mano_forward(orient, params, betas)
        joints, verts = out.joints[0].cpu().float(), out.vertices[0].cpu().float()
        root = joints[HAND_ROOT]
        rel, vrel = joints - root, verts - root

        # Orthographic camera: the hand's silhouette fills 70-90 % of the crop, a little off-centre.
        lo, hi = vrel[:, :2].min(0).values, vrel[:, :2].max(0).values
        s = rng.uniform(0.7, 0.9) / float(((hi - lo) / 2).max())
        trans = (-s * (lo + hi) / 2 + torch.from_numpy(rng.uniform(-0.08, 0.08, 2))).float()
        camera = torch.cat([torch.tensor([math.log(s)], dtype=torch.float32), trans])
        obs = project_orthographic(rel, camera[0], camera[1:])

        rel64 = rel.double()
        occluder = None if self.occlusion == 0 else _place_occluder(rel64, rng, self.occlusion, self.occluder_kind)
        object_occ = occluder.hides(rel64) if occluder is not None else torch.zeros(21, dtype=torch.bool)
        raster = self.image_size if self.images else 64
        uv_verts = project_orthographic(vrel, camera[0], camera[1:])
        if self.visibility == "depth":
            zbuf, fbuf = rasterize(uv_verts, vrel[:, 2], self.faces, raster)
            self_occ = _behind_surface(obs, rel[:, 2], zbuf, self.self_tolerance)
        else:
            object_occ, self_occ = _official_item(obs, rel[:, 2], uv_verts, vrel[:, 2], self.faces, camera,
                                                  occluder)
        outside = (obs.abs() > 1).any(-1)
        visible = ~(object_occ | self_occ | outside)

        bone = float((joints[HAND_BONE[1]] - joints[HAND_BONE[0]]).norm())
        item = {
            "obs": obs,
            "visible": visible,
            "keypoints_2d_px": crop_to_pixels(obs, 256),
            "px_per_mm": _px_per_mm(camera),
            "joints_3d": rel / bone,
            "scale": torch.tensor(bone, dtype=torch.float32),
            "joints_3d_mm": rel * 1000.0,
            "params": params,
            "global_orient": orient,
            "betas": betas,
            "camera": camera,
            "object_occluded": object_occ,
            "self_occluded": self_occ,
            "outside": outside,
            "occluder": _EMPTY_OCCLUDER.clone() if occluder is None else occluder.to_vector().float(),
        }
        if self.images:
            skin = torch.from_numpy(np.clip(np.array([0.87, 0.67, 0.55]) + rng.normal(0, 0.05, 3), 0, 1))
            hue = Rotation.random(random_state=rng).as_matrix()[0]  # any direction; mapped to a colour
            colour = torch.from_numpy(np.clip(0.5 + 0.45 * hue, 0.05, 0.95))
            background = torch.from_numpy(rng.uniform(0.1, 0.55, 3))
            if self.visibility != "depth":
                zbuf, fbuf = rasterize(uv_verts, vrel[:, 2], self.faces, raster)
            item["image"] = render_crop(
                vrel, self.faces, float(camera[0]), camera[1:], occluder, raster, skin, colour, background,
                raster=(zbuf, fbuf),
            )
        return item

    def generate_many(
        self, indices: Sequence[int] | None = None, chunk_size: int | None = None, progress: bool = False
    ) -> dict[str, Tensor]:
        """Build items ``indices`` (default: the whole split) from scratch, many at once.

        Returns the fields of :meth:`generate` stacked over the N items (``obs`` (N, 21, 2), ``visible``
        (N, 21), ...): the same items as ``generate`` one by one -- equal masks, params, orientations
        and shapes, and the other floats up to float32 rounding (the batched MANO forward sums in
        another order). Each item's random numbers still come from its own stream (:meth:`rng`);
        the pose limits, MANO forward, camera, occluder placement, projection and the self-occlusion
        z-buffer (:func:`mhe.data.render.depth_at_pixels`) run on ``chunk_size`` items together
        (default 512, 64 with images), the chunks on ``torch.get_num_threads()`` threads at once.
        ``progress`` shows a tqdm bar that advances chunk by chunk.
        """
        indices = list(range(self.size)) if indices is None else [int(i) for i in indices]
        if not indices:
            raise ValueError("generate_many needs at least one index")
        chunk = int(chunk_size) if chunk_size else (64 if self.images else 512)
        chunks = [indices[start:start + chunk] for start in range(0, len(indices), chunk)]
        from tqdm.auto import tqdm

        parts = []
        with tqdm(total=len(indices), disable=not progress, unit=" hands", dynamic_ncols=True,
                  desc=f"synthetic {self.split}") as bar:
            workers = min(torch.get_num_threads(), len(chunks))
            if workers <= 1:
                for part in chunks:
                    parts.append(self._generate_chunk(part))
                    bar.update(len(part))
            else:
                # One chunk per thread, each op on one thread: the ops are too small for intra-op
                # threads to pay (and their barriers stall whenever another process holds a core).
                from concurrent.futures import ThreadPoolExecutor

                threads = torch.get_num_threads()
                torch.set_num_threads(1)
                try:
                    with ThreadPoolExecutor(workers) as pool:
                        for part in pool.map(self._generate_chunk, chunks):
                            parts.append(part)
                            bar.update(len(part["visible"]))
                finally:
                    torch.set_num_threads(threads)
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def _generate_chunk(self, indices: Sequence[int]) -> dict[str, Tensor]:
        """The items ``indices`` stacked (see :meth:`generate_many`), as :meth:`generate` builds each."""
        n = len(indices)
        draws = _draw_items([self.rng(i) for i in indices], self.occlusion, self.occluder_kind, self.images)
        params = self.kin.pose_params(torch.from_numpy(draws["z"]), draws["curl"]).float()
        if self.rotation == "uniform":
            orient = torch.from_numpy(Rotation.from_quat(draws["orient"]).as_rotvec()).float()
        else:
            orient = torch.from_numpy(_ho3d_rotvecs(draws["orient"], self._palm)).float()
        betas = torch.from_numpy(draws["betas"]).float()
        dtype, device = self.mano.shapedirs.dtype, self.mano.shapedirs.device
        # BLAS picks its kernels by the number of rows (and treats the last rows of an odd count apart):
        # padding to a multiple of 16 keeps an item's floats the same whichever chunk it comes in.
        rows = max(16, -(-n // 16) * 16)
        inputs = [torch.cat([t, t.new_zeros(rows - n, t.shape[1])]).to(dtype=dtype, device=device)
                  for t in (orient, params, betas)]
        with torch.no_grad():
            out = self.mano(*inputs)
        joints, verts = out.joints[:n].cpu().float(), out.vertices[:n].cpu().float()
        root = joints[:, HAND_ROOT : HAND_ROOT + 1]
        rel, vrel = joints - root, verts - root

        # The camera of generate(), item by item the same float32 / float64 steps.
        lo, hi = vrel[..., :2].min(1).values, vrel[..., :2].max(1).values
        s = torch.from_numpy(draws["cam_scale"]) / ((hi - lo) / 2).max(-1).values.double()
        trans = ((-s).float()[:, None] * (lo + hi) / 2 + torch.from_numpy(draws["cam_shift"])).float()
        log_s = torch.tensor([math.log(v) for v in s.tolist()], dtype=torch.float32)
        camera = torch.cat([log_s[:, None], trans], dim=1)
        obs = project_orthographic(rel, camera[:, 0], camera[:, 1:])

        rel64 = rel.double()
        if self.occlusion == 0:
            occluder = torch.zeros(n, 16)
            object_occ = torch.zeros(n, 21, dtype=torch.bool)
        else:
            occluder = _place_occluders(rel64, draws)
            has_object = occluder[:, 13:].abs().sum(-1) > 0
            object_occ = _records_hide(occluder.double(), rel64) & has_object[:, None]
        raster = self.image_size if self.images else 64
        uv_verts = project_orthographic(vrel, camera[:, 0], camera[:, 1:])
        if self.visibility == "depth":
            pixels, inside = _pixels_of(obs, raster)
            front = depth_at_pixels(uv_verts, vrel[..., 2], self.faces, raster, pixels)
            self_occ = inside & (front < rel[..., 2].double() - self.self_tolerance)
        else:
            object_occ, self_occ = _official_batch(obs, rel[..., 2], uv_verts, vrel[..., 2], self.faces, camera,
                                                   None if self.occlusion == 0 else occluder)
        bone = (joints[:, HAND_BONE[1]] - joints[:, HAND_BONE[0]]).norm(dim=-1)
        items = keypoint_items(obs, object_occ, self_occ, camera, rel, bone, params, orient, betas, occluder)
        if self.images:
            colour = np.clip(0.5 + 0.45 * Rotation.from_quat(draws["hue"]).as_matrix()[:, 0], 0.05, 0.95)
            zbuf, fbuf = rasterize_batch(uv_verts, vrel[..., 2], self.faces, raster)
            images = []
            for i in range(n):
                solid = Occluder.from_vector(occluder[i].double()) if occluder[i, 13:].abs().sum() > 0 else None
                images.append(render_crop(
                    vrel[i], self.faces, float(camera[i, 0]), camera[i, 1:], solid, raster,
                    torch.from_numpy(draws["skin"][i]), torch.from_numpy(colour[i]),
                    torch.from_numpy(draws["background"][i]), raster=(zbuf[i], fbuf[i]),
                ))  # fmt: skip
            items["image"] = torch.stack(images)
        return items


def keypoint_items(obs: Tensor, object_occ: Tensor, self_occ: Tensor, camera: Tensor, rel: Tensor, bone: Tensor,
                   params: Tensor, orient: Tensor, betas: Tensor, occluder: Tensor) -> dict[str, Tensor]:
    """The keys every generated item holds, hands and bodies alike, for a batch of n items: from the crop
    keypoints ``obs (n, J, 2)``, the occlusion masks ``(n, J)``, ``camera (n, 3)``, the root-relative joints
    ``rel (n, J, 3)`` and ``bone (n,)`` in metres, the pose, rotation, shape and occluder records. A keypoint
    is visible unless an object or the body hides it or it falls outside the crop."""
    outside = (obs.abs() > 1).any(-1)
    return {
        "obs": obs,
        "visible": ~(object_occ | self_occ | outside),
        "keypoints_2d_px": crop_to_pixels(obs, 256),
        "px_per_mm": _px_per_mm(camera),
        "joints_3d": rel / bone[:, None, None],
        "scale": bone,
        "joints_3d_mm": rel * 1000.0,
        "params": params,
        "global_orient": orient,
        "betas": betas,
        "camera": camera,
        "object_occluded": object_occ,
        "self_occluded": self_occ,
        "outside": outside,
        "occluder": occluder,
    }


def _pixels_of(obs: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """The pixel (column, row) (..., 2) long of crop points obs (..., 2) in an n x n raster, and whether
    it lies inside the raster (...,) bool (the test of :func:`_behind_surface`)."""
    cols = ((obs[..., 0] + 1) / 2 * n).floor().long()
    rows = ((obs[..., 1] + 1) / 2 * n).floor().long()
    inside = (cols >= 0) & (cols < n) & (rows >= 0) & (rows < n)
    return torch.stack([cols, rows], dim=-1), inside


def _behind_surface(obs: Tensor, z: Tensor, zbuf: Tensor, tolerance: float) -> Tensor:
    """Joints (obs (J, 2) crop units, depth z (J,)) lying more than ``tolerance`` behind the z-buffer."""
    n = zbuf.shape[0]
    cols = ((obs[:, 0] + 1) / 2 * n).floor().long()
    rows = ((obs[:, 1] + 1) / 2 * n).floor().long()
    inside = (cols >= 0) & (cols < n) & (rows >= 0) & (rows < n)
    front = zbuf[rows.clamp(0, n - 1), cols.clamp(0, n - 1)]
    return inside & (front < z.double() - tolerance)


def occlusion_stats(dataset: Dataset, max_items: int | None = None, by: str = "joint") -> pd.DataFrame:
    """Fraction of items in which each keypoint (``by="joint"``) or finger (``by="finger"``) is occluded.

    Columns: ``occluded`` (any cause), ``object``, ``self``, ``outside`` (each cause on its own; they
    overlap), the exclusive ``self_only`` (not also behind the object) and ``outside_only`` (neither),
    so that object + self_only + outside_only = occluded, and ``n_items``; indexed by keypoint name
    (with its ``finger``) or by finger. Works for any dataset whose items have ``visible`` (HO3D
    included: without the synthetic cause masks only ``occluded`` is non-zero).
    """
    if by not in ("joint", "finger"):
        raise ValueError(f"by must be 'joint' or 'finger', got {by!r}")
    n = len(dataset) if max_items is None else min(len(dataset), int(max_items))
    if n == 0:
        raise ValueError("occlusion_stats needs a non-empty dataset")
    keys = ("occluded", "object", "self", "outside", "self_only", "outside_only")
    sums = {k: torch.zeros(21, dtype=torch.float64) for k in keys}
    no = torch.zeros(21, dtype=torch.bool)
    for i in range(n):
        item = dataset[i]
        obj, slf, out = (item.get(k, no) for k in ("object_occluded", "self_occluded", "outside"))
        for key, mask in zip(keys, (~item["visible"], obj, slf, out, slf & ~obj, out & ~obj & ~slf)):
            sums[key] += mask.double()
    frame = pd.DataFrame({k: (v / n).numpy() for k, v in sums.items()})
    frame.insert(0, "finger", list(FINGER_OF_KEYPOINT))
    frame.index = pd.Index(list(HAND_KEYPOINTS), name="keypoint")
    frame["n_items"] = n
    if by == "finger":
        frame = frame.groupby("finger", sort=False).agg({**{k: "mean" for k in keys}, "n_items": "first"})
    return frame


def occlusion_rates(dataset: Dataset, max_items: int | None = None) -> pd.Series:
    """The fraction of non-root joints occluded over the first ``max_items`` items, in all and by cause.

    Entries: ``occluded`` (any cause), ``object``, ``self``, ``outside`` (each cause on its own),
    ``self_only`` and ``outside_only`` (exclusive, as in :func:`occlusion_stats`: object + self_only +
    outside_only = occluded), and ``n_items``. A :class:`SyntheticHands` without a stacked cache is
    generated many items at a time (:meth:`SyntheticHands.generate_many`, the same items); any other
    dataset is read item by item through :func:`occlusion_stats`.
    """
    if isinstance(dataset, SyntheticHands) and dataset._stacked is None and dataset._cache_dir is None:
        n = len(dataset) if max_items is None else min(len(dataset), int(max_items))
        if n == 0:
            raise ValueError("occlusion_rates needs a non-empty dataset")
        items = dataset.generate_many(range(n))
        obj, slf, out = items["object_occluded"], items["self_occluded"], items["outside"]
        masks = {"occluded": ~items["visible"], "object": obj, "self": slf, "outside": out,
                 "self_only": slf & ~obj, "outside_only": out & ~obj & ~slf}
        rates = {k: float(m[:, _NON_ROOT].double().mean()) for k, m in masks.items()}
        return pd.Series({**rates, "n_items": n})
    table = occlusion_stats(dataset, max_items)
    rates = {k: float(table[k].iloc[_NON_ROOT].mean())
             for k in ("occluded", "object", "self", "outside", "self_only", "outside_only")}
    return pd.Series({**rates, "n_items": int(table["n_items"].iloc[0])})


# A hand is "occluded" (the hands' ambiguous subset) when at least this many of its five fingers are hidden
# whole: every keypoint of the finger, the root excepted, occluded. Nothing the hand shows then says how that
# finger bends. Fixed from the definition, not from any result (cf. AMBIGUOUS_MIN_HIDDEN for bodies).
OCCLUDED_MIN_FINGERS = 1
_FINGER_KEYPOINTS = {f: [j for j, name in enumerate(FINGER_OF_KEYPOINT) if name == f and j != HAND_ROOT]
                     for f in ("thumb", "index", "middle", "ring", "pinky")}


def occluded_hands(visible: Tensor, min_fingers: int = OCCLUDED_MIN_FINGERS) -> Tensor:
    """Which hands are *occluded*: at least ``min_fingers`` whole fingers hidden → (B,) bool.

    ``visible (B, 21)`` bool in the package's keypoint order (:data:`mhe.body.HAND_KEYPOINTS`). A finger is
    hidden whole when all its keypoints are occluded (the middle finger's MCP is the root and does not
    count). This is the hands' counterpart of the bodies' ``ambiguous`` flag.
    """
    if visible.dim() != 2 or visible.shape[1] != len(FINGER_OF_KEYPOINT):
        raise ValueError(f"visible must be (B, {len(FINGER_OF_KEYPOINT)}), got {tuple(visible.shape)}")
    hidden = ~visible.bool()
    whole = torch.stack([hidden[:, idx].all(-1) for idx in _FINGER_KEYPOINTS.values()], -1)  # (B, 5)
    return whole.sum(-1) >= min_fingers


def _descendants() -> dict[int, list[int]]:
    """Keypoints moved by the local rotation of each MANO joint (its strict descendants)."""
    out: dict[int, list[int]] = {j: [] for j in range(16)}
    for k in range(21):
        p = int(HAND_PARENTS[k])
        while p >= 0:
            out[p].append(k)
            p = int(HAND_PARENTS[p])
    return out


def consistent_alternative(
    dataset: SyntheticHands, index: int, seed: int = 0, min_change: float = 0.6
) -> dict[str, Tensor] | None:
    """A second pose that explains item ``index``'s observation exactly as well as the ground truth.

    Every finger joint whose descendants are all occluded may rotate freely without moving a visible
    keypoint; those joints get a new flexion (at least ``min_change`` rad away, within the limits).
    Returns ``params`` (45,), ``joints_3d`` (21, 3) normalised like the item, ``obs`` (21, 2),
    ``changed`` (16,) bool, or None when no joint is free (nothing fully occluded below it).
    """
    item = dataset[index]
    kin = dataset.kin
    desc = _descendants()
    hidden = ~item["visible"]
    free = [j for j in range(1, 16) if desc[j] and bool(hidden[desc[j]].all())]
    # Only the outermost free joint of each chain: its children follow it.
    free = [j for j in free if int(HAND_PARENTS[j]) not in free]
    if not free:
        return None
    rng = np.random.default_rng(seed)
    c = kin.to_components(kin.to_axis_angle(item["params"].double()))
    for j in free:
        lo, hi = float(kin.limits[j - 1, 0]), float(kin.limits[j - 1, 1])
        old = float(c[j - 1, 0])
        far = [v for v in np.linspace(lo, hi, 64) if abs(v - old) >= min_change]
        c[j - 1, 0] = float(rng.choice(far)) if far else (lo if old - lo > hi - old else hi)
    params = kin.to_params(kin.from_components(c)).float()
    out = dataset.mano_forward(item["global_orient"], params, item["betas"])
    joints = out.joints[0].cpu().float()
    rel = joints - joints[HAND_ROOT]
    camera = item["camera"]
    changed = torch.zeros(16, dtype=torch.bool)
    changed[free] = True
    return {
        "params": params,
        "joints_3d": rel / item["scale"],
        "obs": project_orthographic(rel, camera[0], camera[1:]),
        "changed": changed,
    }
