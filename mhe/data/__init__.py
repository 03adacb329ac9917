"""Hand data: synthetic occluded hands (license-free, generated on the fly) and HO3D v3 (raw layout).

Both datasets return the same item dictionary (``obs``, ``visible``, ``keypoints_2d_px``,
``joints_3d``, ``scale``, ``joints_3d_mm``, pose/shape/camera ground truth, optionally ``image``), so
models, objectives and :mod:`mhe.metrics` treat them alike and PyTorch's default collate batches them.
Submodules are imported on first use: reading HO3D does not load a body model. Keypoint names and
fingers are :data:`mhe.body.HAND_KEYPOINTS` and :data:`mhe.body.FINGER_OF_KEYPOINT`.

Bodies have the same pattern: synthetic ambiguous bodies (:mod:`mhe.data.synthetic_bodies`), ProHMR's
``.npz`` files (:mod:`mhe.data.prohmr`) and 3DPW sequences (:mod:`mhe.data.threedpw`). The synthetic
generators are made of :mod:`mhe.data.hand_poses` (hand poses and rotation ranges),
:mod:`mhe.data.occluders` (the objects), :mod:`mhe.data.visibility` (the hands' visibility rules),
:mod:`mhe.data.render` (z-buffer and crops) and :mod:`mhe.data.items` (the item keys they share);
:mod:`mhe.data.statistics` counts how often, and why, keypoints are hidden.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "HO3D": "mhe.data.ho3d",
    "EVAL_SEQUENCES": "mhe.data.ho3d",
    "write_fake_ho3d": "mhe.data.fake_ho3d",
    "SyntheticHands": "mhe.data.synthetic",
    "consistent_alternative": "mhe.data.synthetic",
    "occlusion_stats": "mhe.data.statistics",
    "occlusion_rates": "mhe.data.statistics",
    "occluded_hands": "mhe.data.statistics",
    "body_occlusion_rates": "mhe.data.statistics",
    "Occluder": "mhe.data.render",
    "SyntheticBodies": "mhe.data.synthetic_bodies",
    "ProHMRBodies": "mhe.data.prohmr",
    "write_prohmr_npz": "mhe.data.prohmr",
    "ThreeDPW": "mhe.data.threedpw",
    "write_threedpw_sequence": "mhe.data.threedpw",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mhe.data' has no attribute {name!r}")
