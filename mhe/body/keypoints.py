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
    "BODY_KEYPOINTS",
    "BODY_ROOT",
    "BODY_BONE",
    "BODY_PARENTS",
    "SMPL_TO_BODY",
    "OPENPOSE_KEYPOINTS",
    "SMPL_TO_OPENPOSE",
    "PROHMR_EXTRA_KEYPOINTS",
    "BODY_FROM_OPENPOSE",
    "BODY_FROM_PROHMR_EXTRA",
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


# --------------------------------------------------------------------------------------------- bodies

# The package's 17 body keypoints: Human3.6M's evaluation joints in their usual order. They are taken
# from smplx's 45-joint SMPL output by index (:data:`SMPL_TO_BODY`): the kinematic joints where H36M
# has a joint of the same name, spine2 for H36M's "spine", the neck joint for "thorax", the nose
# landmark for "nose" and SMPL's head joint for "head". (H36M's own regressor from the mesh is part of
# the licensed data; this map needs no file, so real SMPL and the stand-in give the same keypoints.)
BODY_KEYPOINTS: list[str] = [
    "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "spine", "thorax", "nose", "head",
    "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
]  # fmt: skip
# Root = pelvis; 3D outputs are divided by the pelvis -> thorax distance (the torso), as the hand's by
# one finger bone, and rescaled by the ground truth's in metric evaluation.
BODY_ROOT: int = 0
BODY_BONE: tuple[int, int] = (0, 8)
BODY_PARENTS: np.ndarray = np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15])
# indices into smplx's 45 SMPL joints (SMPL_JOINT_NAMES) of the 17 body keypoints
SMPL_TO_BODY: np.ndarray = np.array([0, 2, 5, 8, 1, 4, 7, 6, 12, 24, 15, 16, 18, 20, 17, 19, 21])

# OpenPose BODY_25 (the 2D detector ProHMR's npz files store as body_keypoints_2d)
OPENPOSE_KEYPOINTS: list[str] = [
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
    "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe",
    "left_heel", "right_big_toe", "right_small_toe", "right_heel",
]  # fmt: skip
# indices into smplx's 45 SMPL joints of the 25 OpenPose keypoints (mid_hip = pelvis, neck = neck)
SMPL_TO_OPENPOSE: np.ndarray = np.array(
    [24, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34]
)
# The 19 ground-truth keypoints of ProHMR's npz files (extra_keypoints_2d / _3d), in their order.
PROHMR_EXTRA_KEYPOINTS: list[str] = [
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
    "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck_lsp",
    "head_top_lsp", "pelvis_mpii", "thorax_mpii", "spine_h36m", "jaw_h36m", "head_h36m",
]  # fmt: skip
# for each body keypoint, its index among OpenPose's 25 (-1: OpenPose has none) ...
BODY_FROM_OPENPOSE: np.ndarray = np.array([8, 9, 10, 11, 12, 13, 14, -1, 1, 0, -1, 5, 6, 7, 2, 3, 4])
# ... and among ProHMR's 19 extra ground-truth keypoints (-1: none)
BODY_FROM_PROHMR_EXTRA: np.ndarray = np.array([14, 2, 1, 0, 3, 4, 5, 16, 15, -1, 18, 9, 10, 11, 8, 7, 6])
