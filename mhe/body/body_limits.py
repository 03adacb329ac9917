"""Anatomical joint limits for SMPL bodies: is a hypothesis a pose a person can take?

Each of SMPL's 23 non-root joints has a local rotation (axis-angle, 3 numbers) in a frame that, in
the rest pose, is aligned with the body: **x** points to the body's left, **y** up, **z** forward (the
T-pose faces +z). The limits below bound the three **components of that rotation vector** about x, y
and z, joint by joint, in radians (:data:`BODY_LIMITS`, ``(lo, hi)`` per component).

Why the rotation vector's components: the split is linear, so it is differentiable everywhere (a soft
prior and its gradient are cheap and well behaved), projecting into the limits (:meth:`BodyLimits.clamp`)
is a clamp of a box, and it is the decomposition the finger limits of :mod:`mhe.body.limits` use. For a
rotation about a single axis -- the hinges (knee, elbow), the spine and neck segments, each plane of a
ball joint on its own -- the component *is* the joint angle about that axis. For combined rotations of
the ball joints (hip, shoulder) the components are not Euler angles; their ranges are set wide enough
to hold the rotation vectors of combined natural movements (e.g. the arm swung from the T-pose down to
the side and forward), checked numerically when the ranges were chosen. Twist about a limb is the
component along the limb's rest direction (x for the arms and collars, y for the spine, neck and legs).
A swing-twist or Euler split would be more exact for large combined rotations but has singular
configurations (gimbal lock, the swing's antipode) and needs a non-linear projection.

Ranges: clinical goniometry norms of active range of motion of adults (the standard textbook /
AAOS-style tables: hip flexion ~120°, extension ~20-30°, abduction ~45°, adduction ~30°, rotation
~45°; knee flexion ~140°; ankle dorsiflexion ~20°, plantarflexion ~50°, inversion ~35°, eversion
~20°; shoulder flexion 180°, extension ~50°, abduction 180°; elbow flexion ~145°; forearm pronation /
supination ~80-90°; wrist flexion ~75°, extension ~70°, radial / ulnar deviation ~20° / 35°; thoraco-
lumbar flexion ~80°, extension ~25°, lateral bending ~35°, rotation ~45°; cervical flexion ~50°,
extension ~60°, lateral bending ~45°, rotation ~80°), spread over SMPL's joints where SMPL splits one
anatomical motion (the spine over spine1-3, the neck over neck and head, shoulder elevation over the
collar and the shoulder) and loosened a little for SMPL's approximate joint centres. Collars, feet
(toes, SMPL 10 and 11) and hands (knuckles, SMPL 22 and 23) move little.

Sign conventions (checked numerically on the stand-in by ``tests/test_body_limits.py``; ``R_x(θ)``
with θ > 0 turns +y towards +z):

* spine1-3, neck, head: +x bends forward (flexion), -x backwards; y is the axial turn; z the side bend.
* hips: **-x is flexion** (the thigh swings forward, +z) for both legs; +z abducts the left leg
  (towards +x), -z the right.
* knees: **+x is flexion** for both knees (the ankle moves backwards, -z); only a few hundredths of
  a radian of hyper-extension are allowed.
* ankles: +x is plantarflexion (toes down), -x dorsiflexion.
* shoulders and elbows: the arms point along ±x in the rest pose, palms down, thumbs forward. The
  **left elbow flexes about -y, the right about +y** (the wrist moves forward, +z, and inwards);
  the shoulder's y swings the arm forward (-y left, +y right) or back, its z lowers or raises it
  (-z lowers the left arm, +z the right), its x twists the upper arm.
* wrists: palm flexion (the hand down, -y) is -z for the left hand and +z for the right.
* the right side of every paired joint is the mirror image of the left: (x, y, z) -> (x, -y, -z).

Inputs are the 23 local rotations ``(..., 23, 3)`` or the flat body pose ``(..., 69)`` SMPL's forward
takes (``body_pose``); the global orientation is not limited.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch import Tensor, nn

from mhe.body.keypoints import SMPL_JOINT_NAMES

__all__ = ["BODY_LIMITS", "BODY_LIMIT_WEIGHT", "BODY_PLAUSIBLE_TOLERANCE", "BODY_POSE_MODES", "BodyLimits",
           "body_limit_bounds"]

_D = math.pi / 180.0


def _deg(*pairs: tuple[float, float]) -> tuple[tuple[float, float], ...]:
    return tuple((lo * _D, hi * _D) for lo, hi in pairs)


# Left-side (and midline) ranges in degrees, components (x, y, z); converted to radians below.
_LEFT_DEG: dict[str, tuple[tuple[float, float], ...]] = {
    "hip": ((-125.0, 30.0), (-45.0, 45.0), (-30.0, 50.0)),
    "knee": ((-2.0, 145.0), (-12.0, 12.0), (-6.0, 6.0)),
    "ankle": ((-25.0, 55.0), (-20.0, 20.0), (-35.0, 20.0)),
    "foot": ((-30.0, 20.0), (-6.0, 6.0), (-6.0, 6.0)),
    "spine1": ((-15.0, 35.0), (-15.0, 15.0), (-14.0, 14.0)),
    "spine2": ((-10.0, 25.0), (-18.0, 18.0), (-12.0, 12.0)),
    "spine3": ((-10.0, 25.0), (-18.0, 18.0), (-12.0, 12.0)),
    "neck": ((-35.0, 30.0), (-45.0, 45.0), (-25.0, 25.0)),
    "head": ((-30.0, 25.0), (-40.0, 40.0), (-22.0, 22.0)),
    "collar": ((-15.0, 15.0), (-25.0, 20.0), (-10.0, 30.0)),
    "shoulder": ((-80.0, 80.0), (-135.0, 70.0), (-100.0, 80.0)),
    "elbow": ((-90.0, 40.0), (-150.0, 2.0), (-10.0, 10.0)),
    "wrist": ((-35.0, 35.0), (-25.0, 40.0), (-80.0, 70.0)),
    "hand": ((-10.0, 10.0), (-10.0, 10.0), (-20.0, 10.0)),
}

# Kind of each SMPL joint 1..23 (SMPL_JOINT_NAMES[1:24]) and whether it is a right-side joint.
_KIND_OF = {"hip": "hip", "knee": "knee", "ankle": "ankle", "foot": "foot", "collar": "collar",
            "shoulder": "shoulder", "elbow": "elbow", "wrist": "wrist", "hand": "hand"}  # fmt: skip


def _joint_kind(name: str) -> tuple[str, bool]:
    side, _, rest = name.partition("_")
    if side in ("left", "right") and rest in _KIND_OF:
        return rest, side == "right"
    return name, False


def _mirror_range(r: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
    (xl, xh), (yl, yh), (zl, zh) = r
    return ((xl, xh), (-yh, -yl), (-zh, -zl))


BODY_JOINTS: tuple[str, ...] = tuple(SMPL_JOINT_NAMES[1:24])
# Per SMPL joint name 1..23: ((x lo, x hi), (y lo, y hi), (z lo, z hi)) in radians.
BODY_LIMITS: dict[str, tuple[tuple[float, float], ...]] = {}
for _name in BODY_JOINTS:
    _kind, _right = _joint_kind(_name)
    _r = _deg(*_LEFT_DEG[_kind])
    BODY_LIMITS[_name] = _mirror_range(_r) if _right else _r

# A pose is plausible when no component leaves its range by more than this (radians, ~4.6°).
BODY_PLAUSIBLE_TOLERANCE = 0.08
# Weight of the soft prior per squared radian outside a range (0.1 rad out costs 2 nats).
BODY_LIMIT_WEIGHT = 200.0
# The kinds of pose BodyLimits.sample mixes, with their probabilities.
BODY_POSE_MODES: dict[str, float] = {"stand": 0.25, "walk": 0.2, "sit": 0.13, "crouch": 0.1, "reach": 0.17,
                                     "free": 0.15}  # fmt: skip
# Margin kept inside the ranges by sample() and stored poses (float32 rounding stays within limits).
_SAMPLE_MARGIN = 1e-4
_J = {name: i for i, name in enumerate(BODY_JOINTS)}  # name -> index 0..22 in body_pose


def body_limit_bounds(dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """The ranges of :data:`BODY_LIMITS` as tensors ``lower, upper (23, 3)``."""
    lim = torch.tensor([BODY_LIMITS[n] for n in BODY_JOINTS], dtype=torch.float64)  # (23, 3, 2)
    return lim[..., 0].to(dtype), lim[..., 1].to(dtype)


def _mirror(aa: np.ndarray) -> np.ndarray:
    """Left-side rotation vectors (..., 3) -> the mirrored right-side ones: (x, y, z) -> (x, -y, -z)."""
    return aa * np.array([1.0, -1.0, -1.0])


def _swing(rest: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Rotation vectors (n, 3) of the shortest rotations taking the unit ``rest`` (3,) to the unit d (n, 3)."""
    axis = np.cross(rest, d)
    s = np.linalg.norm(axis, axis=-1)
    c = np.clip(d @ rest, -1.0, 1.0)
    angle = np.arctan2(s, c)
    safe = np.where(s > 1e-12, s, 1.0)
    return axis / safe[:, None] * angle[:, None]


