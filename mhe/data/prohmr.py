"""Body keypoints from ProHMR's dataset files (``.npz``), in the package's body item format.

ProHMR (Kolotouros et al., ICCV 2021) ships each dataset as one ``.npz`` of per-person arrays:
``imgname (N,)``, the person box as ``center (N, 2)`` px and ``scale (N,)`` = side / 200 px, SMPL
``body_pose (N, 72)`` (global orientation first) with ``has_body_pose (N,)``, ``betas (N, 10)`` with
``has_betas (N,)``, 2D keypoints ``body_keypoints_2d (N, 25, 3)`` (OpenPose BODY_25 order, x, y,
confidence) and ``extra_keypoints_2d (N, 19, 3)`` (the ground-truth keypoints,
:data:`mhe.body.keypoints.PROHMR_EXTRA_KEYPOINTS`), and the same in 3D, ``body_keypoints_3d (N, 25, 4)``
/ ``extra_keypoints_3d (N, 19, 4)`` (x, y, z metres, confidence). :class:`ProHMRBodies` reads such a
file into items for the 17 body keypoints (:data:`mhe.body.BODY_KEYPOINTS`); :func:`write_prohmr_npz`
writes a license-free file in the same format from posed SMPL bodies seen by a perspective camera.

The item dictionary, shared with :mod:`mhe.data.threedpw` (see :func:`body_item`)::

    obs (17, 2)            crop coordinates in [-1, 1] (pixel = (obs + 1) * crop_size / 2)
    visible (17,) bool     the keypoint's 2D position is known and inside the crop
    keypoints_2d_px (17, 2) crop pixels
    joints_3d (17, 3)      root-relative (pelvis), divided by the pelvis -> thorax distance
    scale ()               that distance in metres
    joints_3d_mm (17, 3)   root-relative, millimetres
    params (69,)           SMPL body pose, axis-angle
    global_orient (3,)     SMPL global orientation, axis-angle
    betas (10,)            SMPL shape
    px_per_mm ()           crop pixels per millimetre at the person's depth
    has_3d () bool, has_smpl () bool, ambiguous () bool

Unknown values are NaN, never a made-up number, and the flags say which are known: the 2D position of
a keypoint no source has (``visible`` is then false; the encoders never read such coordinates), 3D
joints when ``has_3d`` is false (and single keypoints without a 3D point), SMPL parameters when
``has_smpl`` is false, and ``px_per_mm`` always for ProHMR files: they hold no camera intrinsics, so the
focal length and hence the pixels per millimetre at the person cannot be recovered.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch.utils.data import Dataset

from mhe.body.keypoints import (
    BODY_BONE,
    BODY_FROM_OPENPOSE,
    BODY_FROM_PROHMR_EXTRA,
    BODY_KEYPOINTS,
    BODY_ROOT,
    PROHMR_EXTRA_KEYPOINTS,
    SMPL_JOINT_NAMES,
    SMPL_TO_BODY,
    SMPL_TO_OPENPOSE,
)
from mhe.data.items import positive_int
from mhe.data.synthetic_bodies import AMBIGUOUS_MIN_HIDDEN
from mhe.errors import DataFileError

__all__ = [
    "AMBIGUOUS_MIN_HIDDEN",
    "BODY_ITEM_KEYS",
    "ProHMRBodies",
    "body_item",
    "write_prohmr_npz",
]

BODY_ITEM_KEYS: tuple[str, ...] = (
    "obs", "visible", "keypoints_2d_px", "joints_3d", "scale", "joints_3d_mm", "params", "global_orient",
    "betas", "px_per_mm", "has_3d", "has_smpl", "ambiguous",
)  # fmt: skip
_BOOL_KEYS = ("visible", "has_3d", "has_smpl", "ambiguous")
_K = len(BODY_KEYPOINTS)


def body_item(
    px: np.ndarray,
    visible: np.ndarray,
    xyz: np.ndarray | None,
    *,
    params: np.ndarray | None,
    global_orient: np.ndarray | None,
    betas: np.ndarray | None,
    px_per_mm: float,
    crop_size: int = 256,
) -> dict[str, torch.Tensor]:
    """One body item from its parts (NaN marks unknown values; see the module docstring).

    ``px (17, 2)`` crop pixels (NaN where unknown), ``visible (17,)`` bool (the caller's own test; it is
    narrowed to known positions inside the crop), ``xyz (17, 3)`` metres in any frame (NaN rows where a
    keypoint has no 3D point) or None, SMPL ``params (69,)`` / ``global_orient (3,)`` / ``betas (10,)`` or
    None when unknown, ``px_per_mm`` (NaN when unknown).
    """
    px = np.asarray(px, dtype=np.float64).reshape(_K, 2)
    known = np.isfinite(px).all(-1)
    inside = known & ((px >= 0) & (px <= crop_size)).all(-1)
    visible = np.asarray(visible, dtype=bool).reshape(_K) & inside
    non_root = np.arange(_K) != BODY_ROOT
    ambiguous = bool((known & ~inside).any() or (~visible[non_root]).sum() >= AMBIGUOUS_MIN_HIDDEN)
    nan3 = np.full((_K, 3), np.nan)
    has_3d = xyz is not None and bool(np.isfinite(np.asarray(xyz)[[BODY_ROOT, BODY_BONE[1]]]).all())
    if has_3d:
        xyz = np.asarray(xyz, dtype=np.float64).reshape(_K, 3)
        rel = xyz - xyz[BODY_ROOT]
        scale = float(np.linalg.norm(xyz[BODY_BONE[1]] - xyz[BODY_BONE[0]]))
        if not scale > 0:
            has_3d = False
    if not has_3d:
        rel, scale = nan3, float("nan")
    has_smpl = params is not None and global_orient is not None and betas is not None
    item = {
        "obs": px * (2.0 / crop_size) - 1.0,
        "visible": visible,
        "keypoints_2d_px": px,
        "joints_3d": rel / scale,
        "scale": np.float64(scale),
        "joints_3d_mm": rel * 1000.0,
        "params": np.full(69, np.nan) if params is None else np.asarray(params, dtype=np.float64).reshape(69),
        "global_orient": (np.full(3, np.nan) if global_orient is None
                          else np.asarray(global_orient, dtype=np.float64).reshape(3)),
        "betas": np.full(10, np.nan) if betas is None else np.asarray(betas, dtype=np.float64).reshape(10),
        "px_per_mm": np.float64(px_per_mm),
        "has_3d": np.bool_(has_3d),
        "has_smpl": np.bool_(has_smpl),
        "ambiguous": np.bool_(ambiguous),
    }
    return {k: torch.as_tensor(np.asarray(v), dtype=torch.bool if k in _BOOL_KEYS else torch.float32)
            for k, v in item.items()}


# --------------------------------------------------------------------------------------- the reader

# key -> (shape after N, required); -1 in a shape matches any size
_PROHMR_KEYS: dict[str, tuple[tuple[int, ...], bool]] = {
    "imgname": ((), True),
    "center": ((2,), True),
    "scale": ((), True),
    "body_keypoints_2d": ((25, 3), True),
    "extra_keypoints_2d": ((19, 3), False),
    "body_keypoints_3d": ((25, 4), False),
    "extra_keypoints_3d": ((19, 4), False),
    "body_pose": ((72,), False),
    "has_body_pose": ((), False),
    "betas": ((10,), False),
    "has_betas": ((), False),
    "gender": ((), False),
}


def _shape_text(n: Any, shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in (n, *shape)) + ("," if not shape else "") + ")"


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """All known keys of a ProHMR npz, checked: a missing required key or a wrong shape is an error."""
    if path.is_dir():
        raise IsADirectoryError(f"ProHMR dataset file {path} is a folder; give the .npz file (a folder of "
                                "them goes to data.root, holding train.npz, val.npz and/or test.npz)")
    if not path.is_file():
        raise FileNotFoundError(f"no ProHMR dataset file at {path}")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as err:  # zipfile / numpy raise many types on damaged input
        raise DataFileError(f"ProHMR dataset file {path} cannot be read as .npz: {_load_failure(path, err)}; "
                            "it is damaged or not a ProHMR dataset file (a zip of .npy arrays, see "
                            "docs/formats.md)") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):  # np.load also reads a single .npy array
        raise DataFileError(f"ProHMR dataset file {path} is a single .npy array, not an .npz of named arrays "
                            "(imgname, center, scale, body_keypoints_2d, ...; see docs/formats.md)")
    out: dict[str, np.ndarray] = {}
    with npz:
        for key, (_, required) in _PROHMR_KEYS.items():
            if key not in npz.files:
                if required:
                    raise DataFileError(
                        f"ProHMR dataset file {path} has no key {key!r} (expected shape "
                        f"{_shape_text('N', _PROHMR_KEYS[key][0])}); keys there: {sorted(npz.files)}")
                continue
            try:
                out[key] = npz[key]
            except ValueError:  # an object array (e.g. names pickled by an older numpy)
                if key != "imgname":  # only the names are pickled in ProHMR's files; numbers never are
                    raise DataFileError(f"ProHMR dataset file {path}: key {key!r} holds Python objects, not "
                                        "numbers") from None
                with np.load(path, allow_pickle=True) as again:
                    out[key] = again[key]
            except Exception as err:  # a damaged member of the zip
                raise DataFileError(f"ProHMR dataset file {path}: key {key!r} cannot be read "
                                    f"({_load_failure(path, err)}); the file is damaged") from None
            if key != "imgname" and key != "gender" and not np.issubdtype(out[key].dtype, np.number) \
                    and out[key].dtype != bool:
                raise DataFileError(f"ProHMR dataset file {path}: key {key!r} holds {out[key].dtype} values, "
                                    "expected numbers")
    n = len(out["imgname"]) if np.ndim(out["imgname"]) == 1 else None
    for key, arr in out.items():
        shape = _PROHMR_KEYS[key][0]
        if n is None or arr.shape != (n, *shape):
            raise DataFileError(
                f"ProHMR dataset file {path}: key {key!r} has shape {arr.shape}, expected "
                f"{_shape_text(n if n is not None else 'N', shape)} (N = len(imgname)"
                f"{f' = {n}' if n is not None else ''})")
    return out


def _load_failure(path: Path, err: Exception) -> str:
    """What went wrong reading ``path``, in words (numpy's own text advises ``allow_pickle``, which would
    run code from the file: never the fix for a dataset file)."""
    text = str(err)
    if "allow_pickle" in text or "pickle" in text.lower():
        return "it is not a numpy .npz/.npy file (numpy could only try to unpickle it)"
    return f"{type(err).__name__}: {text[:160] or 'no details'}"


def _pick(primary: np.ndarray | None, primary_map: np.ndarray, secondary: np.ndarray | None,
          secondary_map: np.ndarray, width: int) -> np.ndarray:
    """Per body keypoint, the coordinates from ``primary`` where its confidence > 0, else from ``secondary``
    where its confidence > 0, else NaN: arrays (..., M, width + 1) with confidence last -> (..., 17, width)."""
    lead = next(a.shape[:-2] for a in (primary, secondary) if a is not None) if (
        primary is not None or secondary is not None) else ()
    out = np.full((*lead, _K, width), np.nan)
    for src, index in ((secondary, secondary_map), (primary, primary_map)):  # primary wins: written last
        if src is None:
            continue
        ok = np.flatnonzero(index >= 0)
        rows = src[..., index[ok], :]
        good = rows[..., width] > 0
        out[..., ok, :] = np.where(good[..., None], rows[..., :width], out[..., ok, :])
    return out


def _first_bad(path: Path, key: str, bad: np.ndarray, values: np.ndarray, names: list[str], what: str,
               part: str = "keypoint") -> None:
    """Raise for the first item where ``bad (N, ...)`` is true, naming the file, key, item and value."""
    if not bad.any():
        return
    where = np.argwhere(bad)[0]
    item = int(where[0])
    value = values[tuple(where[: values.ndim])] if values.ndim else values
    at = f"item {item} ({names[item]})" + (f", {part} {int(where[1])}" if bad.ndim > 1 else "")
    shown = np.asarray(value, dtype=np.float64).tolist()
    count = int(bad.reshape(len(bad), -1).any(-1).sum())
    raise DataFileError(f"ProHMR dataset file {path}: key {key!r} of {at} is {shown}; {what} ({count} item(s) in "
                        "all). Fix or drop those items")


class ProHMRBodies(Dataset):
    """A ProHMR dataset file (``.npz``) as body items (keys: :data:`BODY_ITEM_KEYS`).

    Args:
        path: the ``.npz`` file (e.g. ProHMR's ``h36m_val_p2.npz`` or one from :func:`write_prohmr_npz`).
        crop_size: pixel size of the crop ``keypoints_2d_px`` refers to (the model's 256).

    The crop is the square of side ``200 * scale`` px centred on ``center``, mapped onto
    ``[0, crop_size]`` (and ``obs`` onto ``[-1, 1]``). Each body keypoint's 2D position comes from the
    ground-truth ``extra_keypoints_2d`` where its confidence is positive, else from OpenPose's
    ``body_keypoints_2d`` where that is positive (maps :data:`~mhe.body.keypoints.BODY_FROM_PROHMR_EXTRA`,
    :data:`~mhe.body.keypoints.BODY_FROM_OPENPOSE`), else it is unknown (NaN, not visible); visible = known
    and inside the crop. The 3D keypoints come likewise from ``extra_keypoints_3d`` / ``body_keypoints_3d``;
    ``has_3d`` is false when the pelvis or the thorax has no 3D point. ``has_smpl`` = ``has_body_pose``
    and ``has_betas``. ``px_per_mm`` is NaN (no intrinsics in these files). Required keys: ``imgname``,
    ``center``, ``scale``, ``body_keypoints_2d``; the others are optional, as in ProHMR's own loader, and
    a missing one means "unknown".

    **Checks.** Every number the items are made of is checked when the file is opened: ``center`` finite,
    ``scale`` finite and positive, each keypoint's confidence finite and not negative and its coordinates
    finite where the confidence is positive, ``body_pose`` / ``betas`` finite where ``has_body_pose`` /
    ``has_betas`` say they exist, the flags finite. A value that fails is a
    :class:`~mhe.errors.DataFileError` naming the file, the key, the item (and its image) and the value.
    Values marked missing (confidence 0, a flag 0) may be anything, NaN included: they are never read.

    **Skipped items.** An item none of whose 17 keypoints is visible gives a keypoint model nothing to
    read; it is left out, and counted: :attr:`skipped_items` (int), :attr:`skipped_reason` (text, empty
    when none). A file with no usable item left, or none at all, is a :class:`~mhe.errors.DataFileError`.
    :attr:`imgname` (image names) and :attr:`file_index` (the row in the file) are those of the items kept;
    :attr:`items_with_3d` and :attr:`items_with_smpl` count those with 3D keypoints and with SMPL parameters.
    """

    def __init__(self, path: str | os.PathLike, crop_size: int = 256) -> None:
        self.path = Path(path)
        self.crop_size = positive_int("crop_size", crop_size)
        data = _read_npz(self.path)
        names = [str(s) for s in data["imgname"]]
        n = len(names)
        if n == 0:
            raise DataFileError(f"ProHMR dataset file {self.path} holds no items (its arrays have length 0); "
                                "give a file with at least one person")
        f64 = {k: v.astype(np.float64) for k, v in data.items() if k not in ("imgname", "gender")}
        self._check(f64, names)
        self._center, self._scale = f64["center"], f64["scale"]
        self._kp2d = (f64.get("extra_keypoints_2d"), f64.get("body_keypoints_2d"))
        self._kp3d = (f64.get("extra_keypoints_3d"), f64.get("body_keypoints_3d"))
        zeros = np.zeros(n)
        self._pose = f64.get("body_pose")
        self._has_pose: np.ndarray = f64.get("has_body_pose", zeros) > 0
        self._betas = f64.get("betas")
        self._has_betas: np.ndarray = f64.get("has_betas", zeros) > 0
        if self._pose is None:
            self._has_pose = zeros > 0
        if self._betas is None:
            self._has_betas = zeros > 0
        # 2D keypoints of every item at once: which items have anything visible
        uv = _pick(self._kp2d[0], BODY_FROM_PROHMR_EXTRA, self._kp2d[1], BODY_FROM_OPENPOSE, 2)
        side = 200.0 * self._scale
        x0y0 = self._center - side[:, None] / 2
        px = (uv - x0y0[:, None]) * (self.crop_size / side)[:, None, None]
        visible = np.isfinite(px).all(-1) & ((px >= 0) & (px <= self.crop_size)).all(-1)
        usable = visible.any(-1)
        self.file_index = np.flatnonzero(usable)
        self.skipped_items = int(n - len(self.file_index))
        self.skipped_reason = (
            f"{self.skipped_items} of {n} items in {self.path.name} have no visible keypoint (no 2D keypoint "
            "with positive confidence inside the crop), so a keypoint model has nothing to read: skipped"
            if self.skipped_items else "")
        if not len(self.file_index):
            raise DataFileError(f"ProHMR dataset file {self.path}: none of its {n} items has a visible keypoint "
                                "(a 2D keypoint with positive confidence inside the crop of side 200 * scale "
                                "around center), so nothing is left to use; check the confidences in "
                                "body_keypoints_2d / extra_keypoints_2d and center / scale")
        self.imgname = [names[i] for i in self.file_index]
        # how many of the items kept carry each kind of label (what the label-using objectives can learn from)
        keep = self.file_index
        if self._kp3d[0] is not None or self._kp3d[1] is not None:
            extra3d, op3d = (None if a is None else a[keep] for a in self._kp3d)
            xyz = _pick(extra3d, BODY_FROM_PROHMR_EXTRA, op3d, BODY_FROM_OPENPOSE, 3)
            ends = xyz[:, [BODY_BONE[0], BODY_BONE[1]]]
            with np.errstate(invalid="ignore"):
                has_3d = np.isfinite(ends).all((1, 2)) & (np.linalg.norm(ends[:, 1] - ends[:, 0], axis=-1) > 0)
        else:
            has_3d = np.zeros(len(keep), dtype=bool)
        #: items (of those kept) with 3D keypoints (``has_3d``) and with SMPL parameters (``has_smpl``)
        self.items_with_3d = int(has_3d.sum())
        self.items_with_smpl = int((self._has_pose[keep] & self._has_betas[keep]).sum())

    def _check(self, f64: dict[str, np.ndarray], names: list[str]) -> None:
        """Every number the items read is finite and in range (see the class docstring)."""
        path = self.path
        center, scale = f64["center"], f64["scale"]
        _first_bad(path, "center", ~np.isfinite(center).all(-1), center, names, "expected finite pixel coordinates")
        _first_bad(path, "scale", ~(np.isfinite(scale) & (scale > 0)), scale, names,
                   "expected a finite positive number (the person box's side / 200 px)")
        for key in ("has_body_pose", "has_betas"):
            if key in f64:
                _first_bad(path, key, ~np.isfinite(f64[key]), f64[key], names, "expected 0 or 1")
        for key in ("body_keypoints_2d", "extra_keypoints_2d", "body_keypoints_3d", "extra_keypoints_3d"):
            if key not in f64:
                continue
            kp = f64[key]
            conf = kp[..., -1]
            _first_bad(path, key, ~(np.isfinite(conf) & (conf >= 0)), kp, names,
                       "its confidence (last column) must be finite and not negative (0: missing)")
            _first_bad(path, key, (conf > 0) & ~np.isfinite(kp[..., :-1]).all(-1), kp, names,
                       "a keypoint with positive confidence needs finite coordinates (confidence 0 marks a "
                       "missing one)")
        for key, flag in (("body_pose", "has_body_pose"), ("betas", "has_betas")):
            if key in f64:
                has = (f64[flag] > 0) if flag in f64 else np.zeros(len(names), dtype=bool)
                _first_bad(path, key, has[:, None] & ~np.isfinite(f64[key]), f64[key], names,
                           f"expected finite values where {flag} is 1 (set {flag} to 0 for an item without them)",
                           part="value")

    def __len__(self) -> int:
        return len(self.file_index)

    def crop_box(self, index: int) -> tuple[float, float, float]:
        """(x0, y0, side) in image pixels of item ``index``'s crop."""
        row = self.file_index[index]
        side = 200.0 * float(self._scale[row])
        cx, cy = self._center[row]
        return float(cx - side / 2), float(cy - side / 2), side

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items in {self.path}")
        index = index % len(self)
        row = self.file_index[index]
        extra2d, op2d = (None if a is None else a[row] for a in self._kp2d)
        uv = _pick(extra2d, BODY_FROM_PROHMR_EXTRA, op2d, BODY_FROM_OPENPOSE, 2)
        x0, y0, side = self.crop_box(index)
        px = (uv - np.array([x0, y0])) * (self.crop_size / side)
        extra3d, op3d = (None if a is None else a[row] for a in self._kp3d)
        xyz = None
        if extra3d is not None or op3d is not None:
            xyz = _pick(extra3d, BODY_FROM_PROHMR_EXTRA, op3d, BODY_FROM_OPENPOSE, 3)
        # has_pose (has_betas) is all false when the file has no body_pose (betas)
        has_smpl = bool(self._has_pose[row] and self._has_betas[row])
        pose = self._pose[row] if has_smpl and self._pose is not None else None
        return body_item(
            px, np.isfinite(px).all(-1), xyz,
            params=None if pose is None else pose[3:],
            global_orient=None if pose is None else pose[:3],
            betas=self._betas[row] if has_smpl and self._betas is not None else None,
            px_per_mm=float("nan"),
            crop_size=self.crop_size,
        )


# --------------------------------------------------------------------------------------- the writer


def _extra_from_smpl() -> np.ndarray:
    """For each of ProHMR's 19 extra keypoints, the index among smplx's 45 SMPL joints (-1: none).

    A body keypoint's definition (:data:`SMPL_TO_BODY`) gives the ones the 17 body keypoints map to
    (e.g. thorax_mpii = SMPL's neck, spine_h36m = spine2); the rest match an SMPL joint by name once the
    dataset suffix is dropped (neck_lsp = neck); head_top_lsp and jaw_h36m have no SMPL counterpart.
    """
    out = np.full(len(PROHMR_EXTRA_KEYPOINTS), -1)
    for body, extra in enumerate(BODY_FROM_PROHMR_EXTRA):
        if extra >= 0:
            out[extra] = SMPL_TO_BODY[body]
    for i, name in enumerate(PROHMR_EXTRA_KEYPOINTS):
        base = name.rsplit("_", 1)[0] if name.endswith(("_lsp", "_mpii", "_h36m")) else name
        if out[i] < 0 and base in SMPL_JOINT_NAMES:
            out[i] = SMPL_JOINT_NAMES.index(base)
    return out


EXTRA_FROM_SMPL: np.ndarray = _extra_from_smpl()


def random_camera_bodies(n: int, rng: np.random.Generator, smpl: Any) -> dict[str, np.ndarray]:
    """``n`` posed SMPL bodies standing upright in front of an OpenCV camera (x right, y down, z forward).

    Returns ``global_orient (n, 3)`` (camera frame), ``body_pose (n, 69)``, ``betas (n, 10)``,
    ``transl (n, 3)`` and ``joints (n, 45, 3)`` metres in the camera frame (smplx's 45 joints).
    """
    # upright (SMPL's y up -> the camera's -y, facing the camera) with a random turn about the vertical
    yaw = rng.uniform(-np.pi, np.pi, n)
    tilt = rng.normal(0.0, 0.15, (n, 3))
    orient = (Rotation.from_rotvec(tilt) * Rotation.from_euler("x", np.pi)
              * Rotation.from_rotvec(np.outer(yaw, [0.0, 1.0, 0.0]))).as_rotvec()
    pose = rng.normal(0.0, 0.25, (n, 69))
    betas = rng.normal(0.0, 1.0, (n, 10))
    transl = np.stack([rng.uniform(-0.5, 0.5, n), rng.uniform(-0.3, 0.3, n), rng.uniform(3.5, 7.0, n)], 1)
    dtype = smpl.kp_joint_rest.dtype
    t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    with torch.no_grad():
        joints = smpl.keypoints(t(orient), t(pose), t(betas), t(transl)).double().numpy()
    return {"global_orient": orient, "body_pose": pose, "betas": betas, "transl": transl, "joints": joints}


def write_prohmr_npz(path: str | os.PathLike, n: int, *, smpl: Any = None, seed: int = 0,
                     focal: float = 1000.0, image_size: tuple[int, int] = (1000, 1000)) -> Path:
    """Write a license-free ProHMR-format ``.npz`` of ``n`` posed SMPL bodies; returns the path.

    Bodies from :func:`random_camera_bodies` (``smpl``: a :class:`mhe.body.BodyModel`, default the neutral
    stand-in) are projected by a pinhole camera (``focal`` px, principal point at the image centre).
    ``body_keypoints_2d/_3d`` hold the 25 OpenPose keypoints (:data:`SMPL_TO_OPENPOSE`), ``extra_*`` the
    19 ground-truth keypoints where SMPL has a counterpart (:data:`EXTRA_FROM_SMPL`; head_top_lsp and
    jaw_h36m get confidence 0), all with confidence 1; 3D points are in the camera frame, metres. The
    person box is the square around all keypoints enlarged 1.2 times (``scale`` = side / 200).
    ``body_pose`` is the global orientation in the camera frame followed by the 69 body pose values.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive number of people, got {n!r}")
    if smpl is None:
        from mhe.body import load_smpl

        smpl = load_smpl(standin=True, dtype=torch.float64)
    rng = np.random.default_rng(seed)
    bodies = random_camera_bodies(n, rng, smpl)
    joints = bodies["joints"]
    K = np.array([[focal, 0.0, image_size[0] / 2], [0.0, focal, image_size[1] / 2], [0.0, 0.0, 1.0]])

    def keypoints(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        have = index >= 0
        xyz = np.zeros((n, len(index), 3))
        xyz[:, have] = joints[:, index[have]]
        uvw = xyz @ K.T
        uv = np.divide(uvw[..., :2], uvw[..., 2:], out=np.zeros((n, len(index), 2)), where=uvw[..., 2:] != 0)
        conf = np.broadcast_to(have.astype(np.float64), (n, len(index)))[..., None]
        return np.concatenate([uv, conf], -1), np.concatenate([xyz, conf], -1)

    op2d, op3d = keypoints(SMPL_TO_OPENPOSE)
    ex2d, ex3d = keypoints(EXTRA_FROM_SMPL)
    pts = np.concatenate([op2d[..., :2], ex2d[..., :2][:, EXTRA_FROM_SMPL >= 0]], 1)
    lo, hi = pts.min(1), pts.max(1)
    center = (lo + hi) / 2
    scale = 1.2 * (hi - lo).max(1) / 200.0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # np.savez would append ".npz" to a path without it
        np.savez(
            f,
            imgname=np.array([f"images/synthetic_{i:06d}.jpg" for i in range(n)]),
            center=center,
            scale=scale,
            body_pose=np.concatenate([bodies["global_orient"], bodies["body_pose"]], 1),
            has_body_pose=np.ones(n),
            betas=bodies["betas"],
            has_betas=np.ones(n),
            body_keypoints_2d=op2d,
            extra_keypoints_2d=ex2d,
            body_keypoints_3d=op3d,
            extra_keypoints_3d=ex3d,
        )
    return path
