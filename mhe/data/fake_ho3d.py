"""A tiny folder in the HO3D v3 layout with known answers, for tests, benchmarks and the docs.

:func:`write_fake_ho3d` writes rgb / depth / segmentation / meta files exactly as :mod:`mhe.data.ho3d`
reads them (``docs/formats.md``), with joints planted visible, hidden behind an object and hidden by the
hand itself, and returns the planted ground truth, so the real loader is what the tests exercise.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mhe.data.ho3d import _BONE, _ROOT, OPENGL_TO_OPENCV, encode_depth

__all__ = ["write_fake_ho3d"]


def _planted_hand(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """21 keypoints (package order) in pixels: five fingers fanning up from a wrist near the bottom."""
    W, H = size
    wrist = np.array([W / 2, H * 0.9]) + rng.uniform(-8, 8, 2)
    unit = H / 240
    # finger -> (angle from vertical in degrees, base distance, joint indices base..tip)
    fingers = {
        "index": (-24, 62, [1, 2, 3, 17]),
        "middle": (0, 64, [4, 5, 6, 18]),
        "pinky": (46, 52, [7, 8, 9, 20]),
        "ring": (23, 60, [10, 11, 12, 19]),
        "thumb": (-62, 34, [13, 14, 15, 16]),
    }
    uv = np.zeros((21, 2))
    uv[0] = wrist
    for angle, base, idx in fingers.values():
        a = np.deg2rad(angle)
        direction = np.array([np.sin(a), -np.cos(a)])
        for k, j in enumerate(idx):
            uv[j] = wrist + direction * (base + 22 * k) * unit
    return uv


def _disk(mask_shape: tuple[int, int], centre: np.ndarray, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: mask_shape[0], : mask_shape[1]]
    return (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2


def write_fake_ho3d(
    root: str | os.PathLike,
    frames_per_sequence: int = 2,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """Write a tiny HO3D v3 folder at ``root`` with joints planted visible and occluded.

    Sequences "ABF10" (train) and "MC5" (held out, the default test split) in ``train.txt``, and one
    evaluation frame "SM1/0000" whose meta has only the root joint. Each frame: rgb jpg of ``size``
    (W, H), depth PNG in HO3D's encoding, segmentation PNG at half size, a latin1-readable meta
    pickle. Per frame, five joints are hidden behind an object (no hand pixels, object 10 cm nearer),
    two are hand-coloured but 6 cm behind the depth map (self-occlusion), two are hand 2 cm behind the
    depth map (still visible, within the 4 cm tolerance); the rest, root included, are plainly visible.

    Returns ``{"SEQ/ID": {"uv" (21, 2) px, "visible" (21,) bool, "xyz_gl" (21, 3) m, "K" (3, 3),
    "kind" (21,) str}}`` -- the planted ground truth.
    """
    if isinstance(frames_per_sequence, bool) or not isinstance(frames_per_sequence, (int, np.integer)) \
            or frames_per_sequence < 1:
        raise ValueError(f"frames_per_sequence must be a positive integer, got {frames_per_sequence!r}")
    if len(size) != 2 or min(size) < 64:
        raise ValueError(f"size must be (W, H) of at least 64 px each (room for the planted hand), got {size!r}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    W, H = size
    K = np.array([[300.0 * W / 320, 0, W / 2], [0, 300.0 * H / 240, H / 2], [0, 0, 1]])
    truth: dict[str, dict[str, np.ndarray]] = {}
    listing = []
    candidates = [j for j in range(21) if j != _ROOT and j not in _BONE]
    for seq in ("ABF10", "MC5"):
        for f in range(frames_per_sequence):
            fid = f"{f:04d}"
            uv = _planted_hand(rng, size)
            z = 0.5 + rng.uniform(-0.02, 0.02, 21)
            pick = rng.permutation(candidates)
            kind = np.array(["visible"] * 21, dtype=object)
            kind[pick[:5]], kind[pick[5:7]], kind[pick[7:9]] = "object", "self", "near"
            _write_frame(root / "train" / seq, fid, uv, z, kind, K, size, rng)
            xyz_cv = np.concatenate([(uv - K[:2, 2]) * z[:, None] / np.diag(K)[:2], z[:, None]], axis=1)
            xyz_gl = xyz_cv @ OPENGL_TO_OPENCV.T
            pose = np.concatenate([rng.normal(0, 0.3, 3), rng.normal(0, 0.2, 45)])
            meta = {
                "handJoints3D": xyz_gl.astype(np.float32), "camMat": K.astype(np.float32),
                "handPose": pose.astype(np.float32), "handBeta": rng.normal(0, 0.5, 10).astype(np.float32),
                "handTrans": xyz_gl[0].astype(np.float32), "objName": "fake_box",
                "objRot": np.zeros((3, 1), np.float32), "objTrans": np.zeros(3, np.float32),
                "objLabel": 0,
            }
            _write_meta(root / "train" / seq / "meta" / f"{fid}.pkl", meta)
            listing.append(f"{seq}/{fid}")
            visible = np.isin(kind, ["visible", "near"])
            truth[f"{seq}/{fid}"] = {"uv": uv, "visible": visible, "xyz_gl": xyz_gl, "K": K, "kind": kind}
    (root / "train.txt").write_text("\n".join(listing) + "\n")
    # One evaluation frame: the released meta has only the root joint and a hand box.
    uv = _planted_hand(rng, size)
    z = np.full(21, 0.5)
    _write_frame(root / "evaluation" / "SM1", "0000", uv, z, np.array(["visible"] * 21, dtype=object), K, size, rng)
    root_gl = np.array([0.0, 0.0, -0.5], np.float32)
    _write_meta(root / "evaluation" / "SM1" / "meta" / "0000.pkl",
                {"handJoints3D": root_gl, "camMat": K.astype(np.float32),
                 "handBoundingBox": np.array([100, 60, 220, 230], np.float32), "objName": "fake_box"})
    (root / "evaluation.txt").write_text("SM1/0000\n")
    return truth


def _write_frame(
    seq_dir: Path, fid: str, uv: np.ndarray, z: np.ndarray, kind: np.ndarray, K: np.ndarray,
    size: tuple[int, int], rng: np.random.Generator,
) -> None:
    W, H = size
    rgb = np.full((H, W, 3), 90, np.uint8)
    rgb += rng.integers(0, 20, (H, W, 1), dtype=np.uint8)  # a little texture
    depth = np.zeros((H, W))  # 0 = no depth, as the sensor reports
    seg = np.zeros((H // 2, W // 2, 3), np.uint8)
    # Depth discs are wider than the 9x9 window; hand discs narrower; object discs cover the window.
    for j in range(21):
        if kind[j] == "object":
            continue
        offset = {"visible": 0.0, "near": 0.02, "self": 0.06}[kind[j]]
        depth[_disk((H, W), uv[j], 7)] = z[j] - offset
        rgb[_disk((H, W), uv[j], 4)] = (224, 172, 140)
        seg[_disk(seg.shape[:2], uv[j] / 2, 2)] = (0, 0, 255)
    for j in np.flatnonzero(kind == "object").tolist():
        depth[_disk((H, W), uv[j], 8)] = z[j] - 0.10
        rgb[_disk((H, W), uv[j], 8)] = (40, 160, 60)
        seg[_disk(seg.shape[:2], uv[j] / 2, 4)] = (0, 255, 0)
    for kind_dir in ("rgb", "depth", "seg", "meta"):
        (seq_dir / kind_dir).mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(seq_dir / "rgb" / f"{fid}.jpg", quality=95)
    Image.fromarray(encode_depth(depth)).save(seq_dir / "depth" / f"{fid}.png")
    Image.fromarray(seg).save(seq_dir / "seg" / f"{fid}.png")


def _write_meta(path: Path, meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(meta, f, protocol=2)  # the protocol Python 2 wrote HO3D's pickles with
