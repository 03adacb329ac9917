"""Synthetic occluded hands: a license-free benchmark that is ambiguous in the ways HO3D is.

Each item is a MANO hand (real or stand-in, through :func:`mhe.body.load_mano`) in a plausible pose,
seen by the package's orthographic camera, with a convex "object" (sphere, box or cylinder) held near
it. Poses are drawn in the model's 45-D PCA space (correlated fingers) around its mean pose, plus a
shared grasp level that curls the fingers together; every finger joint's rotation is then split into
flexion / abduction / twist about anatomical axes derived from the model's own rest geometry (so the
same code serves the stand-in and the real MANO), clamped to per-joint limits, and mapped back into
the PCA box |x| <= 2 of the paper's prior. Shape ``betas`` stay inside the prior box |b| <= 0.03 and
the global rotation is uniform. The camera scale and translation make the hand fill the 256 crop. A
joint is *occluded* when the object lies on its viewing ray (``mhe.data.render.Occluder``), when the
hand's own rasterised surface is more than ``self_tolerance`` in front of it, or when it falls outside
the crop. The object is sized per item so that it covers about ``occlusion`` of the 20 non-root joints.
Items are generated on the fly, deterministically from (split, seed, index), optionally cached.
"""

from __future__ import annotations

import math
import os
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
from mhe.data.render import OCCLUDER_KINDS, Occluder, rasterize, render_crop
from mhe.geometry import crop_to_pixels, project_orthographic
from mhe.utils import atomic_torch_save

__all__ = [
    "DEFAULT_SIZES",
    "HandKinematics",
    "SyntheticHands",
    "consistent_alternative",
    "occlusion_stats",
]

DEFAULT_SIZES = {"train": 20000, "val": 1000, "test": 1000}
# Bump when the generator changes what an item holds: disk caches of older items are then ignored.
GENERATOR_VERSION = 1
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
PCA_BOX = 2.0  # the paper's PCA prior is flat for |x| <= 2
BETA_BOX = 0.03  # ... and for |beta| <= 0.03

# Per articulated joint (MANO joints 1..15): flexion range, |abduction| and |twist| limits in radians.
_LIMITS = {
    "mcp": (-0.3, 1.6, 0.35, 0.15),
    "pip": (-0.05, 1.8, 0.08, 0.08),
    "dip": (-0.1, 1.3, 0.08, 0.08),
    "thumb_cmc": (-0.5, 1.0, 0.7, 0.4),
    "thumb_mcp": (-0.3, 1.0, 0.25, 0.2),
    "thumb_ip": (-0.3, 1.4, 0.08, 0.08),
}
_JOINT_KIND = ["mcp", "pip", "dip"] * 4 + ["thumb_cmc", "thumb_mcp", "thumb_ip"]  # MANO joints 1..15
_FINGER_CHAINS = {"index": (1, 2, 3), "middle": (4, 5, 6), "pinky": (7, 8, 9), "ring": (10, 11, 12),
                  "thumb": (13, 14, 15)}  # fmt: skip


