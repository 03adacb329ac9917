"""Keypoint conventions for MANO hands and SMPL bodies: names, parents, orders and index maps.

The package's 21 hand keypoints are MANO's 16 kinematic joints in MANO order followed by five
fingertip vertices (thumb, index, middle, ring, pinky) — the order of HO3D's ``handJoints3D``. Index
maps convert to the FreiHAND/manopth order (wrist, then thumb -> pinky, each base -> tip) and the RHD
order (wrist, then thumb -> pinky, each tip -> base): ``ours[..., TO_FREIHAND, :]`` is in FreiHAND
order and ``freihand[..., FROM_FREIHAND, :]`` is back in ours. Fingertips are mesh vertices whose ids
differ between codebases; :data:`TIP_VERTEX_IDS` lists the three in use.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "HAND_KEYPOINTS",
    "HAND_ROOT",
    "HAND_BONE",
    "HAND_PARENTS",
    "MANO_PARENTS",
    "FINGERS",
    "FINGER_OF_KEYPOINT",
    "TO_FREIHAND",
    "FROM_FREIHAND",
    "TO_RHD",
    "FROM_RHD",
    "TIP_VERTEX_IDS",
    "DEFAULT_TIPS",
    "SMPL_PARENTS",
    "SMPL_JOINT_NAMES",
]

FINGERS: tuple[str, ...] = ("thumb", "index", "middle", "ring", "pinky")

HAND_KEYPOINTS: list[str] = [
    "wrist",
    "index_mcp", "index_pip", "index_dip",
    "middle_mcp", "middle_pip", "middle_dip",
    "pinky_mcp", "pinky_pip", "pinky_dip",
    "ring_mcp", "ring_pip", "ring_dip",
    "thumb_cmc", "thumb_mcp", "thumb_ip",
    "thumb_tip", "index_tip", "middle_tip", "ring_tip", "pinky_tip",
]  # fmt: skip

# Root = middle MCP and the normalising bone = middle MCP -> PIP (the paper's hand convention).
HAND_ROOT: int = 4
HAND_BONE: tuple[int, int] = (4, 5)

MANO_PARENTS: np.ndarray = np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14])
# Each fingertip hangs off its finger's last kinematic joint (thumb IP, index/middle/ring/pinky DIP).
HAND_PARENTS: np.ndarray = np.concatenate([MANO_PARENTS, [15, 3, 6, 12, 9]])

FINGER_OF_KEYPOINT: tuple[str, ...] = tuple(
    "wrist" if name == "wrist" else name.split("_")[0] for name in HAND_KEYPOINTS
)

# ours -> FreiHAND / manopth: wrist, thumb (CMC, MCP, IP, tip), index (MCP, PIP, DIP, tip), middle, ring, pinky
TO_FREIHAND: np.ndarray = np.array(
    [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]
)
FROM_FREIHAND: np.ndarray = np.argsort(TO_FREIHAND)
# ours -> RHD: wrist, then thumb (tip, IP, MCP, CMC), index (tip, DIP, PIP, MCP), middle, ring, pinky
TO_RHD: np.ndarray = np.array(
    [0, 16, 15, 14, 13, 17, 3, 2, 1, 18, 6, 5, 4, 19, 12, 11, 10, 20, 9, 8, 7]
)
FROM_RHD: np.ndarray = np.argsort(TO_RHD)

# Fingertip vertex ids on the 778-vertex MANO mesh, ordered thumb, index, middle, ring, pinky.
TIP_VERTEX_IDS: dict[str, tuple[int, ...]] = {
    "manopth": (745, 317, 444, 556, 673),  # manopth, HO3D and the official MHEntropy hand code
    "freihand": (744, 320, 443, 555, 672),
    "smplx": (744, 320, 443, 554, 671),
}
DEFAULT_TIPS: str = "manopth"

SMPL_PARENTS: np.ndarray = np.array(
    [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
)

# smplx's SMPL output: the 24 kinematic joints, then 21 landmark vertices (face, feet, finger tips).
SMPL_JOINT_NAMES: list[str] = [
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
    "nose", "right_eye", "left_eye", "right_ear", "left_ear",
    "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel",
    "left_thumb", "left_index", "left_middle", "left_ring", "left_pinky",
    "right_thumb", "right_index", "right_middle", "right_ring", "right_pinky",
]  # fmt: skip
