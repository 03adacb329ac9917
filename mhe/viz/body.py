"""Drawing hands and bodies: skeletons and meshes in matplotlib (2D and 3D) and plotly.

Inputs are arrays or tensors in the camera convention of :mod:`mhe.geometry` (OpenCV: x right, y down,
z forward), 3D in metres (the body models' unit); figures label their axes in ``unit`` (default mm).
3D matplotlib axes show ``(x, z, -y)`` so that "up" on screen is up in the image and the depth axis
recedes; an axis seen nearly end-on loses its (crowded) ticks and name. 2D axes invert y
like an image. Visible and occluded keypoints follow the house encoding of :mod:`mhe.viz` (dots and
crosses: :func:`draw_joints`, :func:`visibility_handles`). Every function returns a figure (or draws
into a given axis) and never calls ``plt.show()``.
"""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, NullLocator
from mpl_toolkits.mplot3d.art3d import Line3DCollection, Poly3DCollection

from mhe.body.keypoints import FINGER_OF_KEYPOINT, HAND_PARENTS
from mhe.viz import (
    GROUND_TRUTH_COLOR,
    OCCLUDED_COLOR,
    OCCLUDED_LABEL,
    OCCLUDED_MARKER,
    VISIBLE_COLOR,
    VISIBLE_LABEL,
    VISIBLE_MARKER,
)

__all__ = [
    "FINGER_COLORS",
    "hand_colors",
    "draw_skeleton_2d",
    "draw_skeleton_3d",
    "draw_joints",
    "draw_mesh_3d",
    "plot_body_benchmark",
    "plot_hand_views",
    "plot_poses_2d_3d",
    "plot_mesh_grid",
    "plotly_mesh",
    "visibility_handles",
]

UNITS = {"m": 1.0, "cm": 100.0, "mm": 1000.0}  # display unit -> factor from metres

FINGER_COLORS = {
    "wrist": "#444444",
    "thumb": "#e41a1c",
    "index": "#ff7f00",
    "middle": "#4daf4a",
    "ring": "#377eb8",
    "pinky": "#984ea3",
}


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def hand_colors() -> list[str]:
    """One colour per hand keypoint (21), by finger."""
    return [FINGER_COLORS[f] for f in FINGER_OF_KEYPOINT]


def _factor(unit: str) -> float:
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {sorted(UNITS)}, got {unit!r}")
    return UNITS[unit]


def _display(xyz: np.ndarray, unit: str = "m") -> np.ndarray:
    """Camera frame in metres (x right, y down, z forward) -> plot frame (x, depth, up) in ``unit``."""
    return np.stack([xyz[..., 0], xyz[..., 2], -xyz[..., 1]], axis=-1) * _factor(unit)


def _label_3d(ax: Any, unit: str = "mm") -> None:
    """Axis names (with units) of the plot frame that :func:`_display` maps the camera frame to, and
    ticks that do not overlap: a few per axis, two on an axis seen at a steep angle, and neither ticks
    nor name on an axis seen nearly end-on (drawn under 35 % of its length)."""
    elev, azim = np.radians(ax.elev), np.radians(ax.azim)
    eye = np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
    names = (f"x ({unit})", f"depth z ({unit})", f"up, −y ({unit})")
    for k, (axis, name, setter) in enumerate(zip((ax.xaxis, ax.yaxis, ax.zaxis), names,
                                                 (ax.set_xlabel, ax.set_ylabel, ax.set_zlabel), strict=True)):
        shown = float(np.sqrt(max(0.0, 1.0 - eye[k] ** 2)))  # projected length of a unit vector on the axis
        if shown < 0.35:  # seen end-on: its ticks and name would only pile up on each other
            axis.set_major_locator(NullLocator())
            setter("")
        else:
            axis.set_major_locator(MaxNLocator(nbins=2 if shown < 0.75 else 4))
            setter(name, fontsize=8, labelpad=2)
    ax.tick_params(labelsize=7, pad=0)


def _equal_3d(ax: Any, pts: np.ndarray, pad: float = 0.05) -> None:
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * (1 + pad) + 1e-9
    for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre, strict=True):
        setter(c - half, c + half)
    ax.set_box_aspect((1, 1, 1))