def _compose(first: np.ndarray, then: np.ndarray) -> np.ndarray:
    """Rotation vectors of ``then ∘ first`` (first applied first), both (n, 3)."""
    return (Rotation.from_rotvec(then) * Rotation.from_rotvec(first)).as_rotvec()


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _arm(elev: np.ndarray, azim: np.ndarray, twist: np.ndarray) -> np.ndarray:
    """Left shoulder rotation vectors (n, 3): the arm pointing at elevation ``elev`` (radians above the
    horizontal) and azimuth ``azim`` (in the horizontal plane from the side, +x, towards the front, +z),
    reached by the shortest swing from the T-pose, after a twist about the arm."""
    d = np.stack([np.cos(elev) * np.cos(azim), np.sin(elev), np.cos(elev) * np.sin(azim)], axis=-1)
    return _compose(np.stack([twist, 0 * twist, 0 * twist], -1), _swing(np.array([1.0, 0.0, 0.0]), _unit(d)))


def _leg(flex: np.ndarray, abd: np.ndarray, twist: np.ndarray) -> np.ndarray:
    """Left hip rotation vectors (n, 3): the thigh swung forward by ``flex`` and out by ``abd`` (radians)
    by the shortest swing from hanging down, after a twist about the thigh."""
    d = np.stack([np.sin(abd) * np.cos(flex), -np.cos(abd) * np.cos(flex), np.sin(flex)], axis=-1)
    return _compose(np.stack([0 * twist, twist, 0 * twist], -1), _swing(np.array([0.0, -1.0, 0.0]), _unit(d)))


