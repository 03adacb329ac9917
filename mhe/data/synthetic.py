"""Synthetic occluded hands: a license-free benchmark that is ambiguous in the ways HO3D is.

Each item is a MANO hand (real or stand-in, through :func:`mhe.body.load_mano`) in a plausible pose,
seen by the package's orthographic camera, with a convex "object" (sphere, box or cylinder) held near
it. Poses are drawn in the model's 45-D PCA space (correlated fingers) around its mean pose, plus a
shared grasp level that curls the fingers together; every finger joint's rotation is then split into
flexion / abduction / twist about anatomical axes derived from the model's own rest geometry (so the
same code serves the stand-in and the real MANO), clamped to per-joint limits, and mapped back into
the PCA box |x| <= 2 of the paper's prior (:mod:`mhe.data.hand_poses`). Shape ``betas`` stay inside the
prior box |b| <= 0.03 and the global rotation is uniform (or, with ``rotation="ho3d"``, limited to an
HO3D-like range: the palm normal within 60 degrees of the viewing axis). The camera scale and
translation make the hand fill the 256 crop. A joint is *occluded* when the object lies on its viewing
ray (:mod:`mhe.data.occluders`), when the hand's own rasterised surface is more than ``self_tolerance``
in front of it, or when it falls outside the crop (or, with ``visibility="official"``, by HO3D's rule on
the rendered depth map and hand mask; :mod:`mhe.data.visibility`). The object is sized per item so that
it covers about ``occlusion`` of the 20 non-root joints. How often each joint is hidden:
:mod:`mhe.data.statistics`.

Items are deterministic functions of (split, seed, index), optionally cached. There is one generator,
:meth:`SyntheticHands.generate_many`: each item's random numbers come from its own stream
(:meth:`SyntheticHands.rng`), while the pose limits, the MANO forward (padded to a multiple of 16 rows),
camera, occluder and z-buffer run on many items at once, so that an item's bits do not depend on the
batch it is generated in; ``dataset[i]`` without a cache is that generator on one item.
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

from mhe.body import HAND_BONE, HAND_PARENTS, HAND_ROOT, load_mano
from mhe.data.hand_poses import BETA_BOX, ROTATIONS, ho3d_rotvecs, kinematics
from mhe.data.items import keypoint_items, px_per_mm
from mhe.data.occluders import has_object, place_occluders, records_hide
from mhe.data.render import OCCLUDER_KINDS, Occluder, rasterize_batch, render_crop
from mhe.data.visibility import VISIBILITY_RULES, depth_rule, official_rule
from mhe.geometry import project_orthographic
from mhe.utils import atomic_torch_save, display_path

__all__ = ["DEFAULT_SIZES", "GENERATOR_VERSION", "SyntheticHands", "consistent_alternative"]

DEFAULT_SIZES = {"train": 20000, "val": 1000, "test": 1000}
# Bump when the generator changes what an item holds: disk caches of older items are then ignored.
GENERATOR_VERSION = 1
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
_SPLIT_NAME = {"train": "training", "val": "validation", "test": "test"}
_NON_ROOT = [j for j in range(21) if j != HAND_ROOT]


def _draw_items(
    streams: Sequence[np.random.Generator], occlusion: float, occluder_kind: str | None, images: bool
) -> dict[str, np.ndarray]:
    """Every random number of each item, taken from the item's own stream with the same calls in the same
    order whatever the batch, stacked over the N items (float64 unless said).

    Keys: ``z`` (N, 45) PCA draws and ``curl`` (N, 5) finger curls
    (:meth:`mhe.data.hand_poses.HandKinematics.pose_params`), ``orient`` (N, 4) the quaternions
    ``Rotation.random`` draws, ``betas`` (N, 10) clipped, ``cam_scale`` (N,) and ``cam_shift`` (N, 2); with
    occlusion > 0 also ``target``, ``kind``, ``anchor`` (N,) int64, ``occ_orient`` (N, 4) and its
    ``rotation`` (N, 3, 3), ``half`` (N, 3), ``centre_noise`` (N, 2), ``gap`` (N,)
    (:func:`mhe.data.occluders.place_occluders`); with images ``skin`` (N, 3), ``hue`` (N, 4) and
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
            self-occlusion and leaving the crop come on top (see :func:`mhe.data.statistics.occlusion_stats`).
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
            normal lies within :data:`mhe.data.hand_poses.HO3D_MAX_TILT` (60) degrees of the viewing axis, towards or
            away from the camera with equal probability, uniformly over that range (uniform in-plane
            angle and roll about the palm normal). A uniform rotation tilts the palm more than 60
            degrees in half of its items. This is a chosen range, not fitted to HO3D's annotations.
            It hides about as many joints as "uniform" (views of the back, where curled fingertips
            hide behind the knuckles, make up for the edge-on views left out). Drawn from the same
            random numbers as "uniform" (mapped into the range, :func:`mhe.data.hand_poses.ho3d_rotvecs`), so an item's
            pose, shape, camera jitter and object draws are those of the uniform item with the same
            index. :func:`mhe.data.hand_poses.palm_tilt` measures the tilt.

    Items are built by :meth:`generate_many`, many at once (the whole split for ``cache_dir``); without
    a disk cache ``dataset[i]`` builds item ``i`` alone (:meth:`generate`), bit for bit the same item.

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
        self.kin = kinematics(self.mano)
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
                    stacked["px_per_mm"] = px_per_mm(stacked["camera"])
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

    @property
    def on_the_fly(self) -> bool:
        """Whether items are generated when read: no disk cache (``cache_dir``) asked for or loaded."""
        return self._stacked is None and self._cache_dir is None

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
        """Build item ``index`` from scratch: the item :meth:`generate_many` builds for that index."""
        return {k: v[0] for k, v in self._generate_chunk([int(index)]).items()}

    def generate_many(
        self, indices: Sequence[int] | None = None, chunk_size: int | None = None, progress: bool = False
    ) -> dict[str, Tensor]:
        """Build items ``indices`` (default: the whole split) from scratch, many at once.

        Returns the item keys stacked over the N items (``obs`` (N, 21, 2), ``visible`` (N, 21), ...).
        Each item's random numbers come from its own stream (:meth:`rng`); the pose limits, MANO
        forward, camera, occluder placement, projection and visibility run on ``chunk_size`` items
        together (default 512, 64 with images), the chunks on ``torch.get_num_threads()`` threads at
        once. An item's bits depend neither on the chunk size nor on the other indices asked for.
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
                        for items in pool.map(self._generate_chunk, chunks):
                            parts.append(items)
                            bar.update(len(items["visible"]))
                finally:
                    torch.set_num_threads(threads)
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def _generate_chunk(self, indices: Sequence[int]) -> dict[str, Tensor]:
        """The items ``indices`` stacked (see :meth:`generate_many`): the whole generator."""
        n = len(indices)
        draws = _draw_items([self.rng(i) for i in indices], self.occlusion, self.occluder_kind, self.images)
        params = self.kin.pose_params(torch.from_numpy(draws["z"]), draws["curl"]).float()
        if self.rotation == "uniform":
            orient = torch.from_numpy(Rotation.from_quat(draws["orient"]).as_rotvec()).float()
        else:
            orient = torch.from_numpy(ho3d_rotvecs(draws["orient"], self._palm)).float()
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

        # Orthographic camera: the hand's silhouette fills 70-90 % of the crop, a little off-centre.
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
            occluder = place_occluders(rel64, draws)
            object_occ = records_hide(occluder.double(), rel64) & has_object(occluder)[:, None]
        raster = self.image_size if self.images else 64
        uv_verts = project_orthographic(vrel, camera[:, 0], camera[:, 1:])
        if self.visibility == "depth":
            self_occ = depth_rule(obs, rel[..., 2], uv_verts, vrel[..., 2], self.faces, raster, self.self_tolerance)
        else:
            object_occ, self_occ = official_rule(obs, rel[..., 2], uv_verts, vrel[..., 2], self.faces, camera,
                                                 None if self.occlusion == 0 else occluder)
        bone = (joints[:, HAND_BONE[1]] - joints[:, HAND_BONE[0]]).norm(dim=-1)
        items = keypoint_items(obs, object_occ, self_occ, camera, rel, bone, params, orient, betas, occluder)
        if self.images:
            colour = np.clip(0.5 + 0.45 * Rotation.from_quat(draws["hue"]).as_matrix()[:, 0], 0.05, 0.95)
            zbuf, fbuf = rasterize_batch(uv_verts, vrel[..., 2], self.faces, raster)
            images, solids = [], has_object(occluder)
            for i in range(n):
                solid = Occluder.from_vector(occluder[i].double()) if solids[i] else None
                images.append(render_crop(
                    vrel[i], self.faces, float(camera[i, 0]), camera[i, 1:], solid, raster,
                    torch.from_numpy(draws["skin"][i]), torch.from_numpy(colour[i]),
                    torch.from_numpy(draws["background"][i]), raster=(zbuf[i], fbuf[i]),
                ))  # fmt: skip
            items["image"] = torch.stack(images)
        return items


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

