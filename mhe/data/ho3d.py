"""HO3D v3 read from its raw layout: hand keypoints, visibility, crops, in the package's item format.

Reads ``train.txt`` / ``evaluation.txt`` and, per frame, ``{split}/SEQ/{rgb/ID.jpg, depth/ID.png,
seg/ID.png, meta/ID.pkl}`` (Hampali et al., CVPR 2020), not the undocumented preprocessed ``.npy``
files the official MHEntropy code needs. The 3D joints (OpenGL, hand at -z) are flipped by
diag(1, -1, -1) into the OpenCV camera, projected with ``camMat``, and a joint is *visible* as the
official loader decides it: some pixel of a 9x9 window around its projection is hand in the
(resized) segmentation and the joint lies less than 40 mm behind the depth map there; joints whose
window falls outside the crop are invisible. The crop is the official square around the hand's
joints (x1.5) fused with the object's extent (taken from the object segmentation, so the YCB models
are not needed). Items carry the same keys as :class:`mhe.data.SyntheticHands`. The default
evaluation split is the official held-out sequences ABF14, MC5, SB14 and ShSu13 of ``train.txt``.
:func:`write_fake_ho3d` writes a tiny folder in the same formats, with joints planted visible and
occluded, for tests and notebooks.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy.spatial.transform import Rotation
from torch.utils.data import Dataset

from mhe.body import HAND_BONE, HAND_ROOT
from mhe.errors import DataFileError

__all__ = [
    "DEPTH_SCALE",
    "EVAL_SEQUENCES",
    "HO3D",
    "OPENGL_TO_OPENCV",
    "crop_box",
    "decode_depth",
    "encode_depth",
    "fit_orthographic_camera",
    "inside_crop",
    "official_visibility",
    "project",
    "read_depth",
    "read_meta",
    "read_segmentation",
]

EVAL_SEQUENCES = ("ABF14", "MC5", "SB14", "ShSu13")
DEPTH_SCALE = 0.00012498664727900177  # metres per unit of R + 256 G in HO3D's depth PNGs
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0])
# HO3D's handJoints3D order is the package's keypoint order, so no index map is needed.
_ROOT, _BONE = HAND_ROOT, HAND_BONE


# --- file decoding --------------------------------------------------------------------------


def decode_depth(rgb: np.ndarray) -> np.ndarray:
    """HO3D depth encoding: rgb (H, W, 3) uint8 -> depth (H, W) float64 metres, (R + 256 G) x scale.

    The channels are widened to uint16 first: with uint8 arithmetic ``256 * G`` wraps around on NumPy 2.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] < 2:
        raise ValueError(f"depth image must be (H, W, 3), got shape {rgb.shape}")
    wide = rgb.astype(np.uint16)
    return (wide[..., 0] + wide[..., 1] * np.uint16(256)).astype(np.float64) * DEPTH_SCALE


def encode_depth(depth_m: np.ndarray) -> np.ndarray:
    """Inverse of :func:`decode_depth`: depth (H, W) metres -> (H, W, 3) uint8 (blue unused)."""
    units = np.clip(np.round(np.asarray(depth_m, dtype=np.float64) / DEPTH_SCALE), 0, 65535).astype(np.uint16)
    out = np.zeros(units.shape + (3,), dtype=np.uint8)
    out[..., 0] = units % 256
    out[..., 1] = units // 256
    return out


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"missing HO3D {what} file: {path}")
    return path


def _damaged(path: Path, what: str, err: Exception) -> DataFileError:
    return DataFileError(
        f"HO3D {what} file {path} cannot be read ({type(err).__name__}: {str(err)[:120] or 'no details'}); "
        "it is truncated or damaged: copy it again from the HO3D v3 download"
    )


def read_depth(path: str | os.PathLike) -> np.ndarray:
    """Read a depth PNG -> (H, W) float64 metres (0 where the sensor has no depth)."""
    path = _require(Path(path), "depth")
    try:
        with Image.open(path) as im:
            return decode_depth(np.asarray(im.convert("RGB")))
    except (OSError, ValueError, SyntaxError) as err:  # PIL raises these on damaged images
        raise _damaged(path, "depth", err) from None