def draw_joints(ax: Any, pts: np.ndarray, visible: np.ndarray, size: float = 30, zorder: float = 4) -> None:
    """The house encoding of :mod:`mhe.viz`: visible joints of pts (J, 2) as filled blue dots, occluded ones
    as filled red crosses, both edged in white."""
    pts, visible = _np(pts), _np(visible).astype(bool)
    ax.scatter(pts[visible, 0], pts[visible, 1], s=size, c=VISIBLE_COLOR, marker=VISIBLE_MARKER,
               edgecolors="white", linewidths=0.6, zorder=zorder)
    ax.scatter(pts[~visible, 0], pts[~visible, 1], s=size * 1.5, c=OCCLUDED_COLOR, marker=OCCLUDED_MARKER,
               edgecolors="white", linewidths=0.6, zorder=zorder)


def visibility_handles(color: str | None = None) -> list[Line2D]:
    """Legend entries of :func:`draw_joints`' markers (or, with ``color``, of the same shapes in that colour)."""
    return [Line2D([], [], ls="", marker=VISIBLE_MARKER, ms=7, color=color or VISIBLE_COLOR, mec="white",
                   label=VISIBLE_LABEL),
            Line2D([], [], ls="", marker=OCCLUDED_MARKER, ms=8, color=color or OCCLUDED_COLOR, mec="white",
                   label=OCCLUDED_LABEL)]


def draw_skeleton_2d(
    ax: Any,
    uv: Any,
    parents: Sequence[int] = tuple(HAND_PARENTS),
    colors: Sequence[str] | None = None,
    visible: Any = None,
    linestyle: str = "-",
    alpha: float = 1.0,
    label: str | None = None,
    markersize: float = 18,
) -> None:
    """Draw 2D keypoints ``uv (J, 2)`` and their bones into ``ax``: visible points as dots, occluded points
    (``visible (J,)`` False) as crosses, in the points' colours (the shapes of the house encoding,
    :func:`draw_joints`). Image convention: y grows downwards."""
    uv = _np(uv)
    colors = list(colors) if colors is not None else (hand_colors() if len(uv) == 21 else ["#333333"] * len(uv))
    vis = np.ones(len(uv), bool) if visible is None else _np(visible).astype(bool)
    for j, p in enumerate(parents):
        if p >= 0:
            ax.plot(uv[[p, j], 0], uv[[p, j], 1], linestyle, color=colors[j], lw=2, alpha=alpha)
    ax.scatter(uv[vis, 0], uv[vis, 1], c=[colors[j] for j in np.flatnonzero(vis)], s=markersize,
               marker=VISIBLE_MARKER, alpha=alpha, zorder=3, label=label)
    if (~vis).any():
        ax.scatter(uv[~vis, 0], uv[~vis, 1], c=[colors[j] for j in np.flatnonzero(~vis)], marker=OCCLUDED_MARKER,
                   edgecolors="white", s=markersize * 2, alpha=alpha, zorder=3, linewidths=0.5)
    if not ax.yaxis_inverted():
        ax.invert_yaxis()
    ax.set_aspect("equal")


def draw_skeleton_3d(
    ax: Any,
    joints: Any,
    parents: Sequence[int] = tuple(HAND_PARENTS),
    colors: Sequence[str] | None = None,
    alpha: float = 1.0,
    linewidth: float = 2.5,
    unit: str = "mm",
) -> None:
    """Draw 3D joints ``joints (J, 3)`` (camera frame, metres) and their bones into a 3D axis, in ``unit``."""
    xyz = _display(_np(joints), unit)
    colors = list(colors) if colors is not None else (hand_colors() if len(xyz) == 21 else ["#333333"] * len(xyz))
    segs = [(xyz[p], xyz[j]) for j, p in enumerate(parents) if p >= 0]
    seg_colors = [colors[j] for j, p in enumerate(parents) if p >= 0]
    ax.add_collection3d(Line3DCollection(segs, colors=seg_colors, linewidths=linewidth, alpha=alpha))
    ax.scatter(*xyz.T, c=colors, s=12, alpha=alpha, depthshade=False)


def draw_mesh_3d(
    ax: Any,
    vertices: Any,
    faces: Any,
    color: str = "#e8c4a8",
    alpha: float = 1.0,
    light: Sequence[float] = (0.3, -1.0, -0.6),
    unit: str = "mm",
) -> None:
    """Draw a triangle mesh ``vertices (V, 3)`` (camera frame, metres), ``faces (F, 3)`` with Lambert
    shading, in ``unit``."""
    v = _display(_np(vertices), unit)
    f = np.asarray(faces, dtype=np.int64)
    tris = v[f]
    normals = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    light_dir = _display(np.asarray(light, dtype=np.float64))
    light_dir = light_dir / np.linalg.norm(light_dir)
    shade = 0.35 + 0.65 * np.abs(normals @ light_dir)  # two-sided: winding does not matter here
    base = np.array(plt.matplotlib.colors.to_rgb(color))
    facecolors = np.clip(base[None] * shade[:, None], 0, 1)
    coll = Poly3DCollection(tris, facecolors=facecolors, edgecolors="none", alpha=alpha)
    ax.add_collection3d(coll)


