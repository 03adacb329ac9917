"""Hypotheses as meshes for MeshLab, Blender and other 3D tools (through trimesh).

:func:`hypothesis_mesh` joins S meshes of one input into one mesh, each hypothesis in its own colour (per
vertex, so PLY and OBJ readers show it), optionally with the ground truth in dark grey;
:func:`export_hypothesis_meshes` writes it (``.ply``, ``.obj`` or ``.glb`` by the file's suffix,
atomically). Coordinates stay as given (the package's meshes: mm, root-relative, camera frame with y down).
The explorer (:meth:`mhe.viz.explorer.HypothesisExplorer.export_meshes`) and ``mhe meshes`` use them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MESH_FORMATS", "hypothesis_colors", "hypothesis_mesh", "export_hypothesis_meshes"]

MESH_FORMATS = (".ply", ".obj", ".glb")  # formats that keep per-vertex colours
GROUND_TRUTH_RGBA = (60, 60, 60, 255)


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def hypothesis_colors(n: int) -> np.ndarray:
    """``n`` distinct RGBA colours ``(n, 4)`` uint8 (matplotlib's tab10, then tab20, then a hue circle)."""
    import matplotlib

    if n <= 10:
        rgba = matplotlib.colormaps["tab10"](np.arange(n))
    elif n <= 20:
        rgba = matplotlib.colormaps["tab20"](np.arange(n))
    else:
        rgba = matplotlib.colormaps["hsv"](np.linspace(0.0, 1.0, n, endpoint=False))
    return np.round(np.asarray(rgba) * 255).astype(np.uint8)


def hypothesis_mesh(vertices: Any, faces: Any, colors: Sequence[Sequence[int]] | np.ndarray | None = None,
                    ground_truth: Any = None) -> Any:
    """One ``trimesh.Trimesh`` of S hypotheses ``vertices (S, V, 3)`` sharing ``faces (F, 3)``, hypothesis s
    coloured ``colors[s]`` (RGBA uint8; :func:`hypothesis_colors` by default), and ``ground_truth (V, 3)``
    after them in dark grey when given."""
    import trimesh

    verts = _np(vertices).astype(np.float64)
    if verts.ndim != 3 or verts.shape[-1] != 3:
        raise ValueError(f"vertices must be (S, V, 3), got {verts.shape}")
    f = _np(faces).astype(np.int64)
    if f.ndim != 2 or f.shape[1] != 3 or f.min() < 0 or f.max() >= verts.shape[1]:
        raise ValueError(f"faces must be (F, 3) indices into the {verts.shape[1]} vertices, got shape {f.shape}")
    S, V = verts.shape[:2]
    rgba = hypothesis_colors(S) if colors is None else np.asarray(colors, dtype=np.uint8)
    if rgba.shape != (S, 4):
        raise ValueError(f"colors must be (S, 4) = ({S}, 4) RGBA values, got {rgba.shape}")
    blocks, vcolor = [verts], [np.repeat(rgba, V, axis=0)]
    if ground_truth is not None:
        gt = _np(ground_truth).astype(np.float64)
        if gt.shape != (V, 3):
            raise ValueError(f"ground_truth must be (V, 3) = ({V}, 3), got {gt.shape}")
        blocks.append(gt[None])
        vcolor.append(np.tile(np.asarray(GROUND_TRUTH_RGBA, np.uint8), (V, 1)))
    k = len(blocks[0]) + (ground_truth is not None)
    all_verts = np.concatenate(blocks).reshape(-1, 3)
    all_faces = np.concatenate([f + i * V for i in range(k)])
    return trimesh.Trimesh(all_verts, all_faces, vertex_colors=np.concatenate(vcolor), process=False)


def export_hypothesis_meshes(path: str | os.PathLike, vertices: Any, faces: Any, colors: Any = None,
                             ground_truth: Any = None) -> Path:
    """Write :func:`hypothesis_mesh` to ``path`` (format by suffix: :data:`MESH_FORMATS`), atomically."""
    from mhe.utils import atomic_write_bytes

    path = Path(path)
    if path.suffix.lower() not in MESH_FORMATS:
        raise ValueError(f"cannot write meshes to {path.name!r}: give a file ending in {', '.join(MESH_FORMATS)}")
    mesh = hypothesis_mesh(vertices, faces, colors, ground_truth)
    data = mesh.export(file_type=path.suffix.lower()[1:])
    return atomic_write_bytes(path, data.encode() if isinstance(data, str) else data)
