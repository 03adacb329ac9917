"""Where MANO and SMPL files are found, and what the two model wrappers share.

:func:`body_models_root` and the file search used by :func:`mhe.body.mano.load_mano` and
:func:`mhe.body.smpl.load_smpl`: ``model_dir``, else ``$MHE_BODY_MODELS``, else ``data/body_models/``;
when no real file is found, the license-free stand-in from :mod:`mhe.body.standin` is used and a
one-time :class:`StandInWarning` says so. Also the input checks and the flattening of any leading
batch shape that both wrappers apply before calling smplx, and the silencing of smplx's stdout notice.
The wrappers themselves: :mod:`mhe.body.mano` (hands) and :mod:`mhe.body.smpl` (bodies).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mhe.body.standin import ensure_standin
from mhe.utils import data_dir

__all__ = ["MANO_URL", "SMPL_URL", "StandInWarning", "body_models_root"]

MANO_URL = "https://mano.is.tue.mpg.de"
SMPL_URL = "https://smpl.is.tue.mpg.de"


class StandInWarning(UserWarning):
    """Issued once per model kind when a license-free stand-in replaces a missing real model file."""


_ANNOUNCED: set[str] = set()


def _announce_standin(kind: str, looked_in: Path, path: Path) -> None:
    if kind in _ANNOUNCED:
        return
    _ANNOUNCED.add(kind)
    url, files = (MANO_URL, "mano/MANO_RIGHT.pkl, mano/MANO_LEFT.pkl") if kind == "mano" else (
        SMPL_URL, "smpl/SMPL_NEUTRAL.pkl (and _MALE, _FEMALE)")
    warnings.warn(
        f"mhe.body: no real {kind.upper()} file in {looked_in}; using a license-free STAND-IN "
        f"{kind.upper()} ({path}). It has the real file format but not the real shape. For the real "
        f"model register at {url}, download it and place {files} under {looked_in} "
        "(see data/body_models/README.md), or set $MHE_BODY_MODELS to such a folder.",
        StandInWarning,
        stacklevel=4,
    )


def body_models_root() -> Path:
    """Default folder searched for real model files: ``$MHE_BODY_MODELS``, else ``<data>/body_models``."""
    env = os.environ.get("MHE_BODY_MODELS")
    return Path(env) if env else data_dir() / "body_models"


def _find(sub: str, stem: str, model_dir: str | os.PathLike | None, standin: bool | None, kind: str,
          variant: str, url: str) -> tuple[Path, bool]:
    """Resolve the file to load; returns ``(path, is_standin)``."""
    if standin:
        return ensure_standin(kind, variant), True
    explicit = model_dir is not None
    root = body_models_root() if model_dir is None else Path(model_dir)
    if root.is_file():
        return root, False
    candidates = [root / sub / f"{stem}.{ext}" for ext in ("pkl", "npz")]
    candidates += [root / f"{stem}.{ext}" for ext in ("pkl", "npz")]
    for cand in candidates:
        if cand.is_file():
            return cand, False
    if explicit or standin is False:
        raise FileNotFoundError(
            f"no {kind.upper()} model file at {candidates[0]} "
            f"(also tried {', '.join(map(str, candidates[1:]))}). "
            f"Register at {url}, download the model and put {stem}.pkl at {root / sub}, "
            "or call without model_dir to use the license-free stand-in."
        )
    path = ensure_standin(kind, variant)
    _announce_standin(kind, root, path)
    return path, True


@contextlib.contextmanager
def _quiet_smplx() -> Iterator[None]:
    """Drop smplx's "WARNING: You are using a ... model, with only 10 shape coefficients." stdout line."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield
    for line in buf.getvalue().splitlines():
        if "shape coefficients" not in line:
            print(line, file=sys.stdout)


def _check_batch(name: str, x: Tensor | None, width: int, lead: torch.Size | None, hint: str) -> None:
    if x is None:
        return
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, {width}), got {type(x).__name__}")
    if x.dim() < 1 or x.shape[-1] != width or (lead is not None and x.shape[:-1] != lead):
        want = f"({', '.join(map(str, lead)) if lead is not None else 'B'}, {width})"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}{hint}")


def _flat(x: Tensor, lead: torch.Size, width: int, dtype: torch.dtype) -> Tensor:
    """Reshape a ``(*lead, width)`` input to ``(N, width)`` in the model's dtype: smplx takes one flat
    batch dimension."""
    n = int(np.prod(lead)) if len(lead) else 1
    return x.reshape(n, width).to(dtype)


def _flat_inputs(
    lead: torch.Size, dtype: torch.dtype, **inputs: tuple[Tensor | None, int]
) -> dict[str, Tensor | None]:
    """:func:`_flat` of each ``name=(input, width)`` (None stays None), as keyword arguments for smplx."""
    return {k: None if x is None else _flat(x, lead, w, dtype) for k, (x, w) in inputs.items()}