# Number of uniform and normal draws per pose (fixed whatever the mode, so that one pose's draws are
# always the same numbers of its stream).
_N_UNIFORM, _N_NORMAL = 40, 69


class BodyLimits(nn.Module):
    """Joint limits of SMPL's 23 body joints: bounds ``lower, upper (23, 3)`` (radians, buffers) on the
    components of each joint's local rotation vector about its x, y, z axes (see the module docstring).

    ``BodyLimits(dtype)``; move it with ``.to``. Methods take ``aa (..., 23, 3)`` or ``(..., 69)``.
    """

    lower: Tensor
    upper: Tensor

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        lower, upper = body_limit_bounds(dtype)
        self.register_buffer("lower", lower, persistent=False)
        self.register_buffer("upper", upper, persistent=False)

    @staticmethod
    def components(aa: Tensor) -> Tensor:
        """Local rotations ``(..., 69)`` or ``(..., 23, 3)`` -> the components ``(..., 23, 3)`` about x, y, z."""
        if aa.shape[-1] == 69:
            return aa.unflatten(-1, (23, 3))
        if aa.dim() >= 2 and tuple(aa.shape[-2:]) == (23, 3):
            return aa
        raise ValueError(f"body poses must be (..., 69) or (..., 23, 3) axis-angle, got {tuple(aa.shape)}")

    def _bounds(self, like: Tensor) -> tuple[Tensor, Tensor]:
        return self.lower.to(like), self.upper.to(like)

    def violation(self, aa: Tensor) -> Tensor:
        """Radians by which each component leaves its range (0 inside): ``(..., 23, 3)`` >= 0."""
        c = self.components(aa)
        lo, hi = self._bounds(c)
        return torch.relu(c - hi) + torch.relu(lo - c)

    def plausible(self, aa: Tensor, tolerance: float = BODY_PLAUSIBLE_TOLERANCE) -> Tensor:
        """Whether every joint is within its limits up to ``tolerance`` radians -> ``(...)`` bool."""
        return (self.violation(aa) <= tolerance).flatten(-2).all(-1)

    def log_prior(self, aa: Tensor, weight: float = BODY_LIMIT_WEIGHT) -> Tensor:
        """Soft joint-limit log-prior ``-weight · Σ violation²`` (0 inside the limits) -> ``(...)``."""
        return -weight * self.violation(aa).square().flatten(-2).sum(-1)

    def clamp(self, aa: Tensor) -> Tensor:
        """``aa`` projected into the limits (each component clamped into its range), in ``aa``'s shape."""
        c = self.components(aa)
        lo, hi = self._bounds(c)
        return torch.maximum(torch.minimum(c, hi), lo).reshape(aa.shape)

    # ------------------------------------------------------------------------------------ sampling

    @staticmethod
    def draw(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """The random numbers of ``n`` poses from ``rng``: ``uniform (n, 40)`` then ``normal (n, 69)``."""
        return {"uniform": rng.random((n, _N_UNIFORM)), "normal": rng.standard_normal((n, _N_NORMAL))}

    def poses(self, draws: dict[str, np.ndarray]) -> Tensor:
        """Poses ``(n, 69)`` float64 from the numbers of :meth:`draw` (row by row independent: stacking the
        draws of several streams gives the stacked poses)."""
        u, g = draws["uniform"], draws["normal"]
        n = u.shape[0]
        lo, hi = (b.numpy() for b in body_limit_bounds(torch.float64))

        def U(k: int, a: float, b: float) -> np.ndarray:  # uniform column k in [a, b] degrees -> radians
            return (a + (b - a) * u[:, k]) * _D

        pose = np.zeros((n, 23, 3))
        mode_names = list(BODY_POSE_MODES)
        edges = np.cumsum(list(BODY_POSE_MODES.values()))
        mode = np.minimum(np.searchsorted(edges / edges[-1], u[:, 0], side="right"), len(mode_names) - 1)
        is_ = {name: mode == i for i, name in enumerate(mode_names)}

        # --- legs: (flex, abd, twist, knee, ankle) per side, by mode
        phase = U(1, 0.0, 360.0)
        stride = U(2, 15.0, 35.0)
        legs = {}
        for side, sgn, k0 in (("left", 1.0, 3), ("right", -1.0, 9)):
            swing = sgn * np.sin(phase)
            flex = np.select(
                [is_["stand"], is_["walk"], is_["sit"], is_["crouch"], is_["reach"]],
                [U(k0, -8.0, 12.0), stride * swing, U(k0, 65.0, 105.0), U(k0, 85.0, 120.0), U(k0, -10.0, 25.0)],
                default=U(k0, -25.0, 120.0))
            abd = np.select(
                [is_["stand"], is_["walk"], is_["sit"], is_["crouch"], is_["reach"]],
                [U(k0 + 1, 0.0, 15.0), U(k0 + 1, 0.0, 8.0), U(k0 + 1, -5.0, 30.0), U(k0 + 1, 0.0, 35.0),
                 U(k0 + 1, -5.0, 25.0)],
                default=U(k0 + 1, -25.0, 45.0))
            twist = np.select([is_["free"]], [U(k0 + 2, -40.0, 40.0)], default=U(k0 + 2, -12.0, 15.0))
            ph = phase if sgn > 0 else phase + np.pi
            walk_knee = (8.0 + 55.0 * np.clip(np.sin(ph + 0.9), 0.0, None) ** 2) * _D
            knee = np.select(
                [is_["stand"], is_["walk"], is_["sit"], is_["crouch"], is_["reach"]],
                [U(k0 + 3, 0.0, 20.0), walk_knee, U(k0 + 3, 60.0, 115.0), U(k0 + 3, 100.0, 145.0),
                 U(k0 + 3, 0.0, 30.0)],
                default=U(k0 + 3, 0.0, 145.0) * u[:, k0 + 4] ** 0.5)
            ankle = np.select([is_["crouch"]], [U(k0 + 5, -25.0, 10.0)], default=U(k0 + 5, -15.0, 25.0))
            legs[side] = (flex, abd, twist, knee, ankle)
        for side, (flex, abd, twist, knee, ankle) in legs.items():
            hip = _leg(flex, abd, twist)
            knee_aa = np.stack([knee, 0 * knee, 0 * knee], -1)
            ankle_aa = np.stack([ankle, 0 * ankle, 0 * ankle], -1)
            if side == "right":
                hip, knee_aa, ankle_aa = _mirror(hip), _mirror(knee_aa), _mirror(ankle_aa)
            pose[:, _J[f"{side}_hip"]] = hip
            pose[:, _J[f"{side}_knee"]] = knee_aa
            pose[:, _J[f"{side}_ankle"]] = ankle_aa

        # --- arms: (elevation, azimuth, twist, elbow flexion) per side, by mode
        for side, sgn, k0 in (("left", 1.0, 15), ("right", -1.0, 21)):
            swing = -sgn * np.sin(phase)  # arms swing against the legs
            elev = np.select(
                [is_["stand"], is_["walk"], is_["sit"], is_["crouch"], is_["reach"]],
                [U(k0, -85.0, -55.0), U(k0, -85.0, -70.0), U(k0, -80.0, -35.0), U(k0, -60.0, 10.0),
                 U(k0, -70.0, 85.0)],
                default=U(k0, -85.0, 85.0))
            azim = np.select(
                [is_["stand"], is_["walk"], is_["sit"], is_["crouch"], is_["reach"]],
                [U(k0 + 1, -20.0, 40.0), 20.0 * _D + 1.4 * stride * swing, U(k0 + 1, 30.0, 100.0),
                 U(k0 + 1, 40.0, 110.0), U(k0 + 1, -40.0, 125.0)],
                default=U(k0 + 1, -40.0, 125.0))
            twist = U(k0 + 2, -45.0, 45.0)
            elbow = np.select(
                [is_["stand"], is_["walk"], is_["sit"], is_["crouch"], is_["reach"]],
                [U(k0 + 3, 0.0, 60.0), U(k0 + 3, 10.0, 50.0), U(k0 + 3, 30.0, 110.0), U(k0 + 3, 0.0, 100.0),
                 U(k0 + 3, 0.0, 140.0) * u[:, k0 + 4]],
                default=U(k0 + 3, 0.0, 145.0))
            shoulder = _arm(elev, azim, twist)
            elbow_aa = np.stack([U(k0 + 5, -60.0, 20.0), -elbow, 0 * elbow], -1)
            if side == "right":
                shoulder, elbow_aa = _mirror(shoulder), _mirror(elbow_aa)
            pose[:, _J[f"{side}_shoulder"]] = shoulder
            pose[:, _J[f"{side}_elbow"]] = elbow_aa

        # --- spine, neck and head: totals split over the segments
        bend = np.select([is_["sit"], is_["crouch"], is_["free"]],
                         [U(27, -5.0, 30.0), U(27, 10.0, 60.0), U(27, -25.0, 75.0)], default=U(27, -8.0, 15.0))
        turn = np.select([is_["reach"], is_["free"]], [U(28, -35.0, 35.0), U(28, -45.0, 45.0)],
                         default=U(28, -12.0, 12.0))
        side_bend = np.select([is_["reach"], is_["free"]], [U(29, -20.0, 20.0), U(29, -30.0, 30.0)],
                              default=U(29, -6.0, 6.0))
        for name, share in (("spine1", 0.4), ("spine2", 0.3), ("spine3", 0.3)):
            pose[:, _J[name]] = np.stack([share * bend, share * turn, share * side_bend], -1)
        nod, look, tilt = U(30, -30.0, 40.0), U(31, -60.0, 60.0) * u[:, 32], U(33, -20.0, 20.0)
        for name, share in (("neck", 0.55), ("head", 0.45)):
            pose[:, _J[name]] = np.stack([share * nod, share * look, share * tilt], -1)

        # --- everything: noise (radians) per component, larger for the big joints
        sigma = np.full((23, 3), 0.04)
        for name in ("left_hip", "right_hip", "left_shoulder", "right_shoulder"):
            sigma[_J[name]] = 0.07
        for name in ("left_wrist", "right_wrist"):
            sigma[_J[name]] = (0.15, 0.12, 0.3)
        for name in ("left_collar", "right_collar", "left_hand", "right_hand"):
            sigma[_J[name]] = 0.06
        for name in ("left_foot", "right_foot"):
            sigma[_J[name]] = (0.08, 0.03, 0.03)
        for name in ("left_knee", "right_knee", "left_elbow", "right_elbow"):
            sigma[_J[name]] = (0.05, 0.03, 0.02)
        pose = pose + g.reshape(n, 23, 3) * sigma
        pose = np.clip(pose, lo + _SAMPLE_MARGIN, hi - _SAMPLE_MARGIN)
        return torch.from_numpy(pose.reshape(n, 69))

    def sample(self, rng: np.random.Generator, n: int) -> Tensor:
        """``n`` natural-looking poses within the limits, ``(n, 69)`` float64 axis-angle (``body_pose``).

        A mixture (:data:`BODY_POSE_MODES`): standing with the arms down, walking (legs and arms swinging
        in opposition), sitting, crouching / squatting, reaching or gesturing with the arms anywhere
        in their range, and free poses spread over the whole range of the big joints; hips and
        shoulders by the shortest swing of the limb from its rest direction plus a twist, spine and
        neck totals split over their segments, Gaussian noise on every joint, then clamped a hair
        inside the limits (every pose passes :meth:`plausible` at tolerance 0, in float32 too).
        """
        return self.poses(self.draw(rng, int(n)))

    def extra_repr(self) -> str:
        tol = BODY_PLAUSIBLE_TOLERANCE
        return f"joints=23, tolerance={tol} rad ({math.degrees(tol):.1f}°)"
