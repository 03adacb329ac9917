"""Synthetic ambiguous bodies: a license-free benchmark with the ambiguities of occluded Human3.6M.

Each item is an SMPL body (real or stand-in, through :func:`mhe.body.load_smpl`) in a natural pose
within the joint limits of :mod:`mhe.body.body_limits` (:meth:`BodyLimits.sample`'s mixture of
standing, walking, sitting, crouching, reaching and free poses), with a small shape (``betas``
Gaussian, clipped to |β| <= :data:`BETA_BOX`) and a human-like global rotation: a yaw uniform over
360°, a lean (pitch) within ±20° and a roll within ±10°, on top of the base rotation (π about x) that
makes the SMPL body (y up) appear upright in the package's image frame (image y grows downwards).
``global_orient`` is the whole rotation, so ``smpl(global_orient, params, betas)`` gives the
camera-frame joints. The orthographic camera (:func:`mhe.geometry.project_orthographic`) frames the
body so that its silhouette's larger side fills 70-90 % of the 256 px crop. Then the ambiguities:

* **truncation** (a fraction ``truncation`` of the items): the crop is shifted and zoomed so that its
  edge cuts the body between two keypoints -- most often the lower legs (the ankles, or knees and
  ankles), else one arm at the side or the head at the top -- at least 1 cm clear of each; the
  keypoints beyond the edge are ``outside``.
* **occluders** (a fraction ``occlusion``): a box (:class:`mhe.data.render.Occluder`, kind "box")
  between the camera and the whole body, covering a limb (a forearm, an arm, a lower leg, both lower
  legs, a leg, the head or the torso) in the image; it hides the keypoints on whose viewing rays it
  lies (``object_occluded``).
* **self-occlusion**: the body is modelled by capsules (torso columns, spine, neck, head, upper
  and lower arms, hands, thighs, shins, feet, each between two posed SMPL joints or landmarks, radii
  scaled with the body's size); a keypoint is ``self_occluded`` when a capsule enters its viewing ray
  more than :data:`SELF_TOLERANCE` (5 cm) in front of it -- more than 5 cm plus the capsule's radius plus
  the keypoint's distance from the capsule's axis for the capsules the keypoint lies inside (in
  the rest pose), so that a joint is not hidden by its own limb's or the torso's surface, but is by
  its own limb pointing at the camera. Capsules rather than the
  rasterised mesh (as for the hands): body joints lie up to ~10 cm under their own surface (pelvis,
  hips, spine, thorax inside the torso), so one depth tolerance on the mesh's z-buffer either hides
  the torso joints in every view or misses most real occlusions; and the capsules' closed-form ray
  entry is cheap.

The camera looks along +z (the package's convention, as :mod:`mhe.data.synthetic` and
:mod:`mhe.data.render`): a point is nearer the camera when its z is smaller, and a joint is hidden by
what lies on the segment from it towards -z.

Items are deterministic functions of (split, seed, index): each item's random numbers come from its own
stream (:meth:`SyntheticBodies.rng`), while poses, the SMPL forward, camera, occluders and visibility
run on many items at once (:meth:`SyntheticBodies.generate_many`); with ``cache_dir`` the whole split
is generated once and stored in one file (atomic write; the name holds every setting, the body
model's checksum and :data:`GENERATOR_VERSION`).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch import Tensor
from torch.utils.data import Dataset

from mhe.body import BODY_BONE, BODY_ROOT, SMPL_TO_BODY, load_smpl
from mhe.body.body_limits import BodyLimits
from mhe.data.items import keypoint_items
from mhe.data.occluders import has_object, records_hide
from mhe.geometry import project_orthographic
from mhe.utils import atomic_torch_save, display_path

__all__ = [
    "AMBIGUOUS_MIN_HIDDEN",
    "BETA_BOX",
    "DEFAULT_SIZES",
    "GENERATOR_VERSION",
    "SELF_TOLERANCE",
    "SyntheticBodies",
    "body_capsules",
]

DEFAULT_SIZES = {"train": 20000, "val": 1000, "test": 1000}
# Bump when the generator changes what an item holds: disk caches of older items are then ignored.
GENERATOR_VERSION = 2
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
_SPLIT_NAME = {"train": "training", "val": "validation", "test": "test"}
# An item is ambiguous when it is truncated or at least this many of its 16 non-root keypoints are hidden.
AMBIGUOUS_MIN_HIDDEN = 6  # of the 16 non-root keypoints: more than a third hidden
# Metres a keypoint may lie behind another body part's surface and still be visible.
SELF_TOLERANCE = 0.05
BETA_BOX = 1.0
_NON_ROOT = [j for j in range(17) if j != BODY_ROOT]
_BASE = Rotation.from_rotvec([math.pi, 0.0, 0.0])  # SMPL's y-up body upright in the image (y down)

# Capsules of the body: (name, end a, end b, radius in metres for the rest body's size). Ends are SMPL
# joint indices (0..44, smplx order) or tuples of indices whose mean is the end; "head" is special.
_CAPSULES: tuple[tuple[str, Any, Any, float], ...] = (
    ("torso_left", 1, 13, 0.085), ("torso_right", 2, 14, 0.085), ("spine", 0, 9, 0.095),
    ("neck", 12, 15, 0.05), ("head", "head_low", "head_high", 0.09),
    ("upper_arm_left", 16, 18, 0.05), ("upper_arm_right", 17, 19, 0.05),
    ("forearm_left", 18, 20, 0.04), ("forearm_right", 19, 21, 0.04),
    ("hand_left", 20, 37, 0.035), ("hand_right", 21, 42, 0.035),
    ("thigh_left", 1, 4, 0.07), ("thigh_right", 2, 5, 0.07),
    ("shin_left", 4, 7, 0.05), ("shin_right", 5, 8, 0.05),
    ("foot_left", 31, (29, 30), 0.04), ("foot_right", 34, (32, 33), 0.04),
)  # fmt: skip

# Occluder targets: the box spans from the mean of keypoints A to the mean of keypoints B (body order).
_OCCLUDER_TARGETS: tuple[tuple[tuple[int, ...], tuple[int, ...], float], ...] = (
    ((12,), (13,), 0.12), ((15,), (16,), 0.12),  # forearms
    ((11,), (13,), 0.10), ((14,), (16,), 0.10),  # arms
    ((5,), (6,), 0.10), ((2,), (3,), 0.10),  # lower legs
    ((2, 3), (5, 6), 0.12),  # both lower legs, across
    ((4,), (6,), 0.07), ((1,), (3,), 0.07),  # legs
    ((10,), (9,), 0.05), ((7,), (8,), 0.05),  # head, torso
)  # fmt: skip
# Truncation: the crop edge's side (in the image) and its probability, and the number of keypoints cut.
_CUT_SIDES = np.array([[0.0, 1.0], [-1.0, 0.0], [1.0, 0.0], [0.0, -1.0]])  # bottom, left, right, top
_CUT_SIDE_P = np.array([0.55, 0.18, 0.18, 0.09])
_CUT_COUNT_P = np.array([[0.45, 0.0, 0.4, 0.0, 0.15, 0.0],  # bottom: feet / lower legs / legs (of 1..6)
                         [0.45, 0.35, 0.2, 0.0, 0.0, 0.0],  # sides: the hand, forearm, arm
                         [0.45, 0.35, 0.2, 0.0, 0.0, 0.0],
                         [0.6, 0.4, 0.0, 0.0, 0.0, 0.0]])  # top: head (and nose)  # fmt: skip
_MIN_GAP = 0.04  # metres between the last cut and the first kept keypoint along the cut direction


def _end(joints: Tensor, spec: Any) -> Tensor:
    """One capsule end (..., 3) from SMPL joints (..., 45, 3)."""
    if isinstance(spec, int):
        return joints[..., spec, :]
    if isinstance(spec, tuple):
        return joints[..., list(spec), :].mean(-2)
    centre = joints[..., [27, 28], :].mean(-2)  # between the ears
    up = centre - joints[..., 15, :]
    return centre + (0.25 if spec == "head_high" else -0.25) * up


def body_capsules(joints: Tensor, scale: Tensor | float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """The capsule model of posed bodies: SMPL joints ``(..., 45, 3)`` -> ends ``a, b (..., C, 3)`` and
    radii ``(..., C)`` (:data:`_CAPSULES` scaled by ``scale (...)``, the body's size over the rest body's)."""
    a = torch.stack([_end(joints, c[1]) for c in _CAPSULES], dim=-2)
    b = torch.stack([_end(joints, c[2]) for c in _CAPSULES], dim=-2)
    r = torch.tensor([c[3] for c in _CAPSULES], dtype=joints.dtype)
    r = r * torch.as_tensor(scale, dtype=joints.dtype)[..., None]
    return a, b, r


def _capsule_entry(xy: Tensor, a: Tensor, b: Tensor, r: Tensor) -> Tensor:
    """Depth where the viewing ray (parallel to +z) through each point enters each capsule.

    xy (B, K, 2), capsules a, b (B, C, 3), r (B, C), float64 -> (B, K, C), +inf where the ray misses.
    The capsule is the union of a finite cylinder and two spheres; the entry is the smallest entry."""
    inf = torch.tensor(float("inf"), dtype=xy.dtype)
    x, y = xy[..., :, None, 0], xy[..., :, None, 1]  # (B, K, 1)

    def sphere(c: Tensor) -> Tensor:
        d2 = (x - c[:, None, :, 0]) ** 2 + (y - c[:, None, :, 1]) ** 2
        h2 = r[:, None, :] ** 2 - d2
        return torch.where(h2 >= 0, c[:, None, :, 2] - h2.clamp_min(0).sqrt(), inf)

    axis = b - a
    length = axis.norm(dim=-1).clamp_min(1e-9)
    u = axis / length[..., None]  # (B, C, 3)
    w0 = torch.stack([x - a[:, None, :, 0], y - a[:, None, :, 1], -a[:, None, :, 2].expand_as(x - a[:, None, :, 0])],
                     dim=-1)  # ray origin (z = 0) minus a, (B, K, C, 3)
    uu = u[:, None]  # (B, 1, C, 3)
    P = w0 - (w0 * uu).sum(-1, keepdim=True) * uu  # perpendicular part of the origin
    Q = torch.zeros_like(uu)
    Q[..., 2] = 1.0
    Q = Q - uu[..., 2:3] * uu  # perpendicular part of the direction +z
    A = (Q * Q).sum(-1)
    Bq = (P * Q).sum(-1)
    C = (P * P).sum(-1) - r[:, None, :] ** 2
    disc = Bq * Bq - A * C
    ok = (A > 1e-12) & (disc >= 0)
    t = (-Bq - disc.clamp_min(0).sqrt()) / torch.where(A > 1e-12, A, torch.ones_like(A))
    s = (w0 * uu).sum(-1) + t * uu[..., 2]  # position along the axis where the ray enters the cylinder
    ok = ok & (s >= 0) & (s <= length[:, None, :])
    cyl = torch.where(ok, t, inf)
    return torch.minimum(cyl, torch.minimum(sphere(a), sphere(b)))


def _segment_distance(p: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Distance of points p (K, 3) to segments a, b (C, 3) -> (K, C)."""
    ab = b - a
    t = (((p[:, None] - a[None]) * ab[None]).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)[None]).clamp(0, 1)
    return (p[:, None] - (a[None] + t[..., None] * ab[None])).norm(dim=-1)


