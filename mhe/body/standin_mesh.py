"""Tube meshes for the stand-in body models: vertex rings around bones, skinned rigidly, and the
bookkeeping that gives landmark vertices their conventional ids.

:class:`_Mesh` grows vertex, skinning-weight and face lists one tube at a time; a tube is a sequence
of elliptical rings along a bone polyline (:func:`_polyline_rings`, :func:`_refine`), each ring skinned
to its bone or blended 50/50 with the parent at a joint; the ring centred on a joint becomes that
joint's row of ``J_regressor``. :func:`_finalise` reorders and pads the lists to the vertex and face
counts of the real file. :mod:`mhe.body.standin` lays out the hand and the body with these tools.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class _Mesh:
    """Vertex, skinning-weight and face lists grown tube by tube, with per-vertex bookkeeping."""

    def __init__(self, parents: np.ndarray) -> None:
        self.parents = parents
        self.num_joints = len(parents)
        self.pos: list[np.ndarray] = []
        self.w: list[np.ndarray] = []
        self.radial: list[np.ndarray] = []  # offset from its ring centre (zero for caps and landmarks)
        self.part: list[str] = []
        self.faces: list[tuple[int, int, int]] = []
        self.regress: dict[int, list[int]] = {}

    def vertex(self, p: ArrayLike, weights: dict[int, float], part: str, radial: np.ndarray | None = None) -> int:
        w = np.zeros(self.num_joints)
        for j, val in weights.items():
            w[j] = val
        self.pos.append(np.asarray(p, dtype=np.float64))
        self.w.append(w / w.sum())
        self.radial.append(np.zeros(3) if radial is None else radial)
        self.part.append(part)
        return len(self.pos) - 1

    def tube(
        self,
        rings: list[dict],
        n: int,
        part: str,
        start_cap: np.ndarray | None = None,
        end_cap: np.ndarray | None = None,
    ) -> tuple[int | None, int | None]:
        """Add a tube; each ring is ``dict(c=centre, d=tangent, a=width axis, r=(rw, rt), w={joint: weight},
        reg=joint or None)``. Faces are wound so that normals point outwards."""
        t = 2 * np.pi * np.arange(n) / n
        ids = []
        for ring in rings:
            d = _unit(np.asarray(ring["d"], dtype=np.float64))
            a = np.asarray(ring["a"], dtype=np.float64)
            e1 = _unit(a - (a @ d) * d)
            e2 = np.cross(d, e1)  # e1 x e2 = d: the ring runs counter-clockwise about the tangent
            rw, rt = ring["r"]
            row = []
            for tk in t:
                off = rw * np.cos(tk) * e1 + rt * np.sin(tk) * e2
                row.append(self.vertex(ring["c"] + off, ring["w"], part, off))
            ids.append(row)
            if ring.get("reg") is not None:
                j = ring["reg"]
                allowed = {j, int(self.parents[j])}
                assert set(ring["w"]) <= allowed, f"ring of joint {j} may only blend {allowed}"
                self.regress[j] = row
        for r0, r1 in zip(ids[:-1], ids[1:], strict=True):
            for k in range(n):
                v0, v1, v2, v3 = r0[k], r0[(k + 1) % n], r1[(k + 1) % n], r1[k]
                self.faces += [(v0, v1, v2), (v0, v2, v3)]
        first = last = None
        if start_cap is not None:
            first = self.vertex(start_cap, rings[0]["w"], part)
            self.faces += [(first, ids[0][(k + 1) % n], ids[0][k]) for k in range(n)]
        if end_cap is not None:
            last = self.vertex(end_cap, rings[-1]["w"], part)
            self.faces += [(last, ids[-1][k], ids[-1][(k + 1) % n]) for k in range(n)]
        return first, last


def _refine(rings: list[dict]) -> list[dict]:
    """Insert a ring halfway between each pair of rings (blending centres, radii, axes and weights)."""
    out = [rings[0]]
    for r0, r1 in zip(rings[:-1], rings[1:], strict=True):
        w = {j: 0.5 * r0["w"].get(j, 0.0) + 0.5 * r1["w"].get(j, 0.0) for j in set(r0["w"]) | set(r1["w"])}
        mid = dict(c=(np.asarray(r0["c"]) + r1["c"]) / 2, d=_unit(_unit(r0["d"]) + _unit(r1["d"])),
                   a=(np.asarray(r0["a"]) + r1["a"]) / 2, r=tuple((np.asarray(r0["r"]) + r1["r"]) / 2),
                   w=w, reg=None)
        out += [mid, r1]
    return out


def _polyline_rings(
    points: np.ndarray, specs: list[tuple], axis_fn: Callable[[int, np.ndarray], np.ndarray]
) -> list[dict]:
    """Rings along a polyline: ``specs`` = (segment, fraction, (rw, rt), weights, regressed joint)."""
    dirs = _unit(np.diff(points, axis=0))
    rings = []
    for seg, frac, radii, weights, reg in specs:
        c = points[seg] + frac * (points[seg + 1] - points[seg])
        d = dirs[seg] if frac > 0 or seg == 0 else _unit(dirs[seg] + dirs[seg - 1])
        rings.append(dict(c=c, d=d, a=axis_fn(seg, d), r=radii, w=weights, reg=reg))
    return rings


def _finalise(
    mesh: _Mesh,
    num_verts: int,
    num_faces: int,
    fixed_ids: dict[int, list[int]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Reorder vertices so that ``fixed_ids[v]`` (extra copies included) get their conventional ids, pad
    vertices (copies of the last ring vertex) and faces (repeats) to the real counts, and return
    ``(v_template, weights, faces, J_regressor, radial, part, new_id_of_old)``."""
    base = len(mesh.pos)
    copies = sum(len(ids) - 1 for ids in fixed_ids.values())
    pad = num_verts - base - copies
    if pad < 0 or len(mesh.faces) > num_faces:
        raise AssertionError(f"stand-in too fine: {base + copies} vertices, {len(mesh.faces)} faces")
    assert set(mesh.regress) == set(range(mesh.num_joints)), "every joint needs a regressor ring"
    src = list(range(base)) + [0] * pad  # padding vertices copy the first ring vertex
    reserved = {i for ids in fixed_ids.values() for i in ids}
    free = iter(i for i in range(num_verts) if i not in reserved)
    new_of = np.empty(len(src), dtype=np.int64)
    order = np.empty(num_verts, dtype=np.int64)  # order[new id] = old vertex
    for old in range(len(src)):
        if old in fixed_ids:
            new_of[old] = fixed_ids[old][0]
        else:
            new_of[old] = next(free)
        order[new_of[old]] = src[old]
    for old, ids in fixed_ids.items():
        for extra in ids[1:]:
            order[extra] = old
    pos = np.stack(mesh.pos)[order]
    w = np.stack(mesh.w)[order]
    radial = np.stack(mesh.radial)[order]
    part = [mesh.part[o] for o in order]
    faces = new_of[np.asarray(mesh.faces)]
    # Repeat faces to reach the real face count (renderers draw a repeated face once).
    faces = np.concatenate([faces, faces[: num_faces - len(faces)]]).astype(np.uint32)
    rows, cols, vals = [], [], []
    for j, ring in sorted(mesh.regress.items()):
        for old in ring:
            rows.append(j)
            cols.append(new_of[old])
            vals.append(1.0 / len(ring))
    jreg = sp.csc_matrix((vals, (rows, cols)), shape=(mesh.num_joints, num_verts))
    return pos, w, faces, jreg, radial, part, new_of


def _kintree(parents: np.ndarray) -> np.ndarray:
    table = np.stack([parents, np.arange(len(parents))]).astype(np.int64)
    table[0, 0] = 4294967295  # the real files store the root's parent as uint32(-1)
    return table
