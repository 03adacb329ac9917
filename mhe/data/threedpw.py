"""3DPW read from its raw sequence pickles, as body items (the keys of :mod:`mhe.data.prohmr`).

3DPW (von Marcard et al., ECCV 2018) stores one pickle per sequence, written by Python 2, under
``sequenceFiles/<split>/``: ``sequence`` (name), per person ``genders``, ``betas`` (10 or 300,),
``poses`` (F, 72) SMPL axis-angle, ``trans`` (F, 3), ``poses2d`` (F, 3, 18) OpenPose detections in the
COCO-18 order (x, y, confidence rows), ``jointPositions`` (F, 72) and ``campose_valid`` (F,), and for
the moving phone camera ``cam_poses`` (F, 4, 4) world -> camera and ``cam_intrinsics`` (3, 3). Images
(``imageFiles/<sequence>/image_%05d.jpg``) are not read: these items feed keypoint models.

One item per (sequence, person, frame) whose camera pose is valid. The 17 body keypoints are SMPL's
(:data:`mhe.body.SMPL_TO_BODY`) for the given pose, shape (first 10 betas) and translation, through the
body model of the person's gender, moved into the camera frame; their 2D positions are their pinhole
projections. The crop is the square around the projected keypoints, ``box_factor`` (1.2) times their
larger extent, centred on their box. A keypoint is visible when the OpenPose detection of its COCO-18
counterpart has positive confidence (the pelvis: both hips; the spine: pelvis and thorax; the head:
nose and thorax) and it lies inside the crop. ``px_per_mm`` is the focal length in crop pixels over the
pelvis depth in millimetres (NaN when the pelvis is not in front of the camera; keypoints behind it have
no 2D position and are not visible). Every number read is checked when a sequence is opened, and frames
with nothing detected are skipped and counted (:class:`ThreeDPW`). :func:`write_threedpw_sequence` writes
a license-free sequence pickle in the same format, for tests and notebooks.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch.utils.data import Dataset

from mhe.body.keypoints import BODY_KEYPOINTS, BODY_ROOT, SMPL_TO_BODY
from mhe.data.items import positive_int
from mhe.data.prohmr import body_item
from mhe.errors import DataFileError

__all__ = [
    "BODY_FROM_COCO18",
    "COCO18_KEYPOINTS",
    "SMPL_TO_COCO18",
    "SPLITS",
    "ThreeDPW",
    "read_sequence",
    "write_threedpw_sequence",
]

SPLITS = ("train", "validation", "test")
COCO18_KEYPOINTS: list[str] = [
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
]  # fmt: skip
# indices into smplx's 45 SMPL joints of the 18 COCO keypoints (neck = SMPL's neck joint)
SMPL_TO_COCO18: np.ndarray = np.array([24, 12, 17, 19, 21, 16, 18, 20, 2, 5, 8, 1, 4, 7, 25, 26, 27, 28])
# for each body keypoint its COCO-18 index (-1: none; thorax = neck)
BODY_FROM_COCO18: np.ndarray = np.array([-1, 8, 9, 10, 11, 12, 13, -1, 1, 0, -1, 5, 6, 7, 2, 3, 4])
# keypoints without a COCO counterpart count as detected when both of these are (resolved in this order)
_PROXIES = ((BODY_KEYPOINTS.index("pelvis"), (BODY_KEYPOINTS.index("right_hip"), BODY_KEYPOINTS.index("left_hip"))),
            (BODY_KEYPOINTS.index("spine"), (BODY_KEYPOINTS.index("pelvis"), BODY_KEYPOINTS.index("thorax"))),
            (BODY_KEYPOINTS.index("head"), (BODY_KEYPOINTS.index("nose"), BODY_KEYPOINTS.index("thorax"))))
_GENDERS = {"m": "male", "male": "male", "f": "female", "female": "female", "n": "neutral", "neutral": "neutral"}
_REQUIRED = ("sequence", "genders", "betas", "poses", "trans", "poses2d", "cam_poses", "cam_intrinsics",
             "campose_valid")


def _bad(path: Path, key: str, message: str) -> DataFileError:
    return DataFileError(f"3DPW sequence file {path}: key {key!r} {message}")


def read_sequence(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check one 3DPW sequence pickle (Python 2 pickles: latin1). Arrays become float64 numpy.

    A missing key, a person count that differs between keys, or a wrong shape is a
    :class:`mhe.errors.DataFileError` naming the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no 3DPW sequence file at {path}")
    try:
        with open(path, "rb") as f:
            seq = pickle.load(f, encoding="latin1")
    except Exception as err:  # pickle raises many types on damaged input
        raise DataFileError(f"3DPW sequence file {path} cannot be read ({type(err).__name__}: "
                            f"{str(err)[:120] or 'no details'}); it is truncated or damaged") from None
    if not isinstance(seq, dict):
        raise DataFileError(f"3DPW sequence file {path} holds a {type(seq).__name__}, not a dict")
    for key in _REQUIRED:
        if key not in seq:
            raise _bad(path, key, f"is missing (keys there: {sorted(seq)})")
    people = len(seq["poses"])
    out: dict[str, Any] = {"sequence": str(seq["sequence"]), "path": path}
    cam_poses = np.asarray(seq["cam_poses"], dtype=np.float64)
    if cam_poses.ndim != 3 or cam_poses.shape[1:] != (4, 4):
        raise _bad(path, "cam_poses", f"has shape {cam_poses.shape}, expected (F, 4, 4)")
    frames = cam_poses.shape[0]
    K = np.asarray(seq["cam_intrinsics"], dtype=np.float64)
    if K.shape != (3, 3):
        raise _bad(path, "cam_intrinsics", f"has shape {K.shape}, expected (3, 3)")
    out |= {"cam_poses": cam_poses, "cam_intrinsics": K, "frames": frames}
    per_person = {"poses": (frames, 72), "trans": (frames, 3), "poses2d": (frames, 3, 18),
                  "campose_valid": (frames,)}
    for key in ("genders", "betas", *per_person):
        if len(seq[key]) != people:
            raise _bad(path, key, f"lists {len(seq[key])} people, but 'poses' lists {people}")
    for key, shape in per_person.items():
        arrays = [np.asarray(a, dtype=np.float64) for a in seq[key]]
        for p, a in enumerate(arrays):
            if a.shape != shape:
                want = "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
                raise _bad(path, key, f"of person {p} has shape {a.shape}, expected {want} (F = {frames} "
                                      "frames of cam_poses)")
        out[key] = arrays
    betas = []
    for p, b in enumerate(seq["betas"]):
        b = np.asarray(b, dtype=np.float64).reshape(-1)
        if b.size < 10:
            raise _bad(path, "betas", f"of person {p} has {b.size} values, expected at least 10")
        betas.append(b[:10])
    out["betas"] = betas
    genders = []
    for p, g in enumerate(seq["genders"]):
        g = g.decode("latin1") if isinstance(g, bytes) else str(g)
        if g.lower() not in _GENDERS:
            raise _bad(path, "genders", f"of person {p} is {g!r}, expected 'm' or 'f'")
        genders.append(_GENDERS[g.lower()])
    out["genders"] = genders
    _check_values(path, out)
    out["campose_valid"] = [v > 0 for v in out["campose_valid"]]
    return out


def _check_values(path: Path, seq: dict[str, Any]) -> None:
    """Every number the items read is finite and in range; a failure names the file, the key, the person,
    the frame, the entry and the value (a :class:`DataFileError`)."""
    def text(value: Any) -> str:
        return str(np.asarray(value, dtype=np.float64).tolist())

    def first(key: str, a: np.ndarray, ok: np.ndarray, where: str, what: str, framed: bool) -> None:
        """Refuse the first entry of ``a`` where ``ok`` is false (``ok`` has ``a``'s shape; ``framed``: the
        first axis is the frame)."""
        if ok.all():
            return
        pos = tuple(int(i) for i in np.argwhere(~ok)[0])
        parts = [where] if where else []
        entry = pos[1:] if framed else pos
        if framed:
            parts.append(f"frame {pos[0]}")
        if entry:
            parts.append(f"entry {entry if len(entry) > 1 else entry[0]}")
        frames = int((~ok).reshape(len(ok), -1).any(-1).sum()) if framed else 0
        raise _bad(path, key, f"({', '.join(parts)}) is {text(a[pos])}; {what}"
                              + (f" ({frames} frame(s) in all)" if framed else ""))

    K = seq["cam_intrinsics"]
    first("cam_intrinsics", K, np.isfinite(K), "", "expected finite pinhole intrinsics", framed=False)
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise _bad(path, "cam_intrinsics", f"is {text(K)}; the focal lengths K[0, 0] and K[1, 1] must be positive")
    first("cam_poses", seq["cam_poses"], np.isfinite(seq["cam_poses"]), "", "expected finite numbers", framed=True)
    for p, b in enumerate(seq["betas"]):
        first("betas", b, np.isfinite(b), f"person {p}", "expected finite shape coefficients", framed=False)
    checks = {"poses": "expected finite SMPL axis-angle values", "trans": "expected finite metres",
              "campose_valid": "expected 0 or 1"}
    for key, what in checks.items():
        for p, a in enumerate(seq[key]):
            first(key, a, np.isfinite(a), f"person {p}", what, framed=True)
    for p, a in enumerate(seq["poses2d"]):
        conf = a[:, 2]
        bad = ~(np.isfinite(conf) & (conf >= 0))
        if bad.any():
            f, k = (int(i) for i in np.argwhere(bad)[0])
            raise _bad(path, "poses2d", f"(person {p}, frame {f}): the confidence of keypoint {k} "
                                        f"({COCO18_KEYPOINTS[k]}) is {text(conf[f, k])}; expected a finite number "
                                        ">= 0 (0: not detected)")


def _project(xyz: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole projection of camera points (..., 3) -> (..., 2) px; NaN for points not in front."""
    uvw = xyz @ K.T
    z = uvw[..., 2:]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(z > 0, uvw[..., :2] / np.where(z > 0, z, 1.0), np.nan)


