"""Occlusion statistics of the hand and body datasets: how often each keypoint is hidden, and by what.

Hands: :func:`occlusion_stats` (per keypoint or per finger) and :func:`occlusion_rates` (over the 20
non-root joints) split the hidden keypoints by cause -- the object, the hand itself, the crop border --
and :func:`occluded_hands` picks the hands' ambiguous subset (whole fingers hidden). Bodies:
:func:`body_occlusion_rates`. They read any dataset whose items hold ``visible`` (HO3D and real body
datasets included: without the synthetic cause masks only the totals are non-zero); a synthetic dataset
without a disk cache is generated many items at a time instead of item by item (the same items).
"""

from __future__ import annotations

from collections.abc import Sized
from typing import cast

import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from mhe.body import BODY_ROOT, FINGER_OF_KEYPOINT, HAND_KEYPOINTS, HAND_ROOT
from mhe.data.synthetic import SyntheticHands
from mhe.data.synthetic_bodies import AMBIGUOUS_MIN_HIDDEN, SyntheticBodies

__all__ = ["OCCLUDED_MIN_FINGERS", "body_occlusion_rates", "occluded_hands", "occlusion_rates", "occlusion_stats"]

_NON_ROOT = [j for j in range(21) if j != HAND_ROOT]
_BODY_NON_ROOT = [j for j in range(17) if j != BODY_ROOT]


def _count(dataset: Dataset, max_items: int | None) -> int:
    """The number of items read: all of them, or the first ``max_items``."""
    size = len(cast(Sized, dataset))
    return size if max_items is None else min(size, int(max_items))


def occlusion_stats(dataset: Dataset, max_items: int | None = None, by: str = "joint") -> pd.DataFrame:
    """Fraction of items in which each keypoint (``by="joint"``) or finger (``by="finger"``) is occluded.

    Columns: ``occluded`` (any cause), ``object``, ``self``, ``outside`` (each cause on its own; they
    overlap), the exclusive ``self_only`` (not also behind the object) and ``outside_only`` (neither),
    so that object + self_only + outside_only = occluded, and ``n_items``; indexed by keypoint name
    (with its ``finger``) or by finger. Works for any dataset whose items have ``visible`` (HO3D
    included: without the synthetic cause masks only ``occluded`` is non-zero).
    """
    if by not in ("joint", "finger"):
        raise ValueError(f"by must be 'joint' or 'finger', got {by!r}")
    n = _count(dataset, max_items)
    if n == 0:
        raise ValueError("occlusion_stats needs a non-empty dataset")
    keys = ("occluded", "object", "self", "outside", "self_only", "outside_only")
    sums = {k: torch.zeros(21, dtype=torch.float64) for k in keys}
    no = torch.zeros(21, dtype=torch.bool)
    for i in range(n):
        item = dataset[i]
        obj, slf, out = (item.get(k, no) for k in ("object_occluded", "self_occluded", "outside"))
        for key, mask in zip(keys, (~item["visible"], obj, slf, out, slf & ~obj, out & ~obj & ~slf), strict=True):
            sums[key] += mask.double()
    frame = pd.DataFrame({k: (v / n).numpy() for k, v in sums.items()})
    frame.insert(0, "finger", list(FINGER_OF_KEYPOINT))
    frame.index = pd.Index(list(HAND_KEYPOINTS), name="keypoint")
    frame["n_items"] = n
    if by == "finger":
        frame = frame.groupby("finger", sort=False).agg({**{k: "mean" for k in keys}, "n_items": "first"})
    return frame