class HandKinematics:
    """What pose sampling needs from one MANO model: its PCA basis and anatomical joint axes.

    Attributes (float64): ``components (45, 45)`` (rows), ``pinv (45, 45)``, ``mean (45,)``,
    ``rest (21, 3)`` keypoints of the flat hand, ``axes (15, 3, 3)`` per articulated joint the rows
    (flexion, abduction, twist), ``limits (15, 4)`` (flex min, flex max, |abduction|, |twist|).
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
        forward, thumb_side = J[4] - J[0], J[1] - J[7]
        palm = torch.linalg.cross(thumb_side, forward)  # right hand: points out of the palm
        if getattr(mano, "side", "right") == "left":
            palm = -palm
        palm = palm / palm.norm()
        across = 0.6 * palm - thumb_side / thumb_side.norm()
        child = {int(p): j for j, p in enumerate(HAND_PARENTS) if p > 0}  # finger joint -> next keypoint
        axes = torch.zeros(15, 3, 3, dtype=torch.float64)
        for j in range(1, 16):
            u = J[child[j]] - J[j]
            u = u / u.norm()
            target = across if j >= 13 else palm
            flex = torch.linalg.cross(u, target)
            flex = flex / flex.norm()
            axes[j - 1] = torch.stack([flex, torch.linalg.cross(flex, u), u])
        self.axes = axes
        self.limits = torch.tensor([_LIMITS[k] for k in _JOINT_KIND], dtype=torch.float64)

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

    Item keys: ``obs`` (21, 2) crop units, ``visible`` (21,) bool, ``keypoints_2d_px`` (21, 2) in a
    256 crop, ``joints_3d`` (21, 3) root-relative / bone, ``scale`` () bone length in metres,
    ``joints_3d_mm`` (21, 3), ``params`` (45,) PCA pose, ``global_orient`` (3,), ``betas`` (10,),
    ``camera`` (3,) = (log_scale, tx, ty) with project_orthographic(MANO joints - root) = obs,
    ``object_occluded`` / ``self_occluded`` / ``outside`` (21,) bool causes, ``occluder`` (16,)
    (:meth:`mhe.data.render.Occluder.to_vector`), and ``image`` when asked for.
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
        self.split, self.size, self.seed = split, size, int(seed)
        self.occlusion, self.occluder_kind = float(occlusion), occluder_kind
        self.images, self.image_size = bool(images), int(image_size)
        self.self_tolerance = float(self_tolerance)
        self.mano = load_mano() if mano is None else mano
        self.kin = _kinematics(self.mano)
        self.faces = torch.as_tensor(np.asarray(self.mano.faces), dtype=torch.long)
        self._cache: dict[int, dict[str, Tensor]] | None = {} if cache or cache_dir else None
        # The disk cache is read (or written) on first access, so building a dataset stays cheap.
        self._stacked: dict[str, Tensor] | None = None
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None

    def cache_key(self) -> str:
        """A file name that changes with anything that changes the items."""
        source = getattr(self.mano, "source", None)
        model = getattr(source, "md5", "unknown")[:12]
        side = getattr(self.mano, "side", "right")
        parts = [self.split, f"s{self.seed}", f"n{self.size}", f"o{self.occlusion:g}",
                 f"img{self.image_size}" if self.images else "noimg", f"k{self.occluder_kind or 'any'}",
                 f"t{self.self_tolerance:g}", side, model, f"v{GENERATOR_VERSION}"]
        return "synthetic_hands_" + "_".join(parts) + ".pt"

    def _load_or_generate(self, directory: Path) -> dict[str, Tensor]:
        path = directory / self.cache_key()
        if path.exists():
            try:
                return torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # a foreign or damaged file: regenerate it
                pass
        items = [self.generate(i) for i in range(self.size)]
        stacked = {k: torch.stack([item[k] for item in items]) for k in items[0]}
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
        """Build item ``index`` from scratch (what ``__getitem__`` caches)."""
        rng = self.rng(index)
        params = self.kin.sample_params(rng).float()
        orient = torch.from_numpy(Rotation.random(random_state=rng).as_rotvec()).float()
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
        zbuf, fbuf = rasterize(uv_verts, vrel[:, 2], self.faces, raster)
        self_occ = _behind_surface(obs, rel[:, 2], zbuf, self.self_tolerance)
        outside = (obs.abs() > 1).any(-1)
        visible = ~(object_occ | self_occ | outside)

        bone = float((joints[HAND_BONE[1]] - joints[HAND_BONE[0]]).norm())
        item = {
            "obs": obs,
            "visible": visible,
            "keypoints_2d_px": crop_to_pixels(obs, 256),
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
            item["image"] = render_crop(
                vrel, self.faces, float(camera[0]), camera[1:], occluder, raster, skin, colour, background,
                raster=(zbuf, fbuf),
            )
        return item


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