def read_segmentation(path: str | os.PathLike, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Read a segmentation PNG, resize it (nearest) to ``size = (W, H)`` of the rgb frame.

    Returns (hand, object) bool masks (H, W): hand where blue > 200, object where green > 200.
    """
    path = _require(Path(path), "segmentation")
    try:
        with Image.open(path) as im:
            seg = np.asarray(im.convert("RGB").resize(size, Image.Resampling.NEAREST))
    except (OSError, ValueError, SyntaxError) as err:
        raise _damaged(path, "segmentation", err) from None
    return seg[..., 2] > 200, seg[..., 1] > 200


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Read a meta pickle (written by Python 2, hence latin1)."""
    path = _require(Path(path), "meta")
    try:
        with open(path, "rb") as f:
            meta = pickle.load(f, encoding="latin1")
    except Exception as err:  # pickle raises many types on damaged input
        raise _damaged(path, "meta", err) from None
    if not isinstance(meta, dict):
        raise DataFileError(f"HO3D meta file {path} holds a {type(meta).__name__}, not the dict of annotations")
    return meta


# --- geometry of one frame -----------------------------------------------------------------


def project(xyz: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole projection of OpenCV camera points xyz (J, 3) metres -> (uv (J, 2) px, depth z (J,) m)."""
    uvw = xyz @ K.T
    return uvw[:, :2] / uvw[:, 2:3], xyz[:, 2]


def official_visibility(
    uv: np.ndarray,
    z: np.ndarray,
    hand_mask: np.ndarray,
    depth: np.ndarray,
    window: int = 9,
    tolerance: float = 0.040,
) -> np.ndarray:
    """The official visibility test: uv (J, 2) px, joint depth z (J,) m, masks/depth (H, W) -> (J,) bool.

    A joint is visible if some pixel of the ``window`` x ``window`` box around its (truncated)
    projection is hand and there the joint is less than ``tolerance`` metres behind the depth map.
    """
    H, W = hand_mask.shape
    half = window // 2
    offsets = np.arange(-half, window - half)
    u0 = np.trunc(uv[:, 0]).astype(np.int64)  # the official code casts with int(): truncation
    v0 = np.trunc(uv[:, 1]).astype(np.int64)
    us = u0[:, None, None] + offsets[None, None, :]  # (J, 1, w)
    vs = v0[:, None, None] + offsets[None, :, None]  # (J, w, 1)
    us, vs = np.broadcast_arrays(us, vs)
    inside = (us >= 0) & (us < W) & (vs >= 0) & (vs < H)
    uc, vc = np.clip(us, 0, W - 1), np.clip(vs, 0, H - 1)
    ok = inside & hand_mask[vc, uc] & (z[:, None, None] - depth[vc, uc] < tolerance)
    return ok.reshape(len(uv), -1).any(-1)


def crop_box(
    uv: np.ndarray, object_mask: np.ndarray | None, image_size: tuple[int, int], hand_factor: float = 1.5
) -> tuple[float, float, float]:
    """The official square crop: uv (J, 2) px, object_mask (H, W) or None, image_size (W, H).

    The joints' box is enlarged ``hand_factor`` times about its (integer) centre, fused with the
    object's box, clipped to the image; the square of side max(width, height) is centred on the
    fused box. Returns (x0, y0, side) in pixels: the crop covers [x0, x0 + side) x [y0, y0 + side).
    """
    W, H = image_size
    lo, hi = uv.min(0), uv.max(0)
    centre = np.floor((lo + hi) / 2)
    delta = (hi - lo) * hand_factor / 2
    boxes = [centre - delta, centre + delta]
    if object_mask is not None and object_mask.any():
        ys, xs = np.nonzero(object_mask)
        boxes += [np.array([xs.min(), ys.min()], float), np.array([xs.max(), ys.max()], float)]
    pts = np.stack(boxes)
    # The official code clips x at the image height (a bug); here x is clipped at the width.
    x_min, y_min = max(0.0, pts[:, 0].min()), max(0.0, pts[:, 1].min())
    x_max, y_max = min(pts[:, 0].max(), W), min(pts[:, 1].max(), H)
    cx, cy = np.floor((x_min + x_max) / 2), np.floor((y_min + y_max) / 2)
    side = max(x_max - x_min, y_max - y_min, 1.0)
    return float(cx - side / 2), float(cy - side / 2), float(side)


def inside_crop(px: np.ndarray, size: int, window: int = 9) -> np.ndarray:
    """Whether some pixel of the ``window`` box around crop pixels px (J, 2) lies in the crop -> (J,) bool."""
    half = window // 2
    return np.asarray(((px >= -half) & (px <= size - 1 + half)).all(-1))


def fit_orthographic_camera(xyz: np.ndarray, uv: np.ndarray) -> tuple[float, float, float]:
    """Least-squares weak-perspective camera uv ~ s xyz[:, :2] + t: xyz (J, 3), uv (J, 2) -> (log s, tx, ty)."""
    a, b = xyz[:, :2] - xyz[:, :2].mean(0), uv - uv.mean(0)
    s = float((a * b).sum() / max((a * a).sum(), 1e-12))
    t = uv.mean(0) - s * xyz[:, :2].mean(0)
    return float(np.log(max(s, 1e-12))), float(t[0]), float(t[1])


# --- the dataset ----------------------------------------------------------------------------


def _read_list(path: Path) -> list[tuple[str, str]]:
    frames = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            seq, _, fid = line.partition("/")
            frames.append((seq, fid))
    return frames


class HO3D(Dataset):
    """HO3D v3 frames as items in the package's format (the keys of :class:`mhe.data.SyntheticHands`).

    Args:
        root: the folder that holds ``train.txt`` and ``train/`` (and ``evaluation*`` for that split).
        split: "test" (default: the official held-out sequences of ``train.txt``), "train" (the rest of
            ``train.txt``), "all" (all of ``train.txt``) or "evaluation" (``evaluation.txt``; its meta has
            only the root joint, so its items raise -- the full evaluation GT is not read).
        sequences: use exactly these sequences of the split's list instead of the default selection.
        crop_size: pixel size of the crop that ``keypoints_2d_px`` refers to (the model's 256).
        images: also return ``"image"`` (3, image_size, image_size) float in [0, 1].
        image_size: resolution of the returned image crop.
        mano: a model from :func:`mhe.body.load_mano`; when given, ``"params"`` holds the 45 PCA
            coefficients of HO3D's axis-angle finger pose in that model's basis (HO3D's ``handPose``
            is absolute axis-angle, i.e. a flat hand mean; coefficients = (pose - mean) @ pinv(basis)).

    Each item: ``obs`` (21, 2) crop units in [-1, 1], ``visible`` (21,) bool, ``keypoints_2d_px``
    (21, 2), ``px_per_mm`` () crop pixels per millimetre at the hand (the focal length ``K[0, 0]`` in
    crop pixels over the root joint's depth in mm: a 1 mm shift of the root in x moves its pixel by
    this much), ``joints_3d`` (21, 3) root-relative / bone (OpenCV camera frame), ``scale`` () bone in
    metres, ``joints_3d_mm`` (21, 3), ``global_orient`` (3,) camera frame, ``betas`` (10,),
    ``hand_pose_aa`` (45,), ``camera`` (3,) least-squares weak-perspective (log_scale, tx, ty) of the
    metric root-relative joints onto ``obs``, ``K`` (3, 3), ``crop_box`` (3,) = (x0, y0, side) px in
    the frame, optionally ``params`` (45,) and ``image``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "test",
        sequences: Sequence[str] | None = None,
        crop_size: int = 256,
        images: bool = False,
        image_size: int = 256,
        mano: Any = None,
    ) -> None:
        self.root = Path(root)
        splits = ("train", "test", "all", "evaluation")
        if split not in splits:
            raise ValueError(f"split must be one of {splits}, got {split!r}")
        folder, listing = ("evaluation", "evaluation.txt") if split == "evaluation" else ("train", "train.txt")
        if not (self.root / listing).is_file() or not (self.root / folder).is_dir():
            hint = ""
            for child in sorted(self.root.glob("*/" + listing)) if self.root.is_dir() else []:
                hint = f" (found {child}: pass root={child.parent})"
                break
            raise FileNotFoundError(
                f"{self.root} is not an HO3D v3 folder: expected {listing} and {folder}/SEQ/"
                f"{{rgb,depth,seg,meta}}/ID.* inside it{hint}. Download HO3D v3 and pass the folder "
                "that contains train.txt."
            )
        frames = _read_list(self.root / listing)
        if sequences is not None:
            wanted = set(sequences)
            frames = [f for f in frames if f[0] in wanted]
        elif split == "train":
            frames = [f for f in frames if f[0] not in EVAL_SEQUENCES]
        elif split == "test":
            frames = [f for f in frames if f[0] in EVAL_SEQUENCES]
        if not frames:
            available = sorted({s for s, _ in _read_list(self.root / listing)})
            raise DataFileError(
                f"no frames for split={split!r}, sequences={sequences!r} in {self.root / listing}; "
                f"sequences there: {available}"
            )
        self.frames = frames
        self.split, self.folder = split, folder
        for name, value in (("crop_size", crop_size), ("image_size", image_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer (pixels), got {value!r}")
        self.crop_size, self.images, self.image_size = int(crop_size), bool(images), int(image_size)
        self._pca = None if mano is None else _pca_basis(mano)

    def __len__(self) -> int:
        return len(self.frames)

    def path(self, index: int, kind: str) -> Path:
        """File of frame ``index``: kind is "rgb", "depth", "seg" or "meta"."""
        seq, fid = self.frames[index]
        base = self.root / self.folder / seq / kind
        if kind == "rgb":
            jpg = base / f"{fid}.jpg"
            return jpg if jpg.is_file() or not (base / f"{fid}.png").is_file() else base / f"{fid}.png"
        return base / f"{fid}.{'pkl' if kind == 'meta' else 'png'}"

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        seq, fid = self.frames[index]
        meta = read_meta(self.path(index, "meta"))
        joints = meta.get("handJoints3D")
        if joints is None or np.shape(joints) != (21, 3):
            raise DataFileError(
                f"frame {seq}/{fid} ({self.path(index, 'meta')}) has no 21-joint hand annotation (handJoints3D is "
                f"{None if joints is None else np.shape(joints)}); HO3D's evaluation split and a few "
                "training frames lack it. Use split='test' (held-out training sequences) or drop the frame."
            )
        meta_path = self.path(index, "meta")
        if meta.get("camMat") is None:
            raise DataFileError(f"frame {seq}/{fid}: {meta_path} has no camMat")
        K = _numbers(meta, "camMat", (3, 3), meta_path)
        if not (K[0, 0] > 0 and K[1, 1] > 0):
            raise DataFileError(f"HO3D meta file {meta_path}: key 'camMat' is {K.tolist()}; the focal lengths "
                                "camMat[0, 0] and camMat[1, 1] must be positive")
        joints = _numbers(meta, "handJoints3D", (21, 3), meta_path)
        if not (joints[:, 2] < 0).all():  # OpenGL camera: the hand lies at -z
            j = int(np.flatnonzero(~(joints[:, 2] < 0))[0])
            raise DataFileError(f"HO3D meta file {meta_path}: key 'handJoints3D' puts joint {j} at "
                                f"{joints[j].tolist()} m, not in front of the camera (HO3D's OpenGL camera "
                                "looks along -z, so every joint needs z < 0)")
        xyz = joints @ OPENGL_TO_OPENCV.T  # (21, 3) metres, camera frame
        uv, z = project(xyz, K)
        depth = read_depth(self.path(index, "depth"))
        H, W = depth.shape
        hand, obj = read_segmentation(self.path(index, "seg"), (W, H))
        rgb_path = _require(self.path(index, "rgb"), "rgb")
        visible = official_visibility(uv, z, hand, depth)
        x0, y0, side = crop_box(uv, obj, (W, H))
        px = (uv - np.array([x0, y0])) * (self.crop_size / side)
        visible &= inside_crop(px, self.crop_size)
        obs = px / self.crop_size * 2 - 1

        rel = xyz - xyz[_ROOT]
        scale = float(np.linalg.norm(xyz[_BONE[1]] - xyz[_BONE[0]]))
        if not scale > 0:
            raise DataFileError(f"HO3D meta file {meta_path}: key 'handJoints3D' puts joints {_BONE[0]} and "
                                f"{_BONE[1]} (middle MCP and PIP) at the same point, a zero-length bone: the "
                                "item cannot be normalised")
        pose = meta.get("handPose")
        pose = np.full(48, np.nan) if pose is None else _numbers(meta, "handPose", (48,), meta_path)
        betas = meta.get("handBeta")
        betas = np.full(10, np.nan) if betas is None else _numbers(meta, "handBeta", (10,), meta_path)
        # The global rotation acts in the OpenGL frame; in the camera frame it is F R (F = diag(1,-1,-1)).
        orient = Rotation.from_matrix(OPENGL_TO_OPENCV @ Rotation.from_rotvec(pose[:3]).as_matrix()).as_rotvec()
        item = {
            "obs": obs,
            "visible": visible,
            "keypoints_2d_px": px,
            # The focal length in crop pixels over the root's depth: a 1 mm shift at the hand in x.
            "px_per_mm": np.float64(K[0, 0] * (self.crop_size / side) / (xyz[_ROOT, 2] * 1000.0)),
            "joints_3d": rel / scale,
            "scale": np.float64(scale),
            "joints_3d_mm": rel * 1000.0,
            "global_orient": orient,
            "betas": betas,
            "hand_pose_aa": pose[3:],
            "camera": np.array(fit_orthographic_camera(rel, obs)),
            "K": K,
            "crop_box": np.array([x0, y0, side]),
        }
        if self._pca is not None:
            basis_pinv, mean = self._pca
            item["params"] = (pose[3:] - mean) @ basis_pinv
        out = {k: torch.as_tensor(np.asarray(v), dtype=torch.float32) for k, v in item.items() if k != "visible"}
        out["visible"] = torch.as_tensor(visible, dtype=torch.bool)
        if self.images:
            out["image"] = self._image(rgb_path, x0, y0, side)
        return out

    def _image(self, path: Path, x0: float, y0: float, side: float) -> torch.Tensor:
        n = self.image_size
        s = side / n
        # Crop pixel i (centre at i, OpenCV convention) samples frame point x0 + i * s; PIL's EXTENT
        # samples output centre i + 0.5 at X0 + (i + 0.5) s with frame pixel centres at k + 0.5.
        X0, Y0 = x0 + 0.5 - 0.5 * s, y0 + 0.5 - 0.5 * s
        with Image.open(path) as im:
            crop = im.convert("RGB").transform(
                (n, n), Image.Transform.EXTENT, (X0, Y0, X0 + side, Y0 + side), Image.Resampling.BILINEAR,
                fillcolor=(127, 127, 127),
            )
        return torch.from_numpy(np.asarray(crop, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def _numbers(meta: dict[str, Any], key: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    """``meta[key]`` as a float64 array of ``shape`` (a flat array of the same size is reshaped), all finite;
    otherwise a :class:`DataFileError` naming the file, the key and the value."""
    try:
        arr = np.asarray(meta[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise DataFileError(f"HO3D meta file {path}: key {key!r} holds {type(meta[key]).__name__} values, "
                            f"expected numbers of shape {shape}") from None
    if arr.shape != shape:
        if arr.size != int(np.prod(shape)):
            raise DataFileError(f"HO3D meta file {path}: key {key!r} has shape {arr.shape}, expected {shape}")
        arr = arr.reshape(shape)
    bad = ~np.isfinite(arr)
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataFileError(f"HO3D meta file {path}: key {key!r} at {pos if len(pos) > 1 else pos[0]} is "
                            f"{arr[pos]} ({int(bad.sum())} non-finite value(s) in all); expected finite numbers: "
                            "copy the file again from the HO3D v3 download, or leave the frame out")
    return arr


def _pca_basis(mano: Any) -> tuple[np.ndarray, np.ndarray]:
    """(pinv(basis) (45, C), mean (45,)) of a MANO model's PCA finger pose space."""
    for comp_name, mean_name in (("hand_components", "hand_mean"), ("hands_components", "hands_mean")):
        comps = getattr(mano, comp_name, None)
        mean = getattr(mano, mean_name, None)
        if comps is not None and mean is not None:
            comps = np.asarray(torch.as_tensor(comps).detach().cpu(), dtype=np.float64)
            mean = np.asarray(torch.as_tensor(mean).detach().cpu(), dtype=np.float64).reshape(-1)
            return np.linalg.pinv(comps), mean
    raise TypeError(
        f"mano must expose its PCA basis as hand_components / hand_mean (smplx.MANO with use_pca=True); "
        f"got {type(mano).__name__}"
    )
