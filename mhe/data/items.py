"""The item dictionary the synthetic generators share (hands and bodies), and the exact arithmetic it needs.

:func:`keypoint_items` turns a batch of projected keypoints, occlusion masks, cameras and ground truth into
the keys every generated item holds (:class:`mhe.data.synthetic.SyntheticHands` and
:class:`mhe.data.synthetic_bodies.SyntheticBodies` alike), so that models, objectives and metrics treat the
two benchmarks the same way. Keypoint pixels are those of a :data:`CROP_PIXELS` (256) px crop, as HO3D's.

:func:`exact_exp` is ``math.exp`` element by element: torch's vectorised ``exp`` may differ from it in the
last bit, and the generators promise the same bits whatever batch an item is generated in.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mhe.geometry import crop_to_pixels

__all__ = ["CROP_PIXELS", "exact_exp", "keypoint_items", "positive_int", "px_per_mm"]

CROP_PIXELS = 256  # the crop whose pixels ``keypoints_2d_px`` and ``px_per_mm`` count


def positive_int(name: str, value: Any) -> int:
    """``value`` as a positive int (a crop size in pixels), else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer (pixels), got {value!r}")
    return int(value)


def exact_exp(x: Tensor) -> Tensor:
    """``math.exp`` of every element of a float tensor of any shape -> float64, the same shape."""
    x = x.double()
    return torch.tensor([math.exp(v) for v in x.reshape(-1).tolist()], dtype=torch.float64).reshape(x.shape)


def px_per_mm(camera: Tensor) -> Tensor:
    """Pixels of the 256 px crop per millimetre at the subject, float32 (...,), for cameras (..., 3).

    The orthographic camera maps 1 m to exp(log_scale) crop units and a crop unit to 256 / 2 pixels
    (:func:`mhe.geometry.crop_to_pixels`): exp(log_scale) x 128 / 1000 px per mm, the same everywhere.
    """
    return (exact_exp(camera[..., 0]) * (CROP_PIXELS / 2) / 1000.0).float()


def keypoint_items(obs: Tensor, object_occ: Tensor, self_occ: Tensor, camera: Tensor, rel: Tensor, bone: Tensor,
                   params: Tensor, orient: Tensor, betas: Tensor, occluder: Tensor) -> dict[str, Tensor]:
    """The keys every generated item holds, hands and bodies alike, for a batch of n items.

    From the crop keypoints ``obs (n, J, 2)``, the occlusion masks ``object_occ`` and ``self_occ (n, J)``
    bool, ``camera (n, 3)``, the root-relative joints ``rel (n, J, 3)`` and the bone length ``bone (n,)`` in
    metres, the pose, rotation, shape and occluder records (n, 16). A keypoint is visible unless an object
    or the body hides it or it falls outside the crop.
    """
    outside = (obs.abs() > 1).any(-1)
    return {
        "obs": obs,
        "visible": ~(object_occ | self_occ | outside),
        "keypoints_2d_px": crop_to_pixels(obs, CROP_PIXELS),
        "px_per_mm": px_per_mm(camera),
        "joints_3d": rel / bone[:, None, None],
        "scale": bone,
        "joints_3d_mm": rel * 1000.0,
        "params": params,
        "global_orient": orient,
        "betas": betas,
        "camera": camera,
        "object_occluded": object_occ,
        "self_occluded": self_occ,
        "outside": outside,
        "occluder": occluder,
    }