def plot_hand_views(
    joints: Any,
    vertices: Any = None,
    faces: Any = None,
    parents: Sequence[int] = tuple(HAND_PARENTS),
    views: Sequence[tuple[float, float]] = ((20, -60), (80, -90)),
    title: str | None = None,
    mesh_alpha: float = 0.35,
    size: float = 3.6,
    view_titles: Sequence[str] | None = None,
    unit: str = "mm",
) -> Figure:
    """One row of 3D views of a posed model: mesh (if given) with its skeleton on top.

    ``joints (J, 3)``, ``vertices (V, 3)``, ``faces (F, 3)`` in metres, drawn in ``unit``; ``views`` are
    (elevation, azimuth) pairs, ``view_titles`` their names (e.g. "seen from the camera").
    """
    fig = plt.figure(figsize=(size * len(views), size + 0.4))
    pts = _display(_np(vertices if vertices is not None else joints), unit)
    for k, (elev, azim) in enumerate(views):
        ax = fig.add_subplot(1, len(views), k + 1, projection="3d")
        if vertices is not None:
            draw_mesh_3d(ax, vertices, faces, alpha=mesh_alpha, unit=unit)
        draw_skeleton_3d(ax, joints, parents, unit=unit)
        _equal_3d(ax, pts)
        ax.view_init(elev=elev, azim=azim)
        _label_3d(ax, unit)
        if view_titles is not None:
            ax.set_title(view_titles[k], fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def plot_mesh_grid(
    vertices: Sequence[Any],
    faces: Any,
    joints: Sequence[Any] | None = None,
    parents: Sequence[int] = tuple(HAND_PARENTS),
    titles: Sequence[str] | None = None,
    view: tuple[float, float] = (10, -80),
    ncols: int = 3,
    mesh_alpha: float = 0.9,
    size: float = 3.2,
    zoom: float = 1.0,
    views: Sequence[tuple[float, float]] | None = None,
    view_labels: Sequence[str] | None = None,
) -> Figure:
    """A grid of posed meshes, one 3D panel each: ``vertices`` a list of ``(V, 3)`` in the camera frame
    (metres, y down: :func:`_display` turns it upright), ``faces (F, 3)``, optional ``joints`` a list of
    ``(J, 3)`` drawn on top, all on one common scale; ``zoom`` > 1 enlarges every panel's content alike
    (e.g. for bodies, whose common cube leaves wide margins).

    ``views``: several ``(elevation, azimuth)`` pairs draw every mesh once per view, one row per view and
    one column per mesh (``ncols`` is then ignored); ``view_labels`` names the rows. In the plot frame
    (x, depth, up), azimuth -90 looks from the camera and azimuth 0 from the side, depth across the panel."""
    n = len(vertices)
    rows_of_views = list(views) if views is not None else None
    if rows_of_views is None:
        nrows, cols = (n + ncols - 1) // ncols, min(n, ncols)
    else:
        nrows, cols = len(rows_of_views), n
    fig = plt.figure(figsize=(size * cols, size * nrows))
    allpts = np.concatenate([_display(_np(v), "mm") for v in vertices])
    lo, hi = allpts.min(0), allpts.max(0)
    half = (hi - lo).max() / 2 * 1.05
    panels = ([(k, k, view) for k in range(n)] if rows_of_views is None else
              [(r * n + k, k, vw) for r, vw in enumerate(rows_of_views) for k in range(n)])
    for slot, k, vw in panels:
        v = vertices[k]
        ax = fig.add_subplot(nrows, cols, slot + 1, projection="3d")
        draw_mesh_3d(ax, v, faces, alpha=mesh_alpha)
        if joints is not None:
            draw_skeleton_3d(ax, joints[k], parents, linewidth=1.5)
        c = _display(_np(v), "mm").mean(0)
        for setter, ck in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), c, strict=True):
            setter(ck - half, ck + half)
        ax.set_box_aspect((1, 1, 1), zoom=zoom)
        ax.view_init(elev=vw[0], azim=vw[1])
        ax.set_axis_off()
        if titles is not None and (rows_of_views is None or slot < cols):
            ax.set_title(titles[k], fontsize=9)
        if view_labels is not None and rows_of_views is not None and k == 0:
            ax.text2D(-0.05, 0.5, view_labels[slot // n], transform=ax.transAxes, rotation=90,
                      ha="center", va="center", fontsize=9)
    return fig


def plot_poses_2d_3d(
    uvs: Sequence[Any],
    joints3d: Sequence[Any],
    labels: Sequence[str],
    visible: Any = None,
    parents: Sequence[int] = tuple(HAND_PARENTS),
    styles: Sequence[str] = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a"),
    view: tuple[float, float] = (15, -75),
    title: str | None = None,
    meshes: Sequence[Any] | None = None,
    faces: Any = None,
    crop: float | None = None,
    unit: str = "mm",
) -> Figure:
    """Several poses side by side: their 2D keypoints overlaid in one panel, one 3D panel each.

    ``uvs``: list of ``(J, 2)`` projections (px); ``joints3d``: list of ``(J, 3)`` camera-frame joints
    (metres, drawn in ``unit``); one colour per pose. ``visible (J,)`` marks occluded keypoints as crosses
    in 2D (visible ones as dots; both shapes are in the legend). ``meshes`` (list of ``(V, 3)``) with
    ``faces (F, 3)`` are drawn translucently under the 3D skeletons; ``crop`` (pixels) frames the 2D panel
    as a ``crop x crop`` image.
    """
    n = len(uvs)
    if len(joints3d) != n or len(labels) != n:
        raise ValueError(f"uvs, joints3d and labels must have one entry per pose, got {n}, {len(joints3d)} and "
                         f"{len(labels)}")
    fig = plt.figure(figsize=(3.8 * (n + 1), 3.8))
    ax2 = fig.add_subplot(1, n + 1, 1)
    for k, (uv, lab) in enumerate(zip(uvs, labels, strict=True)):
        c = styles[k % len(styles)]
        draw_skeleton_2d(ax2, uv, parents, colors=[c] * len(_np(uv)), visible=visible, alpha=0.8,
                         linestyle="-" if k == 0 else "--", label=lab)
    handles = ax2.get_legend_handles_labels()[0]
    if visible is not None and not _np(visible).astype(bool).all():
        handles += visibility_handles(color="#777777")
    ax2.legend(handles=handles, fontsize=7, loc="best")
    ax2.set_title("2D projections (overlaid)", fontsize=9)
    ax2.set_xlabel("u (px)", fontsize=8)
    ax2.set_ylabel("v (px, down)", fontsize=8)
    ax2.tick_params(labelsize=7)
    if crop is not None:
        ax2.set_xlim(0, crop)
        ax2.set_ylim(crop, 0)
    allpts = np.concatenate([_display(_np(j), unit) for j in joints3d])
    for k, (j3, lab) in enumerate(zip(joints3d, labels, strict=True)):
        ax = fig.add_subplot(1, n + 1, k + 2, projection="3d")
        c = styles[k % len(styles)]
        if meshes is not None:
            draw_mesh_3d(ax, meshes[k], faces, alpha=0.25, unit=unit)
        draw_skeleton_3d(ax, j3, parents, colors=[c] * len(_np(j3)), unit=unit)
        _equal_3d(ax, allpts)
        ax.view_init(elev=view[0], azim=view[1])
        ax.set_title(f"3D: {lab}", fontsize=9)
        _label_3d(ax, unit)
    if title:
        fig.suptitle(title)
    return fig


def plotly_mesh(
    vertices: Any,
    faces: Any,
    joints: Any = None,
    parents: Sequence[int] = tuple(HAND_PARENTS),
    title: str | None = None,
    color: str = "#e8c4a8",
    unit: str = "mm",
) -> Any:
    """Interactive plotly figure: the mesh ``vertices (V, 3)``, ``faces (F, 3)`` and optionally the
    skeleton ``joints (J, 3)`` (metres), shown in ``unit`` in the same (x, depth, up) frame as the
    matplotlib views. No fixed width: it fills its page."""
    import plotly.graph_objects as go

    v = _display(_np(vertices), unit)
    f = np.asarray(faces, dtype=np.int64)
    data = [go.Mesh3d(x=v[:, 0], y=v[:, 1], z=v[:, 2], i=f[:, 0], j=f[:, 1], k=f[:, 2], color=color,
                      opacity=0.6, flatshading=False, name="mesh",
                      lighting=dict(ambient=0.5, diffuse=0.7, specular=0.1))]
    if joints is not None:
        xyz = _display(_np(joints), unit)
        colors = hand_colors() if len(xyz) == 21 else ["#333333"] * len(xyz)
        xs, ys, zs = [], [], []
        for j, p in enumerate(parents):
            if p >= 0:
                xs += [xyz[p, 0], xyz[j, 0], None]
                ys += [xyz[p, 1], xyz[j, 1], None]
                zs += [xyz[p, 2], xyz[j, 2], None]
        data.append(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", line=dict(color="#333333", width=5),
                                 name="bones"))
        data.append(go.Scatter3d(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], mode="markers",
                                 marker=dict(size=4, color=colors), name="joints"))
    fig = go.Figure(data=data)
    fig.update_layout(title=title, scene=dict(aspectmode="data", xaxis_title=f"x ({unit})",
                                              yaxis_title=f"depth z ({unit})", zaxis_title=f"up, −y ({unit})",
                                              camera=dict(eye=dict(x=1.7, y=1.7, z=1.1))),
                      autosize=True, height=640, margin=dict(l=0, r=0, t=40, b=0))
    return fig