class ThreeDPW(Dataset):
    """3DPW sequences as body items (keys: :data:`mhe.data.prohmr.BODY_ITEM_KEYS`), see the module docstring.

    Args:
        root: the 3DPW folder (holding ``sequenceFiles/``).
        split: "test" (default), "train" or "validation".
        sequences: only these sequence names (file stems) of the split.
        crop_size: pixel size of the crop ``keypoints_2d_px`` refers to (the model's 256).
        box_factor: crop side over the larger extent of the projected keypoints.
        smpl: a :class:`mhe.body.BodyModel` for everyone, or a dict gender -> model; None loads
            :func:`mhe.body.load_smpl` per gender ("male", "female") with ``model_dir`` and ``standin``
            (without real SMPL files that is the stand-in, with its warning: not 3DPW's true 3D).

    Each item also has a place in :attr:`index` (sequence, person, frame); :meth:`describe` names it.
    The sequence pickles are read once here; the SMPL joints of a person's frames are computed on the
    first access to any of them (one batched :meth:`mhe.body.BodyModel.keypoints` call) and kept.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "test",
        *,
        sequences: list[str] | tuple[str, ...] | None = None,
        crop_size: int = 256,
        box_factor: float = 1.2,
        smpl: Any = None,
        model_dir: str | os.PathLike | None = None,
        standin: bool | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root, self.split = Path(root), split
        folder = self.root / "sequenceFiles" / split
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"3DPW folder {self.root} " + ("is a file" if self.root.exists() else "does not exist")
                + ": give the 3DPW folder that holds sequenceFiles/{train,validation,test}/*.pkl (download 3DPW, "
                "or write one with mhe.data.threedpw.write_threedpw_sequence)")
        files = sorted(folder.glob("*.pkl")) if folder.is_dir() else []
        if not files:
            raise FileNotFoundError(
                f"no 3DPW sequence files at {folder}/*.pkl: pass the 3DPW folder that holds "
                f"sequenceFiles/{{train,validation,test}}/ (download 3DPW, or write one with "
                "mhe.data.threedpw.write_threedpw_sequence)")
        if sequences is not None:
            if isinstance(sequences, (str, bytes)):
                raise TypeError(f"sequences must be a list of sequence names, e.g. [{sequences!r}], not a single "
                                "string")
            if not len(sequences):
                raise ValueError(f"sequences is empty: name some of {[f.stem for f in files]}, or pass None for all")
            wanted = set(sequences)
            missing = wanted - {f.stem for f in files}
            if missing:
                raise ValueError(f"no sequence(s) {sorted(missing)} in {folder}; there: {[f.stem for f in files]}")
            files = [f for f in files if f.stem in wanted]
        self.crop_size = positive_int("crop_size", crop_size)
        if isinstance(box_factor, bool) or not isinstance(box_factor, (int, float, np.number)) or not (
                0 < box_factor < float("inf")):
            raise ValueError(f"box_factor must be a positive number (the crop's side over the keypoints' extent, "
                             f"1.2 by default), got {box_factor!r}")
        self.box_factor = float(box_factor)
        self._smpl, self._model_dir, self._standin = smpl, model_dir, standin
        self._models: dict[str, Any] = {}
        self.sequences = [read_sequence(f) for f in files]
        rows = []
        no_camera, undetected = [], 0
        has = BODY_FROM_COCO18 >= 0
        for s, seq in enumerate(self.sequences):
            if not any(v.any() for v in seq["campose_valid"]):
                no_camera.append(seq["sequence"])
            for p, valid in enumerate(seq["campose_valid"]):
                # a frame with no detected keypoint leaves a keypoint model nothing to read
                detected = (seq["poses2d"][p][:, 2][:, BODY_FROM_COCO18[has]] > 0).any(-1)
                undetected += int((valid & ~detected).sum())
                for f in np.flatnonzero(valid & detected):
                    rows.append((s, p, int(f)))
        self.index = np.array(rows, dtype=np.int64).reshape(-1, 3)
        self._cache: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        #: items (person, frame with a valid camera) left out because no keypoint of theirs is detected
        self.skipped_items = int(undetected)
        reasons = []
        if undetected:
            reasons.append(f"{undetected} of {undetected + len(rows)} (person, frame) items with a valid camera pose "
                           "have no detected keypoint (poses2d confidence 0 everywhere), so a keypoint model has "
                           "nothing to read: skipped")
        if no_camera:
            reasons.append(f"sequence(s) {', '.join(no_camera)} have campose_valid 0 in every frame: no item")
        #: why items were skipped, in words ("" when none)
        self.skipped_reason = "; ".join(reasons)
        if not rows:
            raise DataFileError(
                f"3DPW {split} split at {folder} has no usable item (an item is a person's frame with "
                "campose_valid 1 and some keypoint detected in poses2d): "
                + (self.skipped_reason or "its sequences list no person"))

    def __len__(self) -> int:
        return len(self.index)

    def describe(self, index: int) -> str:
        s, p, f = self.index[index]
        return f"{self.sequences[s]['sequence']} person {p} frame {f}"

    def model(self, gender: str) -> Any:
        """The body model used for ``gender`` ("male", "female" or "neutral")."""
        if isinstance(self._smpl, dict):
            if gender not in self._smpl:
                raise KeyError(f"smpl has no model for gender {gender!r} (it has {sorted(self._smpl)})")
            return self._smpl[gender]
        if self._smpl is not None:
            return self._smpl
        if gender not in self._models:
            from mhe.body import load_smpl

            self._models[gender] = load_smpl(self._model_dir, gender=gender, standin=self._standin,
                                             dtype=torch.float64)
        return self._models[gender]

    def _person(self, s: int, p: int) -> dict[str, np.ndarray]:
        """Camera-frame keypoints (F, 17, 3) and orientations (F, 3) of one person in one sequence."""
        key = (s, p)
        if key not in self._cache:
            seq = self.sequences[s]
            model = self.model(seq["genders"][p])
            dtype = model.kp_joint_rest.dtype
            poses, trans = seq["poses"][p], seq["trans"][p]
            frames = len(poses)
            t = lambda a: torch.as_tensor(np.array(a), dtype=dtype)  # noqa: E731
            with torch.no_grad():
                betas = t(np.broadcast_to(seq["betas"][p], (frames, 10)))
                world = model.keypoints(t(poses[:, :3]), t(poses[:, 3:]), betas, t(trans),
                                        joints=SMPL_TO_BODY).double().numpy()
            R, tc = seq["cam_poses"][:, :3, :3], seq["cam_poses"][:, :3, 3]
            cam = world @ R.transpose(0, 2, 1) + tc[:, None]
            orient = Rotation.from_matrix(R @ Rotation.from_rotvec(poses[:, :3]).as_matrix()).as_rotvec()
            self._cache[key] = {"xyz": cam, "orient": orient}
        return self._cache[key]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        s, p, f = (int(v) for v in self.index[index])
        seq = self.sequences[s]
        person = self._person(s, p)
        xyz = person["xyz"][f]
        K = seq["cam_intrinsics"]
        uv = _project(xyz, K)
        finite = np.isfinite(uv).all(-1)
        if not finite[BODY_ROOT]:
            warnings.warn(f"3DPW {self.describe(index)}: the pelvis is behind the camera", stacklevel=2)
        pts = uv[finite] if finite.any() else np.zeros((1, 2))
        lo, hi = pts.min(0), pts.max(0)
        side = max(self.box_factor * float((hi - lo).max()), 1.0)
        x0y0 = (lo + hi) / 2 - side / 2
        px = (uv - x0y0) * (self.crop_size / side)
        conf = seq["poses2d"][p][f][2]
        detected = np.zeros(len(BODY_KEYPOINTS), dtype=bool)
        has = BODY_FROM_COCO18 >= 0
        detected[has] = conf[BODY_FROM_COCO18[has]] > 0
        for k, (a, b) in _PROXIES:
            detected[k] = detected[a] and detected[b]
        pose = seq["poses"][p][f]
        # the scale at the person is unknown (NaN) when the pelvis is not in front of the camera
        depth = xyz[BODY_ROOT, 2]
        px_per_mm = K[0, 0] * (self.crop_size / side) / (depth * 1000.0) if depth > 0 else float("nan")
        return body_item(px, detected, xyz, params=pose[3:], global_orient=person["orient"][f],
                         betas=seq["betas"][p], px_per_mm=px_per_mm, crop_size=self.crop_size)


# --------------------------------------------------------------------------------------- the writer


def write_threedpw_sequence(
    root: str | os.PathLike,
    name: str,
    frames: int,
    *,
    people: int = 1,
    seed: int = 0,
    split: str = "test",
    smpl: Any = None,
    invalid_fraction: float = 0.2,
) -> Path:
    """Write a license-free 3DPW sequence pickle ``root/sequenceFiles/<split>/<name>.pkl`` (protocol 2).

    ``people`` SMPL bodies (genders alternate "m", "f"; stand-ins unless ``smpl`` gives a model or a
    dict gender -> model) walk slowly through ``frames`` frames in a world with y up, seen by a phone
    camera that pans a little (``cam_poses`` world -> camera, OpenCV axes, 1080 x 1920 portrait
    intrinsics). ``betas`` have 10 values for even-numbered people and 300 for odd ones (both occur in
    3DPW); ``poses2d`` are the projected COCO-18 keypoints with random confidences, about 15 % of them 0;
    about ``invalid_fraction`` of each person's frames have ``campose_valid`` 0. Returns the path.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    for arg, value in (("frames", frames), ("people", people)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{arg} must be a positive integer, got {value!r}")
    from mhe.body import load_smpl

    rng = np.random.default_rng(seed)
    K = np.array([[1960.0, 0.0, 540.0], [0.0, 1960.0, 960.0], [0.0, 0.0, 1.0]])
    time = np.arange(frames)
    pan = 0.2 * np.sin(time / 40.0 + rng.uniform(0, 6.3))
    R = (Rotation.from_euler("x", np.pi) * Rotation.from_rotvec(np.outer(pan, [0.0, 1.0, 0.0]))).as_matrix()
    cam_t = np.stack([0.1 * np.sin(time / 30.0), np.full(frames, 0.3), np.full(frames, 5.0)], 1)
    cam_poses = np.tile(np.eye(4), (frames, 1, 1))
    cam_poses[:, :3, :3], cam_poses[:, :3, 3] = R, cam_t
    seq: dict[str, Any] = {"sequence": name, "genders": [], "betas": [], "poses": [], "trans": [], "poses2d": [],
                           "jointPositions": [], "cam_poses": cam_poses, "cam_intrinsics": K,
                           "campose_valid": []}
    for p in range(people):
        gender = "m" if p % 2 == 0 else "f"
        model = smpl.get(_GENDERS[gender]) if isinstance(smpl, dict) else smpl
        if model is None:
            model = load_smpl(gender=_GENDERS[gender], standin=True, dtype=torch.float64)
        betas = rng.normal(0.0, 1.0, 10 if p % 2 == 0 else 300)
        if p % 2:
            betas[10:] *= 0.1
        base = rng.normal(0.0, 0.25, 69)
        swing = rng.normal(0.0, 0.2, 69)
        body = base + np.sin(time / 15.0 + rng.uniform(0, 6.3))[:, None] * swing
        yaw = rng.uniform(-np.pi, np.pi) + 0.01 * time
        orient = Rotation.from_rotvec(np.outer(yaw, [0.0, 1.0, 0.0])).as_rotvec()
        poses = np.concatenate([orient, body], 1)
        trans = np.stack([rng.uniform(-0.8, 0.8) + 0.005 * time, np.full(frames, rng.uniform(0.8, 1.0)),
                          np.full(frames, rng.uniform(-1.5, 1.5))], 1)
        dtype = model.kp_joint_rest.dtype
        orient_t, body_t, betas_t, trans_t = (torch.as_tensor(np.array(x), dtype=dtype)
                                              for x in (orient, body, np.broadcast_to(betas[:10], (frames, 10)), trans))
        with torch.no_grad():
            joints = model.keypoints(orient_t, body_t, betas_t, trans_t).double().numpy()
        cam = joints @ R.transpose(0, 2, 1) + cam_t[:, None]
        uv = _project(cam[:, SMPL_TO_COCO18], K)
        conf = rng.uniform(0.2, 1.0, (frames, 18)) * (rng.random((frames, 18)) > 0.15)
        seq["genders"].append(gender)
        seq["betas"].append(betas)
        seq["poses"].append(poses)
        seq["trans"].append(trans)
        seq["poses2d"].append(np.concatenate([uv, conf[..., None]], -1).transpose(0, 2, 1))
        seq["jointPositions"].append(joints[:, :24].reshape(frames, 72))
        seq["campose_valid"].append((rng.random(frames) >= invalid_fraction).astype(np.int64))
    path = Path(root) / "sequenceFiles" / split / f"{name}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(seq, f, protocol=2)
    return path
