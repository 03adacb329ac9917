"""The synthetic hands' visibility rules: which joints the hand itself or the object hides.

Two rules (``SyntheticHands(visibility=...)``, :data:`VISIBILITY_RULES`), both on many items at once:

* ``"depth"`` (:func:`depth_rule`): a joint is self-occluded when the hand's own rasterised surface
  (:func:`mhe.data.render.depth_at_pixels`, the z-buffer at the joint's pixel of an n px raster) lies
  more than a tolerance in front of it; the object hides a joint when it lies on the joint's viewing ray
  (:func:`mhe.data.occluders.records_hide`, decided by the generator).
* ``"official"`` (:func:`official_rule`): HO3D's rule (:func:`mhe.data.ho3d.official_visibility`) on the
  rendered hand-and-object depth map and hand mask, in pixels of the 256 px crop: a joint is visible when
  some pixel of the :data:`OFFICIAL_WINDOW` x :data:`OFFICIAL_WINDOW` window around its (truncated) pixel
  is hand -- covered by the mesh, and the mesh there in front of the object -- and the joint lies less
  than :data:`OFFICIAL_TOLERANCE` behind the depth map there. Only the window pixels are rendered
  (:func:`mhe.data.render.depth_in_windows`), and the rule is evaluated on them directly.

Joints outside the crop are invisible under both rules (``outside``, :func:`mhe.data.items.keypoint_items`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mhe.data.items import CROP_PIXELS, exact_exp
from mhe.data.occluders import has_object, record_entry_depths
from mhe.data.render import depth_at_pixels, depth_in_windows
from mhe.geometry import crop_to_pixels

__all__ = ["OFFICIAL_CROP", "OFFICIAL_TOLERANCE", "OFFICIAL_WINDOW", "VISIBILITY_RULES", "depth_rule",
           "official_rule"]

VISIBILITY_RULES = ("depth", "official")  # SyntheticHands(visibility=...): the first is the default
# visibility="official": HO3D's rule (mhe.data.ho3d.official_visibility) in pixels of the 256 px crop.
OFFICIAL_CROP = CROP_PIXELS
OFFICIAL_WINDOW = 9
OFFICIAL_TOLERANCE = 0.040  # metres a joint may lie behind the depth map


def depth_rule(obs: Tensor, z: Tensor, uv_verts: Tensor, vz: Tensor, faces: Tensor, raster: int,
               tolerance: float) -> Tensor:
    """Self-occlusion by the ``"depth"`` rule -> (B, J) bool: joints more than ``tolerance`` metres behind
    the hand's surface at their pixel of a ``raster`` px z-buffer (joints outside the raster: False).

    obs (B, J, 2) crop units and z (B, J) the joints' crop coordinates and depths, uv_verts (B, V, 2) and
    vz (B, V) the vertices', faces (F, 3) shared.
    """
    cols = ((obs[..., 0] + 1) / 2 * raster).floor().long()
    rows = ((obs[..., 1] + 1) / 2 * raster).floor().long()
    inside = (cols >= 0) & (cols < raster) & (rows >= 0) & (rows < raster)
    front = depth_at_pixels(uv_verts, vz, faces, raster, torch.stack([cols, rows], dim=-1))
    return inside & (front < z.double() - tolerance)


def _window_corners(px: Tensor) -> Tensor:
    """First pixel (column, row) (..., 2) long of the official window around crop pixels px (..., 2):
    the truncated projection (the official code's int()) less half the window."""
    return torch.trunc(px).long() - OFFICIAL_WINDOW // 2


def _window_pixels(corners: Tensor) -> tuple[Tensor, Tensor]:
    """Columns and rows (..., w, w) long of the windows whose first pixels are corners (..., 2)."""
    d = torch.arange(OFFICIAL_WINDOW)
    cols, rows = corners[..., 0, None, None] + d[None, :], corners[..., 1, None, None] + d[:, None]
    return torch.broadcast_tensors(cols, rows)


def _window_rays(corners: Tensor, camera: Tensor) -> Tensor:
    """Camera-frame (x, y) (..., J, w, w, 2) float64 of the viewing rays through the centres of the
    window pixels, for windows corners (..., J, 2) in the 256 px crop of cameras (..., 3)."""
    cols, rows = _window_pixels(corners)
    u = (cols.double() + 0.5) / OFFICIAL_CROP * 2 - 1  # pixel centres, as mhe.data.render.pixel_centres
    v = (rows.double() + 0.5) / OFFICIAL_CROP * 2 - 1
    s = exact_exp(camera[..., 0])[..., None, None, None]
    tx = camera[..., 1].double()[..., None, None, None]
    ty = camera[..., 2].double()[..., None, None, None]
    return torch.stack([(u - tx) / s, (v - ty) / s], dim=-1)


def official_rule(
    obs: Tensor, z: Tensor, uv_verts: Tensor, vz: Tensor, faces: Tensor, camera: Tensor, records: Tensor | None
) -> tuple[Tensor, Tensor]:
    """HO3D's rule for B items -> (object_occluded, self_occluded) (B, J) bool, disjoint.

    ``self_occluded``: the rule fails on the hand alone (no object rendered); ``object_occluded``: it passes
    on the hand alone but fails with the object. obs (B, J, 2) crop units, z (B, J) joint depths, uv_verts
    (B, V, 2) and vz (B, V) the vertices' crop coordinates and depths, faces (F, 3), camera (B, 3), records
    (B, 16) float32 occluder records (zeros: none) or None for no objects at all.
    """
    B = obs.shape[0]
    corners = _window_corners(crop_to_pixels(obs, OFFICIAL_CROP))  # (B, J, 2)
    hand = depth_in_windows(uv_verts, vz, faces, OFFICIAL_CROP, corners, OFFICIAL_WINDOW)  # (B, J, w, w)
    if records is None:
        solid = torch.full_like(hand, float("inf"))
    else:
        rays = _window_rays(corners, camera).reshape(B, -1, 2)
        solid = record_entry_depths(records, rays).reshape(hand.shape)
        solid = torch.where(has_object(records)[:, None, None, None], solid, torch.full_like(solid, float("inf")))
    cols, rows = _window_pixels(corners)
    inside = (cols >= 0) & (cols < OFFICIAL_CROP) & (rows >= 0) & (rows < OFFICIAL_CROP)
    near = inside & torch.isfinite(hand) & (z.double()[..., None, None] - hand < OFFICIAL_TOLERANCE)
    alone = near.flatten(2).any(-1)
    seen = (near & (hand <= solid)).flatten(2).any(-1)
    return alone & ~seen, ~alone
