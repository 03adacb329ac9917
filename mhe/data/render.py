"""Orthographic rendering for the synthetic hands: convex occluders, a z-buffer rasteriser, image crops.

The camera is the package's orthographic one: viewing rays are parallel to +z (OpenCV: z is depth,
larger is farther), so a point is hidden exactly when something lies on the segment from it
towards -z. Occluders are convex solids in camera coordinates -- a sphere, an oriented box, or an
oriented cylinder (axis along its local x) -- and :meth:`Occluder.entry_depth` gives, per viewing
ray, the depth where the ray enters the solid (slab and quadratic intersections in the solid's
frame). :func:`rasterize` is a small vectorised z-buffer for triangle meshes (per-triangle pixel
windows, ``scatter_reduce`` with ``amin``), used both for the self-occlusion test and for the
optional image crop that :func:`render_crop` shades (Lambert for the hand, depth-gradient normals for
the occluder). :func:`rasterize_batch` and :func:`depth_at_pixels` do the same z-buffer for a batch of
meshes that share their faces (the whole maps, or only the pixels asked for), and
:func:`depth_in_windows` in a few small square windows per mesh, all with the arithmetic of
:func:`rasterize`, so that they agree with it exactly. Pixel ``(row r, column c)`` of an N x N crop
has its centre at crop coordinates ``((c + 0.5) / N * 2 - 1, (r + 0.5) / N * 2 - 1)``, the convention
of :func:`mhe.geometry.crop_to_pixels`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor

__all__ = ["OCCLUDER_KINDS", "Occluder", "depth_at_pixels", "depth_in_windows", "pixel_centres", "rasterize",
           "rasterize_batch", "render_crop"]

OCCLUDER_KINDS = ("sphere", "box", "cylinder")


@dataclass
class Occluder:
    """A convex solid in camera coordinates (metres, root-relative).

    Attributes:
        kind: "sphere", "box" or "cylinder".
        centre: (3,) position.
        rotation: (3, 3) solid frame -> camera frame (columns are the solid's axes).
        half_size: (3,) sphere (r, r, r); box half extents; cylinder (half length along local x, r, r).
    """

    kind: str
    centre: Tensor
    rotation: Tensor
    half_size: Tensor

    def __post_init__(self) -> None:
        if self.kind not in OCCLUDER_KINDS:
            raise ValueError(f"occluder kind must be one of {OCCLUDER_KINDS}, got {self.kind!r}")

    def scaled(self, factor: float) -> Occluder:
        """The same solid grown by ``factor`` about its centre."""
        return Occluder(self.kind, self.centre, self.rotation, self.half_size * factor)

    def to_vector(self) -> Tensor:
        """(16,) = kind index, centre (3), rotation (9, row-major), half_size (3): a collatable record."""
        kind = torch.tensor([float(OCCLUDER_KINDS.index(self.kind))], dtype=self.centre.dtype)
        return torch.cat([kind, self.centre, self.rotation.reshape(9), self.half_size])

    @staticmethod
    def from_vector(v: Tensor) -> Occluder:
        """Inverse of :meth:`to_vector` for v (16,)."""
        return Occluder(OCCLUDER_KINDS[int(round(float(v[0])))], v[1:4], v[4:13].reshape(3, 3), v[13:16])

    def depth_interval(self, xy: Tensor) -> tuple[Tensor, Tensor]:
        """Where the viewing rays through xy (N, 2) are inside the solid: (enter (N,), leave (N,)) depths.

        A ray that misses gets enter = +inf and leave = -inf.
        """
        xy = xy.to(self.centre.dtype)
        origin = torch.cat([xy, torch.zeros_like(xy[:, :1])], dim=1) - self.centre
        a = origin @ self.rotation  # ray origin in the solid frame, (N, 3)
        b = self.rotation[2]  # the ray direction +z in the solid frame, (3,)
        inf = torch.full_like(a[:, 0], float("inf"))
        lo, hi = -inf, inf
        if self.kind == "sphere":
            lo, hi = _quadratic_interval(a, b, self.half_size[0])
        else:
            slab_axes = range(3) if self.kind == "box" else range(1)
            for i in slab_axes:
                l_i, h_i = _slab_interval(a[:, i], b[i], self.half_size[i])
                lo, hi = torch.maximum(lo, l_i), torch.minimum(hi, h_i)
            if self.kind == "cylinder":
                l_r, h_r = _quadratic_interval(a[:, 1:], b[1:], self.half_size[1])
                lo, hi = torch.maximum(lo, l_r), torch.minimum(hi, h_r)
        hit = lo <= hi
        return torch.where(hit, lo, inf), torch.where(hit, hi, -inf)

    def entry_depth(self, xy: Tensor) -> Tensor:
        """Depth (N,) where the ray through xy (N, 2) enters the solid (+inf where it misses)."""
        return self.depth_interval(xy)[0]

    def hides(self, points: Tensor) -> Tensor:
        """points (N, 3) -> (N,) bool: the solid lies on the ray from the point towards the camera."""
        enter, _ = self.depth_interval(points[:, :2])
        return enter < points[:, 2].to(enter.dtype)


def _slab_interval(a: Tensor, b: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """Depths z with |a + z b| <= h, for a (N,) and scalars b, h."""
    inf = torch.full_like(a, float("inf"))
    if abs(float(b)) < 1e-12:
        inside = a.abs() <= h
        return torch.where(inside, -inf, inf), torch.where(inside, inf, -inf)
    z1, z2 = (-h - a) / b, (h - a) / b
    return torch.minimum(z1, z2), torch.maximum(z1, z2)


def _quadratic_interval(a: Tensor, b: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
    """Depths z with |a + z b|^2 <= r^2, for a (N, k), b (k,): the roots of a quadratic in z."""
    A = (b * b).sum()
    B = 2 * (a * b).sum(-1)
    C = (a * a).sum(-1) - r * r
    inf = torch.full_like(C, float("inf"))
    if float(A) < 1e-12:  # the ray runs along the axis: inside everywhere or nowhere
        inside = C <= 0
        return torch.where(inside, -inf, inf), torch.where(inside, inf, -inf)
    disc = B * B - 4 * A * C
    root = disc.clamp_min(0).sqrt()
    lo, hi = (-B - root) / (2 * A), (-B + root) / (2 * A)
    hit = disc >= 0
    return torch.where(hit, lo, inf), torch.where(hit, hi, -inf)


def pixel_centres(size: int, dtype: torch.dtype = torch.float64, device: torch.device | None = None) -> Tensor:
    """Crop coordinates of the pixel centres of a size x size crop -> (size, size, 2), [..., 0] = u (column)."""
    c = (torch.arange(size, dtype=dtype, device=device) + 0.5) / size * 2 - 1
    v, u = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([u, v], dim=-1)


def rasterize(uv: Tensor, depth: Tensor, faces: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Z-buffer a triangle mesh: uv (V, 2) crop coordinates, depth (V,), faces (F, 3) -> two (size, size) maps.

    Returns (nearest depth, +inf where empty; index of the visible face, -1 where empty). A pixel is
    covered when its centre lies inside a triangle (either winding); depth is interpolated
    barycentrically. Work is proportional to F times the largest triangle's pixel window.
    """
    dtype = torch.float64
    px = (uv.to(dtype) + 1) * (size / 2) - 0.5  # pixel-index coordinates: centre of pixel i at i
    z = depth.to(dtype)
    faces = faces.long()
    tri, tz = px[faces], z[faces]  # (F, 3, 2), (F, 3)
    lo = tri.min(1).values.ceil().clamp(0, size - 1)
    hi = tri.max(1).values.floor().clamp(0, size - 1)
    extent = (hi - lo + 1).clamp_min(0).max(-1).values  # (F,) window side in pixels
    zbuf = torch.full((size * size,), float("inf"), dtype=dtype, device=uv.device)
    fbuf = torch.full((size * size,), -1, dtype=torch.long, device=uv.device)
    keep = (tri.max(1).values >= 0).all(-1) & (tri.min(1).values <= size - 1).all(-1) & (extent > 0)
    small = keep & (extent <= 8)
    groups = [(small, 8)]
    if (keep & ~small).any():
        groups.append((keep & ~small, int(extent[keep & ~small].max())))
    cands = []
    for mask, k in groups:
        idx = mask.nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        d = torch.arange(k, device=uv.device, dtype=dtype)
        gx = lo[idx, 0, None, None] + d[None, None, :]  # (n, 1, k)
        gy = lo[idx, 1, None, None] + d[None, :, None]  # (n, k, 1)
        gx, gy = torch.broadcast_tensors(gx, gy)
        p = torch.stack([gx, gy], -1).reshape(len(idx), k * k, 2)
        t = tri[idx]
        a, b, c = t[:, 0, None], t[:, 1, None], t[:, 2, None]
        area = _edge(a, b, c)  # (n, 1)
        w0, w1, w2 = _edge(b, c, p), _edge(c, a, p), _edge(a, b, p)
        sign = torch.sign(area)
        inside = (w0 * sign >= 0) & (w1 * sign >= 0) & (w2 * sign >= 0) & (area.abs() > 1e-12)
        inside &= (p[..., 0] <= size - 1) & (p[..., 1] <= size - 1)
        safe = torch.where(area.abs() > 1e-12, area, torch.ones_like(area))
        zc = (w0 * tz[idx, 0, None] + w1 * tz[idx, 1, None] + w2 * tz[idx, 2, None]) / safe
        flat = (p[..., 1] * size + p[..., 0]).long()
        face_id = idx[:, None].expand_as(flat)
        cands.append((flat[inside], zc[inside], face_id[inside]))
    if cands:
        flat = torch.cat([c[0] for c in cands])
        zc = torch.cat([c[1] for c in cands])
        fid = torch.cat([c[2] for c in cands])
        zbuf.scatter_reduce_(0, flat, zc, reduce="amin")
        front = zc == zbuf[flat]
        fbuf[flat[front]] = fid[front]
    return zbuf.reshape(size, size), fbuf.reshape(size, size)


def _edge(a: Tensor, b: Tensor, p: Tensor) -> Tensor:
    """Twice the signed area of (a, b, p): the edge function of edge a -> b at p."""
    return (b[..., 0] - a[..., 0]) * (p[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (p[..., 0] - a[..., 0])


def _pixel_coords(uv: Tensor, size: int) -> Tensor:
    """Crop coordinates uv (..., 2) -> pixel-index coordinates (..., 2) float64, as :func:`rasterize`
    computes them (centre of pixel i at i; exact for float32 uv)."""
    return (uv.to(torch.float64) + 1) * (size / 2) - 0.5


def _face_windows(px: Tensor, faces: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """The pixel window :func:`rasterize` tests for each face of B meshes: px (B, V, 2) pixel-index
    coordinates, faces (F, 3) -> first and last pixel (column, row) of each window (B, F, 2) int64 each,
    clamped to the crop (empty along an axis where last < first), and whether the face is drawn (B, F).

    Integer arithmetic on per-vertex floors and ceilings: ceil(min) = min(ceil) and x >= 0 iff
    floor(x) >= 0, so the windows equal rasterize's float ones.
    """
    big = float(4 * size + 4)  # far enough outside the crop for every test below
    q = px.clamp(-big, big)
    up, down = q.ceil().to(torch.int32), q.floor().to(torch.int32)
    faces = faces.to(px.device)
    corner = [faces[:, k] for k in range(3)]
    cmin = torch.minimum(torch.minimum(up.index_select(1, corner[0]), up.index_select(1, corner[1])),
                         up.index_select(1, corner[2]))
    fmax = torch.maximum(torch.maximum(down.index_select(1, corner[0]), down.index_select(1, corner[1])),
                         down.index_select(1, corner[2]))
    lo, hi = cmin.clamp(0, size - 1), fmax.clamp(0, size - 1)
    width = (hi - lo + 1).clamp_min(0)
    keep = ((fmax[..., 0] >= 0) & (fmax[..., 1] >= 0) & (cmin[..., 0] <= size - 1) & (cmin[..., 1] <= size - 1)
            & ((width[..., 0] > 0) | (width[..., 1] > 0)))
    return lo.long(), hi.long(), keep


def _triangles(px: Tensor, depth: Tensor, faces: Tensor, b: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
    """Faces f (N,) of meshes b (N,) (px (B, V, 2) pixel-index coordinates, depth (B, V)) -> their
    corners (N, 3, 2) and corner depths (N, 3), float64."""
    V = px.shape[1]
    vertex = (b[:, None] * V + faces.to(px.device)[f]).reshape(-1)
    tri = px.reshape(-1, 2).index_select(0, vertex).reshape(-1, 3, 2)
    return tri, depth.to(torch.float64).reshape(-1).index_select(0, vertex).reshape(-1, 3)


def _cover(tri: Tensor, tz: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    """Whether pixel centres p (N, K, 2) lie in triangles tri (N, 3, 2) (pixel-index coordinates, either
    winding) and the depth interpolated there from the corner depths tz (N, 3): (inside (N, K) bool,
    depth (N, K) float64), operation by operation as :func:`rasterize` computes them."""
    a, b, c = tri[:, 0, None], tri[:, 1, None], tri[:, 2, None]
    area = _edge(a, b, c)  # (N, 1)
    w0, w1, w2 = _edge(b, c, p), _edge(c, a, p), _edge(a, b, p)
    sign = torch.sign(area)
    inside = (w0 * sign >= 0) & (w1 * sign >= 0) & (w2 * sign >= 0) & (area.abs() > 1e-12)
    safe = torch.where(area.abs() > 1e-12, area, torch.ones_like(area))
    z = (w0 * tz[:, 0, None] + w1 * tz[:, 1, None] + w2 * tz[:, 2, None]) / safe
    return inside, z


def rasterize_batch(uv: Tensor, depth: Tensor, faces: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """:func:`rasterize` for B meshes with shared faces: uv (B, V, 2), depth (B, V), faces (F, 3) -> two
    (B, size, size) maps (nearest depth, +inf where empty; visible face, -1 where empty).

    Equal to ``rasterize`` mesh by mesh: the same coverage and depth arithmetic, and where two faces
    are exactly equally near, the face ``rasterize`` writes last (one of its larger-window group,
    then the higher face index) wins. Each face tests only the pixels of its own window (rasterize's
    larger grids add pixels outside the triangle's bounding box, which no rounding can cover), so
    work grows with the covered area.
    """
    B, F = uv.shape[0], faces.shape[0]
    px = _pixel_coords(uv, size)
    lo, hi, keep = _face_windows(px, faces, size)
    width = (hi - lo + 1).clamp_min(0)  # (B, F, 2) window size in columns, rows
    extent = width.max(-1).values
    zbuf = torch.full((B * size * size,), float("inf"), dtype=torch.float64, device=uv.device)
    fbuf = torch.full((B * size * size,), -1, dtype=torch.long, device=uv.device)
    flats, depths, ranks = [], [], []
    # Faces grouped by window size, so that a group's k x k grid of pixels is not much larger than its windows.
    bounds = [0, 1, 2, 3, 4, 6, 8, 16, int(extent.max()) if B * F else 0]
    for k_lo, k in pairwise(bounds):
        if k <= k_lo:
            continue
        b, f = (keep & (extent > k_lo) & (extent <= k)).nonzero(as_tuple=True)
        if b.numel() == 0:
            continue
        d = torch.arange(k, device=uv.device)
        dx, dy = (t.reshape(1, k * k) for t in torch.broadcast_tensors(d[None, :], d[:, None]))
        first, w = lo[b, f], width[b, f]  # (n, 2)
        p = torch.stack([first[:, :1] + dx, first[:, 1:] + dy], -1)  # (n, k * k, 2) pixels of each window's grid
        tri, tz = _triangles(px, depth, faces, b, f)
        inside, z = _cover(tri, tz, p.to(torch.float64))
        inside &= (dx < w[:, :1]) & (dy < w[:, 1:])
        n, m = inside.nonzero(as_tuple=True)
        flats.append(b[n] * (size * size) + p[n, m, 1] * size + p[n, m, 0])
        depths.append(z[n, m])
        # rasterize draws the faces with windows up to 8 pixels first, then the others, each by index.
        ranks.append((f + F * (extent[b, f] > 8))[n])
    if flats:
        flat, z, rank = torch.cat(flats), torch.cat(depths), torch.cat(ranks)
        zbuf.scatter_reduce_(0, flat, z, reduce="amin")
        front = z == zbuf[flat]
        best = torch.full_like(fbuf, -1).scatter_reduce_(0, flat[front], rank[front], reduce="amax")
        fbuf = torch.where(best >= 0, best % F, fbuf)
    return zbuf.reshape(B, size, size), fbuf.reshape(B, size, size)


def depth_at_pixels(uv: Tensor, depth: Tensor, faces: Tensor, size: int, pixels: Tensor) -> Tensor:
    """The :func:`rasterize` depth map of B meshes with shared faces, at a few pixels only.

    uv (B, V, 2) crop coordinates, depth (B, V), faces (F, 3), pixels (B, J, 2) integer (column, row)
    -> (B, J) float64: ``rasterize(uv[b], depth[b], faces, size)[0][row, column]`` (+inf where no face
    covers the pixel or the pixel lies outside the crop), without the rest of the map. A summed-area
    table of the asked pixels finds the few faces whose windows hold one, so work is ~B x F.
    """
    B, J = pixels.shape[:2]
    px = _pixel_coords(uv, size)
    lo, hi, keep = _face_windows(px, faces, size)
    pixels = pixels.long().to(uv.device)
    col, row = pixels[..., 0], pixels[..., 1]
    inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)
    # table[b, r, c] = number of asked pixels of mesh b in rows < r and columns < c
    side = size + 1
    table = torch.zeros(B, side * side, dtype=torch.int16, device=uv.device)
    slot = ((row + 1) * side + col + 1).clamp(0, side * side - 1)
    table.scatter_add_(1, slot, inside.to(torch.int16))
    table = table.reshape(B, side, side).cumsum(2, dtype=torch.int16).cumsum(1, dtype=torch.int16)
    table = table.reshape(B, side * side)

    def at(r: Tensor, c: Tensor) -> Tensor:
        return table.gather(1, (r * side + c).reshape(B, -1)).reshape(r.shape)

    x0, y0, x1, y1 = lo[..., 0], lo[..., 1], hi[..., 0] + 1, hi[..., 1] + 1
    count = at(y1, x1) - at(y0, x1) - at(y1, x0) + at(y0, x0)
    F = lo.shape[1]
    face = (keep & (x1 > x0) & (y1 > y0) & (count > 0)).flatten().nonzero().squeeze(1)  # b * F + f
    # The asked pixels in each such window (the only faces rasterize tests there).
    b = face // F
    first, last = lo.reshape(-1, 2).index_select(0, face), hi.reshape(-1, 2).index_select(0, face)  # (N, 2)
    c_, r_ = col.index_select(0, b), row.index_select(0, b)  # (N, J)
    hit = ((first[:, :1] <= c_) & (c_ <= last[:, :1]) & (first[:, 1:] <= r_) & (r_ <= last[:, 1:])
           & inside.index_select(0, b))
    n, j = hit.nonzero(as_tuple=True)
    b, f = b[n], face[n] % F
    tri, tz = _triangles(px, depth, faces, b, f)
    covered, z = _cover(tri, tz, pixels[b, j, None].to(torch.float64))
    covered, z = covered[:, 0], z[:, 0]
    out = torch.full((B * J,), float("inf"), dtype=torch.float64, device=uv.device)
    out.scatter_reduce_(0, (b * J + j)[covered], z[covered], reduce="amin")
    return out.reshape(B, J)


def depth_in_windows(uv: Tensor, depth: Tensor, faces: Tensor, size: int, corners: Tensor, window: int) -> Tensor:
    """The :func:`rasterize` depth map of B meshes with shared faces, in J small square windows per mesh.

    uv (B, V, 2) crop coordinates, depth (B, V), faces (F, 3), corners (B, J, 2) integer (column, row)
    of each window's first pixel, ``window`` its side w -> (B, J, w, w) float64 with ``[b, j, dy, dx]``
    = ``rasterize(uv[b], depth[b], faces, size)[0][row + dy, column + dx]`` (+inf where no face covers
    the pixel or the pixel lies outside the crop). Each face is tested only at the pixels its own
    window shares with a window (so work grows with the windows' area, not the crop's), with the
    coverage and depth arithmetic of :func:`rasterize`; the result does not depend on how many meshes
    or windows are asked at once.
    """
    B, J = corners.shape[:2]
    F, w = faces.shape[0], int(window)
    if w < 1:
        raise ValueError(f"window must be a positive number of pixels, got {window}")
    px = _pixel_coords(uv, size)
    lo, hi, keep = _face_windows(px, faces, size)  # (B, F, 2) each, (B, F)
    corners = corners.long().to(uv.device)
    out = torch.full((B * J * w * w,), float("inf"), dtype=torch.float64, device=uv.device)
    bounds = [k for k in (0, 1, 2, 3, 4, 6) if k < w] + [w]
    step = max(1, (1 << 21) // max(1, J * F))  # meshes per block: (block, J, F) pairs at a time
    for start in range(0, B, step):
        sl = slice(start, start + step)
        first = torch.maximum(lo[sl, None], corners[sl, :, None])  # (b, J, F, 2) window of face and box
        last = torch.minimum(hi[sl, None], corners[sl, :, None] + (w - 1))
        width = last - first + 1
        b, j, f = (keep[sl, None] & (width > 0).all(-1)).nonzero(as_tuple=True)
        if b.numel() == 0:
            continue
        first, width = first[b, j, f], width[b, j, f]  # (N, 2)
        b = b + start
        extent = width.max(-1).values
        tri, tz = _triangles(px, depth, faces, b, f)
        for k_lo, k in pairwise(bounds):  # grouped by size, so that each k x k grid is tight
            sel = ((extent > k_lo) & (extent <= k)).nonzero().squeeze(1)
            if sel.numel() == 0:
                continue
            d = torch.arange(k, device=uv.device)
            dx, dy = (t.reshape(1, k * k) for t in torch.broadcast_tensors(d[None, :], d[:, None]))
            p = torch.stack([first[sel, :1] + dx, first[sel, 1:] + dy], -1)  # (n, k * k, 2)
            inside, z = _cover(tri[sel], tz[sel], p.to(torch.float64))
            inside &= (dx < width[sel, :1]) & (dy < width[sel, 1:])
            n, m = inside.nonzero(as_tuple=True)
            bn, jn = b[sel][n], j[sel][n]
            corner = corners[bn, jn]
            slot = ((bn * J + jn) * w + (p[n, m, 1] - corner[:, 1])) * w + (p[n, m, 0] - corner[:, 0])
            out.scatter_reduce_(0, slot, z[n, m], reduce="amin")
    return out.reshape(B, J, w, w)


def render_crop(
    vertices: Tensor,
    faces: Tensor,
    log_scale: float,
    trans: Tensor,
    occluder: Occluder | None,
    size: int,
    skin: Tensor,
    occluder_color: Tensor,
    background: Tensor,
    raster: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Render the hand mesh and the occluder with depth order into an image crop.

    vertices (V, 3) camera frame (metres, root-relative), faces (F, 3), the orthographic camera
    (log_scale, trans (2,)), colours (3,) in [0, 1] -> image (3, size, size) in [0, 1]. ``raster``:
    the mesh's :func:`rasterize` maps at this size, when already computed.
    """
    dtype = torch.float64
    s = float(torch.exp(torch.as_tensor(log_scale, dtype=dtype)))
    trans = trans.to(dtype)
    if raster is None:
        raster = rasterize(s * vertices[:, :2].to(dtype) + trans, vertices[:, 2], faces, size)
    zbuf, fbuf = raster
    image = background.to(dtype)[:, None, None].expand(3, size, size).clone()
    hand = fbuf >= 0
    if hand.any():
        v = vertices.to(dtype)
        tri = v[faces.long()]
        normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        # Lambert with a light at the camera; faces are lit from either side (the mesh may be open).
        shade = 0.3 + 0.7 * normal[fbuf[hand], 2].abs()
        image[:, hand] = skin.to(dtype)[:, None] * shade[None]
    if occluder is not None:
        xy = (pixel_centres(size, dtype, vertices.device).reshape(-1, 2) - trans) / s
        enter = occluder.entry_depth(xy).reshape(size, size)
        front = torch.isfinite(enter) & (enter < zbuf)
        if front.any():
            # Normals from the depth map's gradient (in pixels -> metres), lit from the camera.
            step = 2.0 / size / s
            filled = torch.where(torch.isfinite(enter), enter, enter[torch.isfinite(enter)].max())
            gy, gx = torch.gradient(filled, spacing=step)
            shade = 0.35 + 0.65 / torch.sqrt(1 + gx.clamp(-20, 20) ** 2 + gy.clamp(-20, 20) ** 2)
            image[:, front] = occluder_color.to(dtype)[:, None] * shade[front][None]
    return image.clamp(0, 1).float()
