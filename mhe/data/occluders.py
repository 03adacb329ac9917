"""Occluder geometry for many items at once: where viewing rays enter the solids, what they hide, and
how the synthetic hands' objects are sized and placed.

An occluder is stored per item as a 16-number record (:meth:`mhe.data.render.Occluder.to_vector`: kind
index, centre (3), rotation (9, row-major), half size (3); all zeros for none). The functions here take
B records (or their parts) at once and do, operation by operation, the arithmetic of
:class:`mhe.data.render.Occluder` for one solid: :func:`entry_depths` is
:meth:`~mhe.data.render.Occluder.entry_depth`, :func:`records_hide` is
:meth:`~mhe.data.render.Occluder.hides`. :func:`place_occluders` places the hands' objects (sphere, box
or cylinder) from the numbers drawn for each item (its own random stream, :class:`mhe.data.SyntheticHands`):
the smallest object near an anchor joint that covers the drawn number of joints, by bisection on its size.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from mhe.body import HAND_ROOT
from mhe.data.items import exact_exp

__all__ = ["entry_depths", "has_object", "place_occluders", "record_entry_depths", "records_hide"]

_HAND_NON_ROOT = [j for j in range(21) if j != HAND_ROOT]


def _slab_intervals(a: Tensor, b: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """Batched ``render._slab_interval``: depths z with |a + z b| <= h, a (B, N), b (B,), h (B,)."""
    inf = torch.full_like(a, float("inf"))
    flat = (b.abs() < 1e-12)[:, None]
    inside = a.abs() <= h[:, None]
    safe = torch.where(b.abs() < 1e-12, torch.ones_like(b), b)[:, None]
    z1, z2 = (-h[:, None] - a) / safe, (h[:, None] - a) / safe
    lo = torch.where(flat, torch.where(inside, -inf, inf), torch.minimum(z1, z2))
    hi = torch.where(flat, torch.where(inside, inf, -inf), torch.maximum(z1, z2))
    return lo, hi


def _quadratic_intervals(a: Tensor, b: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
    """Batched ``render._quadratic_interval``: depths z with |a + z b|^2 <= r^2, a (B, N, k), b (B, k), r (B,)."""
    A = (b * b).sum(-1)[:, None]
    B = 2 * (a * b[:, None]).sum(-1)
    C = (a * a).sum(-1) - (r * r)[:, None]
    inf = torch.full_like(C, float("inf"))
    along = A < 1e-12  # the ray runs along the axis: inside everywhere or nowhere
    disc = B * B - 4 * A * C
    root = disc.clamp_min(0).sqrt()
    two_a = torch.where(along, torch.ones_like(A), 2 * A)
    lo, hi = (-B - root) / two_a, (-B + root) / two_a
    hit = disc >= 0
    lo, hi = torch.where(hit, lo, inf), torch.where(hit, hi, -inf)
    inside = C <= 0
    return (torch.where(along, torch.where(inside, -inf, inf), lo),
            torch.where(along, torch.where(inside, inf, -inf), hi))


def entry_depths(kind: Tensor, centre: Tensor, rotation: Tensor, half: Tensor, xy: Tensor) -> Tensor:
    """:meth:`Occluder.entry_depth` of B solids at once, each at its own N rays, with the same arithmetic.

    kind (B,) index into :data:`mhe.data.render.OCCLUDER_KINDS`, centre (B, 3), rotation (B, 3, 3), half
    (B, 3) float64, xy (B, N, 2) -> entry depth (B, N) (+inf where the ray misses).
    """
    xy = xy.to(centre.dtype)
    origin = torch.cat([xy, torch.zeros_like(xy[..., :1])], dim=-1) - centre[:, None]
    a = origin @ rotation  # ray origins in the solids' frames, (B, N, 3)
    b = rotation[:, 2]  # the ray direction +z in the solids' frames, (B, 3)
    # Each kind's interval for every solid, left out for the kinds none of the solids has (the placeholder
    # is never selected below; each solid's numbers are the same either way).
    present = set(kind.unique().tolist())
    unused = torch.zeros_like(a[..., 0])
    sphere_lo, sphere_hi = _quadratic_intervals(a, b, half[:, 0]) if 0 in present else (unused, unused)
    box_lo = box_hi = cyl_lo = cyl_hi = unused
    if present & {1, 2}:
        slabs = [_slab_intervals(a[..., i], b[:, i], half[:, i]) for i in (range(3) if 1 in present else range(1))]
        if 1 in present:
            box_lo = torch.maximum(torch.maximum(slabs[0][0], slabs[1][0]), slabs[2][0])
            box_hi = torch.minimum(torch.minimum(slabs[0][1], slabs[1][1]), slabs[2][1])
        if 2 in present:
            round_lo, round_hi = _quadratic_intervals(a[..., 1:], b[:, 1:], half[:, 1])
            cyl_lo, cyl_hi = torch.maximum(slabs[0][0], round_lo), torch.minimum(slabs[0][1], round_hi)
    k = kind[:, None]
    lo = torch.where(k == 0, sphere_lo, torch.where(k == 1, box_lo, cyl_lo))
    hi = torch.where(k == 0, sphere_hi, torch.where(k == 1, box_hi, cyl_hi))
    return torch.where(lo <= hi, lo, torch.full_like(lo, float("inf")))


def record_entry_depths(records: Tensor, xy: Tensor) -> Tensor:
    """:func:`entry_depths` of B occluder records (B, 16) (any float dtype; float64 inside) at rays xy (B, N, 2)."""
    rec = records.double()
    return entry_depths(rec[:, 0].round().long(), rec[:, 1:4], rec[:, 4:13].reshape(-1, 3, 3), rec[:, 13:16], xy)


def records_hide(records: Tensor, points: Tensor) -> Tensor:
    """:meth:`Occluder.hides` for B occluder records (B, 16) float64 and points (B, N, 3) -> (B, N) bool."""
    enter = record_entry_depths(records, points[..., :2])
    return enter < points[..., 2].to(enter.dtype)


def has_object(records: Tensor) -> Tensor:
    """Which of the records (B, 16) hold a solid (B,) bool: a record of zeros (zero size) is none."""
    return records[:, 13:].abs().sum(-1) > 0


def place_occluders(rel: Tensor, draws: dict[str, np.ndarray]) -> Tensor:
    """The hands' objects for B items from their drawn numbers (``target``, ``kind``, ``rotation``,
    ``half``, ``anchor``, ``centre_noise``, ``gap``, drawn by :class:`mhe.data.SyntheticHands`).

    Each object lies near its anchor joint, its back ``gap`` in front of it, and is the smallest of its
    shape (bisection on the log of its size, between 4 mm and 8 cm) that hides ``target`` of the 20
    non-root joints, then 4 % larger, so that the last covered joint is not left on the surface, and
    rounded to the float32 record the item stores, so that the record alone decides visibility.

    rel (B, 21, 3) float64 metres, root-relative -> the float32 occluder records (B, 16)
    (:meth:`Occluder.to_vector`), zero for the items whose target is 0 joints (no object).
    """
    n = rel.shape[0]
    rows = torch.arange(n)
    kind, target = torch.from_numpy(draws["kind"]), torch.from_numpy(draws["target"])
    R, half = torch.from_numpy(draws["rotation"]), torch.from_numpy(draws["half"])
    anchor = torch.from_numpy(draws["anchor"])
    centre_xy = rel[rows, anchor, :2] + torch.from_numpy(draws["centre_noise"])
    back = rel[rows, anchor, 2] - torch.from_numpy(draws["gap"])
    # The solid's half depth along the viewing axis at unit size (its support in z).
    cos = R[:, 2, 0].abs()
    reach = torch.where(kind == 0, torch.ones_like(cos),
                        torch.where(kind == 1, (R[:, 2].abs() * half).sum(-1),
                                    cos * half[:, 0] + (1 - cos * cos).clamp_min(0.0).sqrt()))
    points = rel[:, _HAND_NON_ROOT]

    def make(size: Tensor, i: Tensor) -> Tensor:  # the records of items i at sizes (len(i),), float64
        centre = torch.cat([centre_xy[i], (back[i] - size * reach[i])[:, None]], dim=1)
        return torch.cat([kind[i, None].double(), centre, R[i].reshape(-1, 9), half[i] * size[:, None]], dim=1)

    def covered(size: Tensor, i: Tensor) -> Tensor:
        return records_hide(make(size, i), points[i]).sum(-1) >= target[i]

    lo = torch.full((n,), math.log(0.004), dtype=torch.float64)
    hi = torch.full((n,), math.log(0.08), dtype=torch.float64)
    placed = (target > 0).nonzero().squeeze(1)
    grow = placed[covered(exact_exp(hi[placed]), placed)]
    for _ in range(14):  # bisection on log size for the smallest object that covers `target` joints
        mid = (lo[grow] + hi[grow]) / 2
        ok = covered(exact_exp(mid), grow)
        hi[grow] = torch.where(ok, mid, hi[grow])
        lo[grow] = torch.where(ok, lo[grow], mid)
    records = torch.zeros(n, 16)
    if placed.numel():
        size = torch.tensor([1.04 * math.exp(h) for h in hi[placed].tolist()], dtype=torch.float64)
        records[placed] = make(size, placed).float()
    return records
