"""Small shared utilities: seeding, device choice, tensors without values, project paths and atomic file
writes."""

from __future__ import annotations

import io
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def default_device(preference: str | None = None) -> torch.device:
    """``preference`` if given ("cpu", "cuda", "cuda:1", ...), else CUDA when present, else CPU."""
    if preference:
        try:
            device = torch.device(preference)
        except RuntimeError:
            raise RuntimeError(
                f"device {preference!r} is not a device name; use cpu, cuda or cuda:<index>"
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"device {preference!r} was asked for but CUDA is not available here; "
                "use --device cpu (or leave it out to pick automatically)."
            )
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def has_values(t: torch.Tensor) -> bool:
    """Whether ``t`` holds numbers: False for a tensor of shapes only (the ``meta`` device, or torch's fake tensors
    as in ``tests/test_fake_cuda.py``), where checks on values (``if bad.any(): raise ...``) are skipped."""
    from torch._subclasses.fake_tensor import is_fake

    return t.device.type != "meta" and not is_fake(t)


def data_dir() -> Path:
    """Where real assets, shipped checkpoints and generated stand-ins live (``$MHE_DATA`` overrides)."""
    return Path(os.environ.get("MHE_DATA", REPO_ROOT / "data"))


def figures_dir() -> Path:
    """Where figures are written (``$MHE_FIGURES_DIR`` overrides; tests point it at a temp folder)."""
    path = Path(os.environ.get("MHE_FIGURES_DIR", REPO_ROOT / "figures"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through a temporary file and an atomic rename (no torn checkpoints)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def display_path(path: str | os.PathLike) -> str:
    """``path`` as a message shows it: relative to the repository when it lies inside (``data/cache/...``, the
    same on every machine and in every notebook output), else as given."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(REPO_ROOT.resolve()))
    except ValueError:
        return str(path)