def _occluder_outline(item: dict) -> np.ndarray | None:
    """The 2D outline (px of the 256 crop) of an item's occluding box, from its ``occluder`` record and
    ``camera``; None when the item has no occluder."""
    if "occluder" not in item or "camera" not in item:
        return None
    rec, cam = _np(item["occluder"]).astype(np.float64), _np(item["camera"]).astype(np.float64)
    half = rec[13:16]
    if not (half > 0).all():
        return None
    from scipy.spatial import ConvexHull

    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * half
    xyz = rec[1:4] + corners @ rec[4:13].reshape(3, 3).T
    px = (np.exp(cam[0]) * xyz[:, :2] + cam[1:3] + 1.0) * 128.0
    return px[ConvexHull(px).vertices]


def plot_body_benchmark(items: Sequence[dict], titles: Sequence[str] | None = None, ncols: int = 4) -> Figure:
    """Synthetic ambiguous bodies in their 256 px crops: each item's 17 keypoints and bones (the house
    encoding: visible joints blue dots, hidden ones red crosses), the crop border as a grey frame and the
    keypoints outside it drawn where they would be, and an occluding box as a grey shape. ``items``: dicts
    with ``keypoints_2d_px (17, 2)`` and ``visible (17,)`` (and, optionally, ``object_occluded`` /
    ``self_occluded`` / ``outside`` (17,) bool, which the default titles count; the causes overlap, so each
    hidden joint is counted once, by the first of crop, box, self-occlusion that hides it)."""
    from mhe.body.keypoints import BODY_PARENTS

    n = len(items)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.9 * nrows + 0.6), squeeze=False,
                             layout="constrained")
    for k, ax in enumerate(axes.ravel()):
        if k >= n:
            ax.axis("off")
            continue
        item = items[k]
        uv, vis = _np(item["keypoints_2d_px"]), _np(item["visible"]).astype(bool)
        box = _occluder_outline(item)
        if box is not None:
            ax.add_patch(plt.Polygon(box, closed=True, fc="#9e9e9e", ec="#616161", alpha=0.45, lw=1.0, zorder=1))
        for j, p in enumerate(BODY_PARENTS):
            if p >= 0:
                ax.plot(uv[[p, j], 0], uv[[p, j], 1], color=GROUND_TRUTH_COLOR if vis[j] and vis[p] else OCCLUDED_COLOR,
                        lw=1.4, alpha=0.8, solid_capstyle="round")
        draw_joints(ax, uv, vis, size=16)
        ax.add_patch(plt.Rectangle((0, 0), 256, 256, fill=False, ec="#999999", lw=1.2, ls="--"))
        pts = np.concatenate([uv, [[0, 0], [256, 256]]])
        lo, hi = pts.min(0) - 10, pts.max(0) + 10
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(hi[1], lo[1])
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            title = titles[k]
        else:
            # each hidden joint counted once, by its first cause: the crop, then a box, then the body itself
            hidden = ~_np(item["visible"]).astype(bool)
            left, counts = hidden.copy(), []
            for key, word in (("outside", "crop"), ("object_occluded", "box"), ("self_occluded", "self")):
                if key in item:
                    mine = left & _np(item[key]).astype(bool)
                    left &= ~mine
                    if mine.any():
                        counts.append(f"{word} {int(mine.sum())}")
            title = ((f"{int(hidden.sum())} of {len(hidden)} hidden:\n" + ", ".join(counts)) if hidden.any()
                     else "all visible")
        ax.set_title(title, fontsize=8)
    from matplotlib.patches import Patch

    fig.legend(handles=[*visibility_handles(), Line2D([], [], color="#999999", ls="--", label="crop border"),
                        Patch(fc="#9e9e9e", ec="#616161", alpha=0.45, label="occluding box")],
               loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    return fig
