"""Keypoint conventions: orders written out by hand from the FreiHAND, RHD and MANO definitions."""

from __future__ import annotations

import numpy as np

from mhe.body import (
    FINGER_OF_KEYPOINT,
    FROM_FREIHAND,
    FROM_RHD,
    HAND_BONE,
    HAND_KEYPOINTS,
    HAND_PARENTS,
    HAND_ROOT,
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    TIP_VERTEX_IDS,
    TO_FREIHAND,
    TO_RHD,
)

FREIHAND_NAMES = ["wrist",
                  "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
                  "index_mcp", "index_pip", "index_dip", "index_tip",
                  "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
                  "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
                  "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip"]  # fmt: skip
RHD_NAMES = ["wrist",
             "thumb_tip", "thumb_ip", "thumb_mcp", "thumb_cmc",
             "index_tip", "index_dip", "index_pip", "index_mcp",
             "middle_tip", "middle_dip", "middle_pip", "middle_mcp",
             "ring_tip", "ring_dip", "ring_pip", "ring_mcp",
             "pinky_tip", "pinky_dip", "pinky_pip", "pinky_mcp"]  # fmt: skip


def test_index_maps_reorder_names():
    assert [HAND_KEYPOINTS[i] for i in TO_FREIHAND] == FREIHAND_NAMES
    assert [HAND_KEYPOINTS[i] for i in TO_RHD] == RHD_NAMES
    ours = np.arange(21)
    np.testing.assert_array_equal(ours[TO_FREIHAND][FROM_FREIHAND], ours)
    np.testing.assert_array_equal(ours[TO_RHD][FROM_RHD], ours)


def test_hand_tree_and_conventions():
    assert len(HAND_KEYPOINTS) == 21 and HAND_KEYPOINTS[HAND_ROOT] == "middle_mcp"
    assert [HAND_KEYPOINTS[i] for i in HAND_BONE] == ["middle_mcp", "middle_pip"]
    # every non-root keypoint hangs off a keypoint of the same finger, or off the wrist
    for j, p in enumerate(HAND_PARENTS):
        if p < 0:
            assert j == 0
        else:
            assert FINGER_OF_KEYPOINT[p] in (FINGER_OF_KEYPOINT[j], "wrist")
            assert HAND_KEYPOINTS[j].split("_")[0] == FINGER_OF_KEYPOINT[j]
    for ids in TIP_VERTEX_IDS.values():
        assert len(ids) == 5 and all(0 <= i < 778 for i in ids)


def test_smpl_names_and_parents():
    assert len(SMPL_JOINT_NAMES) == 45 and len(SMPL_PARENTS) == 24
    name = dict(enumerate(SMPL_JOINT_NAMES))
    assert name[int(SMPL_PARENTS[SMPL_JOINT_NAMES.index("left_knee")])] == "left_hip"
    assert name[int(SMPL_PARENTS[SMPL_JOINT_NAMES.index("right_wrist")])] == "right_elbow"
    assert name[int(SMPL_PARENTS[SMPL_JOINT_NAMES.index("head")])] == "neck"