def _rotation_matrices(draws: dict[str, np.ndarray]) -> np.ndarray:
    """The camera-frame global rotations (n, 3, 3): base · lean (pitch about x) · roll (about z) · yaw (about y)."""
    yaw = Rotation.from_rotvec(np.stack([0 * draws["yaw"], draws["yaw"], 0 * draws["yaw"]], -1))
    pitch = Rotation.from_rotvec(np.stack([draws["pitch"], 0 * draws["pitch"], 0 * draws["pitch"]], -1))
    roll = Rotation.from_rotvec(np.stack([0 * draws["roll"], 0 * draws["roll"], draws["roll"]], -1))
    return (_BASE * pitch * roll * yaw).as_matrix()


class SyntheticBodies(Dataset):
    """Synthetic ambiguous bodies as a torch Dataset of dicts of tensors (default collate works).

    Args:
        split: "train", "val" or "test"; each split has its own random streams.
        size: number of items (default :data:`DEFAULT_SIZES` of the split).
        seed: item ``i`` is a function of (split, seed, i) only, whatever ``size`` or the cache.
        occlusion: fraction of the items with an occluding box in front of a limb.
        truncation: fraction of the items whose crop cuts part of the body off.
        cache_dir: generate the whole split once and keep it there as one file (see :meth:`cache_key`).
        progress: when ``cache_dir`` makes the split, say so and show a progress bar.
        smpl: a model from :func:`mhe.body.load_smpl` (default: ``load_smpl()``, real SMPL if present).
        self_tolerance: metres another body part must lie in front of a keypoint to hide it
            (:data:`SELF_TOLERANCE`; larger values count fewer self-occlusions).

    Item keys (float32 unless said): ``obs (17, 2)`` crop coordinates of the 17 body keypoints
    (:data:`mhe.body.BODY_KEYPOINTS`), ``visible (17,)`` bool, ``keypoints_2d_px (17, 2)`` pixels of the
    256 crop, ``px_per_mm ()``, ``joints_3d (17, 3)`` root-relative / ``scale``, ``scale ()`` the
    pelvis -> thorax distance in metres, ``joints_3d_mm (17, 3)`` root-relative, ``params (69,)``
    ``body_pose``, ``global_orient (3,)``, ``betas (10,)``, ``camera (3,)`` (log_scale, tx, ty) with
    ``project_orthographic(joints_3d_mm / 1000, camera[0], camera[1:]) == obs``, the causes
    ``object_occluded``, ``self_occluded``, ``outside (17,)`` bool, ``truncated ()`` bool (a keypoint
    outside the crop), ``ambiguous ()`` bool (truncated, or >= :data:`AMBIGUOUS_MIN_HIDDEN` of the 16
    non-root keypoints hidden) and ``occluder (16,)`` (:meth:`mhe.data.render.Occluder.to_vector`, zeros
    when there is none).
    """

    def __init__(
        self,
        split: str = "train",
        size: int | None = None,
        seed: int = 0,
        *,
        occlusion: float = 0.3,
        truncation: float = 0.3,
        cache_dir: str | os.PathLike | None = None,
        progress: bool = False,
        smpl: Any = None,
        self_tolerance: float = SELF_TOLERANCE,
    ) -> None:
        if split not in _SPLIT_CODE:
            raise ValueError(f"split must be one of {tuple(_SPLIT_CODE)}, got {split!r}")
        for name, value in (("occlusion", occlusion), ("truncation", truncation)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a fraction of items in [0, 1], got {value}")
        size = DEFAULT_SIZES[split] if size is None else int(size)
        if size < 1:
            raise ValueError(f"size must be a positive number of items, got {size}")
        self.split, self.size, self.seed = split, size, int(seed)
        self.occlusion, self.truncation = float(occlusion), float(truncation)
        self.self_tolerance = float(self_tolerance)
        self.smpl = load_smpl() if smpl is None else smpl
        self.limits = BodyLimits(torch.float64)
        self.progress = bool(progress)
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._stacked: dict[str, Tensor] | None = None
        # The rest body: its size and which keypoints lie in or on each capsule.
        zeros = torch.zeros(1, 3)
        rest = self._joints(zeros, torch.zeros(1, 69), torch.zeros(1, 10))[0].double()
        self._rest_bone = float((rest[SMPL_TO_BODY[BODY_BONE[1]]] - rest[SMPL_TO_BODY[BODY_BONE[0]]]).norm())
        a, b, r = body_capsules(rest)
        dist = _segment_distance(rest[SMPL_TO_BODY], a, b)  # (17, C)
        # The depth a capsule may reach in front of a keypoint inside it without hiding it: the capsule's
        # radius plus the keypoint's distance from its axis (both in the rest pose); 0 for the others.
        incident = dist < r[None]
        self._allowance = torch.where(incident, r[None] + dist, torch.zeros_like(dist)) / self._rest_bone  # (17, C)

    # ----------------------------------------------------------------------------------- dataset

    def __len__(self) -> int:
        return self.size

    @property
    def on_the_fly(self) -> bool:
        """Whether items are generated when read: no disk cache (``cache_dir``) asked for or loaded."""
        return self._stacked is None and self._cache_dir is None

    def rng(self, index: int) -> np.random.Generator:
        """The random stream of item ``index`` (independent of every other item, split and seed)."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, _SPLIT_CODE[self.split], index, 17]))

    def cache_key(self) -> str:
        """A file name that changes with anything that changes the items."""
        source = getattr(self.smpl, "source", None)
        model = getattr(source, "md5", "unknown")[:12]
        gender = getattr(self.smpl, "gender", "neutral")
        parts = [self.split, f"s{self.seed}", f"n{self.size}", f"o{self.occlusion:g}", f"t{self.truncation:g}",
                 f"st{self.self_tolerance:g}", gender, model, f"v{GENERATOR_VERSION}"]
        return "synthetic_bodies_" + "_".join(parts) + ".pt"

    def _load_or_generate(self, directory: Path) -> dict[str, Tensor]:
        path = directory / self.cache_key()
        if path.exists():
            try:
                stacked = torch.load(path, map_location="cpu", weights_only=True)
                if not (isinstance(stacked, dict) and "visible" in stacked and "camera" in stacked
                        and all(isinstance(v, Tensor) and len(v) == self.size for v in stacked.values())):
                    raise ValueError("not a stacked split of this size")
                return stacked
            except Exception as error:  # a foreign or damaged file: regenerate it
                warnings.warn(f"the synthetic-bodies cache {path} is damaged or unreadable "
                              f"({type(error).__name__}: {error}); generating it again", stacklevel=3)
        if self.progress:
            print(f"[mhe] generating {self.size:,} {_SPLIT_NAME[self.split]} bodies (synthetic-bodies, "
                  f"seed {self.seed}); cached afterwards in {display_path(path)}", flush=True)
        stacked = self.generate_many(progress=self.progress)
        atomic_torch_save(stacked, path)
        return stacked

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not -self.size <= index < self.size:
            raise IndexError(f"index {index} out of range for a {self.split} split of {self.size} items")
        index %= self.size
        if self._cache_dir is not None and self._stacked is None:
            self._stacked = self._load_or_generate(self._cache_dir)
        if self._stacked is not None:
            return {k: v[index] for k, v in self._stacked.items()}
        return self.generate(index)

    def generate(self, index: int) -> dict[str, Tensor]:
        """Build item ``index`` from scratch: the item of :meth:`generate_many` for that index alone."""
        return {k: v[0] for k, v in self._generate_chunk([int(index)]).items()}

    def generate_many(self, indices: Sequence[int] | None = None, chunk_size: int = 512,
                      progress: bool = False) -> dict[str, Tensor]:
        """Items ``indices`` (default: the whole split) stacked (``obs (N, 17, 2)``, ...), ``chunk_size``
        at a time; the same items as :meth:`generate` one by one (masks equal, floats up to rounding)."""
        indices = list(range(self.size)) if indices is None else [int(i) for i in indices]
        if not indices:
            raise ValueError("generate_many needs at least one index")
        from tqdm.auto import tqdm

        parts = []
        with tqdm(total=len(indices), disable=not progress, unit=" bodies", dynamic_ncols=True,
                  desc=f"synthetic bodies {self.split}") as bar:
            for start in range(0, len(indices), chunk_size):
                part = indices[start:start + chunk_size]
                parts.append(self._generate_chunk(part))
                bar.update(len(part))
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    # -------------------------------------------------------------------------------- generation

    def _joints(self, orient: Tensor, pose: Tensor, betas: Tensor) -> Tensor:
        """SMPL's 45 joints (n, 45, 3) float32 of float32 inputs (rows padded to a multiple of 16, so that
        an item's floats do not depend on the batch it comes in)."""
        n = orient.shape[0]
        rows = max(16, -(-n // 16) * 16)
        dtype = self.smpl.shapedirs.dtype
        device = self.smpl.shapedirs.device
        inputs = [torch.cat([t, t.new_zeros(rows - n, t.shape[1])]).to(dtype=dtype, device=device)
                  for t in (orient, pose, betas)]
        with torch.no_grad():
            fast = getattr(self.smpl, "keypoints", None)
            joints = fast(*inputs) if fast is not None else self.smpl(*inputs).joints
        return joints[:n].cpu().float()

    def _draw(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Every random number of one item, in a fixed order (the same numbers whatever the settings)."""
        d: dict[str, np.ndarray] = dict(self.limits.draw(rng, 1))
        d["yaw"] = rng.uniform(0.0, 2 * math.pi, 1)
        d["pitch"] = rng.uniform(-20.0, 20.0, 1) * math.pi / 180
        d["roll"] = rng.uniform(-10.0, 10.0, 1) * math.pi / 180
        d["betas"] = np.clip(rng.normal(0.0, 0.5, (1, 10)), -BETA_BOX, BETA_BOX)
        d["fill"] = rng.uniform(0.7, 0.9, 1)
        d["shift"] = rng.uniform(-0.08, 0.08, (1, 2))
        d["truncate"] = rng.uniform(size=1)
        d["cut_side"] = rng.choice(4, size=1, p=_CUT_SIDE_P)
        d["cut_count"] = np.array([rng.choice(6, p=_CUT_COUNT_P[int(d["cut_side"][0])]) + 1])
        d["cut_frac"] = rng.uniform(0.3, 0.7, 1)
        d["cut_fill"] = rng.uniform(0.75, 0.95, 1)
        d["cut_shift"] = rng.uniform(-1.0, 1.0, 1)
        d["occlude"] = rng.uniform(size=1)
        weights = np.array([t[2] for t in _OCCLUDER_TARGETS])
        d["target"] = rng.choice(len(_OCCLUDER_TARGETS), size=1, p=weights / weights.sum())
        d["occ_noise"] = rng.normal(0.0, 1.0, (1, 3))  # centre x, y (x 3 cm), angle (x 10°)
        d["occ_size"] = rng.uniform(size=(1, 4))  # along padding, across, depth, gap
        return d

    def _generate_chunk(self, indices: Sequence[int]) -> dict[str, Tensor]:
        per_item = [self._draw(self.rng(i)) for i in indices]
        draws = {k: np.concatenate([d[k] for d in per_item]) for k in per_item[0]}
        params = self.limits.poses({"uniform": draws["uniform"], "normal": draws["normal"]}).float()
        orient = torch.from_numpy(Rotation.from_matrix(_rotation_matrices(draws)).as_rotvec()).float()
        betas = torch.from_numpy(draws["betas"]).float()
        joints = self._joints(orient, params, betas)  # (n, 45, 3)
        rel45 = joints - joints[:, :1]
        rel = rel45[:, SMPL_TO_BODY]  # (n, 17, 3)
        bone = (rel[:, BODY_BONE[1]] - rel[:, BODY_BONE[0]]).norm(dim=-1)
        body_scale = bone.double() / self._rest_bone
        ca, cb, cr = body_capsules(rel45.double(), body_scale)

        camera, cut = self._cameras(rel.double(), ca, cb, cr, draws)
        obs = project_orthographic(rel, camera[:, 0], camera[:, 1:])
        occluder, object_occ = self._occluders(rel.double(), ca, cb, cr, draws)
        entry = _capsule_entry(rel[..., :2].double(), ca, cb, cr)  # (n, 17, C)
        allowance = self._allowance[None] * bone.double()[:, None, None]  # (n, 17, C), scaled with the body
        self_occ = (entry < rel[..., 2:].double() - self.self_tolerance - allowance).any(-1)
        items = keypoint_items(obs, object_occ, self_occ, camera, rel, bone, params, orient, betas, occluder)
        truncated = items["outside"].any(-1)
        hidden = (~items["visible"][:, _NON_ROOT]).sum(-1)
        return {**items, "truncated": truncated, "ambiguous": truncated | (hidden >= AMBIGUOUS_MIN_HIDDEN)}

    def _cameras(self, rel: Tensor, a: Tensor, b: Tensor, r: Tensor,
                 draws: dict[str, np.ndarray]) -> tuple[Tensor, np.ndarray]:
        """Cameras (n, 3) float32 (log_scale, tx, ty) and whether each item was cut (n,) bool.

        Uncut: the silhouette (capsules and keypoints) fills ``fill`` of the crop along its larger side,
        shifted a little. Cut: the crop's edge on side ``cut_side`` lies between the ``cut_count``-th
        keypoint from that side and the next, in the first gap of at least :data:`_MIN_GAP` from there."""
        n = rel.shape[0]
        pts = torch.cat([a[..., :2], b[..., :2], rel[..., :2]], dim=1).numpy()  # (n, P, 2)
        rad = torch.cat([r, r, torch.zeros(n, rel.shape[1], dtype=r.dtype)], dim=1).numpy()  # (n, P)
        kp = rel[..., :2].numpy()
        lo, hi = (pts - rad[..., None]).min(1), (pts + rad[..., None]).max(1)
        half = ((hi - lo) / 2).max(-1)
        s = draws["fill"] / half
        centre = (lo + hi) / 2 - draws["shift"] / s[:, None]
        cut = np.zeros(n, dtype=bool)
        for i in np.nonzero(draws["truncate"] < self.truncation)[0]:
            d = _CUT_SIDES[int(draws["cut_side"][i])]
            across = np.array([d[1], -d[0]])
            along = np.sort(kp[i] @ d)[::-1]  # descending: the first ones are cut
            gaps = along[:-1] - along[1:]
            m = int(draws["cut_count"][i])
            ok = [j for j in range(m - 1, 8) if gaps[j] >= _MIN_GAP]
            if not ok:
                continue
            j = ok[0]
            edge = along[j + 1] + float(draws["cut_frac"][i]) * gaps[j]
            a_min = float(((pts[i] @ d) - rad[i]).min())
            b_lo, b_hi = float(((pts[i] @ across) - rad[i]).min()), float(((pts[i] @ across) + rad[i]).max())
            h = max((edge - a_min) / 2, (b_hi - b_lo) / 2) / float(draws["cut_fill"][i])
            c_b = (b_lo + b_hi) / 2 + 0.5 * float(draws["cut_shift"][i]) * (h - (b_hi - b_lo) / 2)
            centre[i] = (edge - h) * d + c_b * across
            s[i] = 1.0 / h
            cut[i] = True
        log_s = torch.tensor([math.log(v) for v in s.tolist()], dtype=torch.float32)
        trans = torch.from_numpy(-s[:, None] * centre).float()
        return torch.cat([log_s[:, None], trans], dim=1), cut

    def _occluders(self, rel: Tensor, a: Tensor, b: Tensor, r: Tensor,
                   draws: dict[str, np.ndarray]) -> tuple[Tensor, Tensor]:
        """Occluder records (n, 16) float32 (zeros: none) and the keypoints they hide (n, 17) bool."""
        n = rel.shape[0]
        records = torch.zeros(n, 16)
        chosen = np.nonzero(draws["occlude"] < self.occlusion)[0]
        if len(chosen) == 0:
            return records, torch.zeros(n, 17, dtype=torch.bool)
        kp = rel.numpy()
        front = (torch.minimum(a[..., 2], b[..., 2]) - r).min(-1).values.numpy()  # nearest body surface
        front = np.minimum(front, kp[..., 2].min(-1))
        for i in chosen:
            ends_a, ends_b, _ = _OCCLUDER_TARGETS[int(draws["target"][i])]
            pa, pb = kp[i, list(ends_a), :2].mean(0), kp[i, list(ends_b), :2].mean(0)
            noise, size = draws["occ_noise"][i], draws["occ_size"][i]
            centre_xy = (pa + pb) / 2 + 0.03 * noise[:2]
            length = float(np.linalg.norm(pb - pa))
            angle = math.atan2(pb[1] - pa[1], pb[0] - pa[0]) if length > 0.05 else 2 * math.pi * size[0]
            angle += math.radians(10.0) * noise[2]
            half = np.array([length / 2 + 0.06 + 0.08 * size[0], 0.07 + 0.09 * size[1], 0.05 + 0.2 * size[2]])
            z = front[i] - (0.02 + 0.28 * size[3]) - half[2]
            R = Rotation.from_rotvec([0.0, 0.0, angle]).as_matrix()
            records[i] = torch.from_numpy(np.concatenate([[1.0], [centre_xy[0], centre_xy[1], z], R.reshape(9), half]))
        hides = records_hide(records.double(), rel) & has_object(records)[:, None]
        return records, hides

