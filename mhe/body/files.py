"""Reading MANO / SMPL model files, including chumpy-era pickles, without chumpy.

The official model files are Python-2 pickles whose arrays are sometimes **chumpy** objects (``Ch``,
``reordering.Select``, ...). chumpy does not import on NumPy >= 1.24 / Python 3.11, so
:func:`read_model_file` unpickles with a custom ``Unpickler.find_class`` that stands a tiny
state-holder in for every chumpy class, then rebuilds each one as the NumPy array it denotes
(``Ch`` keeps its array in ``x``; ``Select`` picks ``a.ravel()[idxs]`` and reshapes to
``preferred_shape``; reshapes, transposes, concatenations and elementwise arithmetic are evaluated).
scipy sparse matrices (the ``J_regressor``) are densified, because smplx densifies them anyway;
strings become 0-d string arrays. ``.npz`` files are read with ``numpy.load``. Genuine files are
recognised by MD5 (:data:`KNOWN_MD5`); stand-ins carry a ``mhe_standin`` key.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import threading
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mhe.errors import BodyModelFileError

__all__ = [
    "BodyModelFileError",
    "KNOWN_MD5",
    "ModelFileInfo",
    "file_md5",
    "identify_model_file",
    "read_model_file",
    "validate_model_arrays",
]

# MD5 sums of genuine, licensed files (FreiHAND's setup script checks the first one).
KNOWN_MD5: dict[str, str] = {
    "fd5a9d35f914987cf1cc04ffe338caa1": "MANO_RIGHT.pkl from MANO v1.2 (mano.is.tue.mpg.de)",
}

STANDIN_KEY = "mhe_standin"




@dataclass(frozen=True)
class ModelFileInfo:
    """Where a model came from: its path, MD5, the genuine release it matches (if any), stand-in or not."""

    path: Path
    md5: str
    genuine: str | None
    is_standin: bool

    def describe(self) -> str:
        """One line for logs and notebook output."""
        if self.is_standin:
            kind = "license-free stand-in"
        elif self.genuine:
            kind = f"genuine {self.genuine}"
        else:
            kind = "unrecognised checksum (not a release this package knows; loaded anyway)"
        return f"{self.path} [md5 {self.md5}]: {kind}"


# One run reads the same model file many times (each dataset split and each model build loads SMPL), and reading
# it costs far more than using it (SMPL's stand-in: 38 MB to hash and unpickle, ~0.15 CPU-s a load). What a file
# holds and its MD5 are therefore kept per version of the file: its path, device, inode, size, modification and
# change times. A file changed within the last second is not kept, because a rewrite inside one tick of the
# file system's clock could leave all of those as they were (git's "racy" timestamps).
_KEEP = 8  # file versions kept (MANO's two sides, SMPL's three genders, ...)
_RACY_NS = 1_000_000_000  # a file changed this recently (ns) is not kept
_READ: dict[tuple, dict[str, np.ndarray]] = {}
_MD5: dict[tuple, str] = {}
_LOCK = threading.Lock()


def file_version(path: str | os.PathLike) -> tuple | None:
    """What identifies this version of the file at ``path`` (None: missing, or changed within the last second)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < _RACY_NS:
        return None
    return (os.path.abspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _keep(store: dict, key: tuple | None, value: Any) -> None:
    if key is None:
        return
    with _LOCK:
        store.pop(key, None)
        store[key] = value
        while len(store) > _KEEP:
            del store[next(iter(store))]


def file_md5(path: str | os.PathLike) -> str:
    """Hex MD5 of a file, read in chunks (kept per :func:`file_version`)."""
    key = file_version(path)
    if key is not None and key in _MD5:
        return _MD5[key]
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if key is not None and file_version(path) == key:  # unchanged while it was read
        _keep(_MD5, key, digest.hexdigest())
    return digest.hexdigest()


class _ChumpyStub:
    """Placeholder for any chumpy class: remembers its class name and pickled state, nothing else."""

    chumpy_name = "Ch"
    state: dict = {}  # replaced by __setstate__; the default covers pickles that carry no state

    def __new__(cls, *args: Any, **kwargs: Any) -> "_ChumpyStub":
        return object.__new__(cls)

    def __setstate__(self, state: Any) -> None:
        # chumpy pickles its __dict__ (sometimes as a (dict, slots) pair under protocol 2).
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = state[0]
        self.state = dict(state) if isinstance(state, dict) else {"x": state}


_STUB_CLASSES: dict[tuple[str, str], type] = {}


def _stub_for(module: str, name: str) -> type:
    key = (module, name)
    if key not in _STUB_CLASSES:
        _STUB_CLASSES[key] = type(f"chumpy_{name}", (_ChumpyStub,), {"chumpy_name": name})
    return _STUB_CLASSES[key]


class _ModelUnpickler(pickle.Unpickler):
    """Unpickler that never imports chumpy: chumpy classes become :class:`_ChumpyStub` subclasses."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return _stub_for(module, name)
        return super().find_class(module, name)


_ELEMENTWISE = {
    "add": np.add,
    "subtract": np.subtract,
    "multiply": np.multiply,
    "divide": np.divide,
    "power": np.power,
}


def _chumpy_to_array(obj: _ChumpyStub) -> np.ndarray:
    """Evaluate the array a (small) chumpy expression tree denotes."""
    s = obj.state
    name = obj.chumpy_name
    if name == "Ch" or ("x" in s and "a" not in s):
        return np.asarray(_to_plain(s["x"]))
    a = _to_plain(s["a"]) if "a" in s else None
    if name == "Select":
        out = np.asarray(a).ravel()[np.asarray(s["idxs"]).ravel()]
        return out.reshape(s["preferred_shape"]) if "preferred_shape" in s else out
    if name == "Reshape":
        return np.asarray(a).reshape(s["newshape"])
    if name == "transpose":
        return np.transpose(np.asarray(a), s.get("axes"))
    if name == "Concatenate":
        parts = sorted((k for k in s if k[:1] == "m" and k[1:].isdigit()), key=lambda k: int(k[1:]))
        return np.concatenate([np.asarray(_to_plain(s[k])) for k in parts], axis=s.get("axis", 0))
    if name in _ELEMENTWISE and "a" in s and "b" in s:
        return _ELEMENTWISE[name](np.asarray(a), np.asarray(_to_plain(s["b"])))
    raise BodyModelFileError(
        f"the pickle holds a chumpy '{name}' object this reader cannot evaluate "
        f"(state keys: {sorted(s)}); convert the file to .npz with a working chumpy install, "
        "or report the file layout to the mhe maintainers"
    )


def _to_plain(value: Any) -> Any:
    """Replace chumpy stubs by arrays and scipy sparse matrices by dense arrays."""
    if isinstance(value, _ChumpyStub):
        return _chumpy_to_array(value)
    if hasattr(value, "toarray") and "scipy.sparse" in type(value).__module__:
        return value.toarray()
    return value


def _as_array(value: Any) -> np.ndarray:
    value = _to_plain(value)
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, bytes):
        value = value.decode("latin1")
    if isinstance(value, (str, int, float, bool, np.generic)):
        return np.asarray(value)
    try:
        arr = np.asarray(value)
        if arr.dtype != object:
            return arr
    except (ValueError, TypeError):
        pass
    # Anything else (dicts of training info, ...) is kept, wrapped in a 0-d object array.
    box = np.empty((), dtype=object)
    box[()] = value
    return box


def read_model_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a MANO/SMPL ``.pkl`` (chumpy-era or not) or ``.npz`` into plain NumPy arrays.

    Returns ``{key: array}``: e.g. for MANO ``v_template (V, 3)``, ``f (F, 3)``, ``J_regressor (J, V)``
    (densified from scipy sparse), ``shapedirs (V, 3, D)``, ``posedirs (V, 3, 9 (J - 1))``,
    ``weights (V, J)``, ``kintree_table (2, J)``, ``hands_components (45, 45)``, ``hands_mean (45,)``.
    Strings become 0-d string arrays; other Python objects 0-d object arrays. chumpy is never
    imported. Raises ``FileNotFoundError`` for a missing file and :class:`BodyModelFileError` for one
    that is not a readable model file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no body-model file at {path}")
    key = file_version(path)
    if key is not None and key in _READ:  # this very file read before (see file_version): a copy of what it held
        return {k: v.copy() for k, v in _READ[key].items()}
    data = _read_model_file(path)
    if key is not None and file_version(path) == key:  # unchanged while it was read
        _keep(_READ, key, {k: v.copy() for k, v in data.items()})  # the caller may change its own arrays
    return data


def _read_model_file(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=True) as z:
                return {k: _as_array(z[k]) for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
            raise BodyModelFileError(f"{path} is not a readable .npz model file ({err})") from err
    raw = path.read_bytes()
    try:
        data = _ModelUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except BodyModelFileError:
        raise
    except Exception as err:  # pickle raises many types on corrupt input
        raise BodyModelFileError(
            f"{path} could not be unpickled ({type(err).__name__}: {err}); the file is truncated or "
            "not a MANO/SMPL model pickle: download it again"
        ) from err
    if not isinstance(data, dict):
        raise BodyModelFileError(
            f"{path} holds a {type(data).__name__}, not the dict of arrays a MANO/SMPL file holds"
        )
    return {str(k): _as_array(v) for k, v in data.items()}


def identify_model_file(path: str | os.PathLike, data: dict[str, np.ndarray] | None = None) -> ModelFileInfo:
    """MD5 of ``path``, the genuine release it matches (see :data:`KNOWN_MD5`), and whether it is a stand-in."""
    path = Path(path)
    md5 = file_md5(path)
    if data is None:
        data = read_model_file(path)
    return ModelFileInfo(path=path, md5=md5, genuine=KNOWN_MD5.get(md5), is_standin=STANDIN_KEY in data)


def validate_model_arrays(
    data: dict[str, np.ndarray], expected: Mapping[str, tuple[int | None, ...]], path: str | os.PathLike, what: str
) -> None:
    """Check that every key in ``expected`` exists with that shape (``None`` = any size, ``-1`` = at least 10).

    Also that every float array is finite and the faces ``f`` index ``v_template``'s vertices. Raises
    :class:`BodyModelFileError` naming the file, the key and both shapes (or the value refused).
    """
    for key, shape in expected.items():
        if key not in data:
            raise BodyModelFileError(
                f"{path} lacks the key '{key}' that every {what} file has (keys found: "
                f"{sorted(data)}); is this the right kind of model file?"
            )
        got = tuple(np.shape(data[key]))
        ok = len(got) == len(shape) and all(
            e is None or (e == -1 and g >= 10) or g == e for g, e in zip(got, shape, strict=True)
        )
        if not ok:
            want = tuple("any" if e is None else ">=10" if e == -1 else e for e in shape)
            raise BodyModelFileError(
                f"{path}: key '{key}' has shape {got}, a {what} file has {want}; "
                "the file is corrupt or belongs to another model"
            )
        arr = np.asarray(data[key])
        if arr.dtype.kind not in "biuf":
            raise BodyModelFileError(f"{path}: key '{key}' is not numeric (dtype {arr.dtype})")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad = ~np.isfinite(arr)
            pos = tuple(int(i) for i in np.argwhere(bad)[0])
            raise BodyModelFileError(f"{path}: key '{key}' holds {int(bad.sum())} NaN or infinite value(s), the "
                                     f"first {arr[pos]} at {pos}; the file is corrupt: download it again")
    if "f" in expected and "v_template" in expected:
        faces, verts = np.asarray(data["f"]), len(np.asarray(data["v_template"]))
        if faces.size and (faces.min() < 0 or faces.max() >= verts or (faces != np.round(faces)).any()):
            raise BodyModelFileError(f"{path}: key 'f' holds vertex indices from {faces.min()} to {faces.max()}, but "
                                     f"v_template has {verts} vertices (indices 0 to {verts - 1}); the file is corrupt")