def occlusion_rates(dataset: Dataset, max_items: int | None = None) -> pd.Series:
    """The fraction of non-root joints occluded over the first ``max_items`` items, in all and by cause.

    Entries: ``occluded`` (any cause), ``object``, ``self``, ``outside`` (each cause on its own),
    ``self_only`` and ``outside_only`` (exclusive, as in :func:`occlusion_stats`: object + self_only +
    outside_only = occluded), and ``n_items``. A :class:`SyntheticHands` without a stacked cache is
    generated many items at a time (:meth:`SyntheticHands.generate_many`, the same items); any other
    dataset is read item by item through :func:`occlusion_stats`.
    """
    if isinstance(dataset, SyntheticHands) and dataset.on_the_fly:
        n = _count(dataset, max_items)
        if n == 0:
            raise ValueError("occlusion_rates needs a non-empty dataset")
        items = dataset.generate_many(range(n))
        obj, slf, out = items["object_occluded"], items["self_occluded"], items["outside"]
        masks = {"occluded": ~items["visible"], "object": obj, "self": slf, "outside": out,
                 "self_only": slf & ~obj, "outside_only": out & ~obj & ~slf}
        rates = {k: float(m[:, _NON_ROOT].double().mean()) for k, m in masks.items()}
        return pd.Series({**rates, "n_items": n})
    table = occlusion_stats(dataset, max_items)
    rates = {k: float(table[k].iloc[_NON_ROOT].mean())
             for k in ("occluded", "object", "self", "outside", "self_only", "outside_only")}
    return pd.Series({**rates, "n_items": int(table["n_items"].iloc[0])})


# A hand is "occluded" (the hands' ambiguous subset) when at least this many of its five fingers are hidden
# whole: every keypoint of the finger, the root excepted, occluded. Nothing the hand shows then says how that
# finger bends. Fixed from the definition, not from any result (cf. AMBIGUOUS_MIN_HIDDEN for bodies).
OCCLUDED_MIN_FINGERS = 1
_FINGER_KEYPOINTS = {f: [j for j, name in enumerate(FINGER_OF_KEYPOINT) if name == f and j != HAND_ROOT]
                     for f in ("thumb", "index", "middle", "ring", "pinky")}


def occluded_hands(visible: Tensor, min_fingers: int = OCCLUDED_MIN_FINGERS) -> Tensor:
    """Which hands are *occluded*: at least ``min_fingers`` whole fingers hidden → (B,) bool.

    ``visible (B, 21)`` bool in the package's keypoint order (:data:`mhe.body.HAND_KEYPOINTS`). A finger is
    hidden whole when all its keypoints are occluded (the middle finger's MCP is the root and does not
    count). This is the hands' counterpart of the bodies' ``ambiguous`` flag.
    """
    if visible.dim() != 2 or visible.shape[1] != len(FINGER_OF_KEYPOINT):
        raise ValueError(f"visible must be (B, {len(FINGER_OF_KEYPOINT)}), got {tuple(visible.shape)}")
    hidden = ~visible.bool()
    whole = torch.stack([hidden[:, idx].all(-1) for idx in _FINGER_KEYPOINTS.values()], -1)  # (B, 5)
    return whole.sum(-1) >= min_fingers



def body_occlusion_rates(dataset: Dataset, max_items: int | None = None) -> pd.Series:
    """Fractions over the first ``max_items`` items: of the 16 non-root keypoints ``hidden`` (any cause),
    by ``object``, ``self`` and ``outside`` (each cause on its own; they overlap), of the items
    ``truncated`` and ``ambiguous``, and ``n_items``. A :class:`SyntheticBodies` without a disk cache
    is generated many items at a time; other datasets are read item by item."""
    n = _count(dataset, max_items)
    if n == 0:
        raise ValueError("body_occlusion_rates needs a non-empty dataset")
    if isinstance(dataset, SyntheticBodies) and dataset.on_the_fly:
        items = dataset.generate_many(range(n))
    else:
        keys = ("visible", "object_occluded", "self_occluded", "outside", "truncated", "ambiguous")
        rows = [dataset[i] for i in range(n)]
        items = {k: torch.stack([row[k] for row in rows]) for k in keys if k in rows[0]}
    hidden = ~items["visible"][:, _BODY_NON_ROOT]
    out = {"hidden": float(hidden.double().mean())}
    for key, name in (("object_occluded", "object"), ("self_occluded", "self"), ("outside", "outside")):
        out[name] = float(items[key][:, _BODY_NON_ROOT].double().mean()) if key in items else 0.0
    trunc = items.get("truncated", items["outside"].any(-1) if "outside" in items else torch.zeros(n, dtype=torch.bool))
    out["truncated"] = float(trunc.double().mean())
    amb = items.get("ambiguous", trunc | (hidden.sum(-1) >= AMBIGUOUS_MIN_HIDDEN))
    out["ambiguous"] = float(amb.double().mean())
    out["n_items"] = n
    return pd.Series(out)
