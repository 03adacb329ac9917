"""mhe.body.ambiguity: depth mirror images and occluded-finger variations keep the 2D evidence."""

from __future__ import annotations

import pytest
import torch

from mhe.body import load_mano
from mhe.body.ambiguity import FINGER_CHAINS, depth_flip_finger, fit_pose, mirror_in_depth, vary_fingers
from mhe.geometry import axis_angle_to_matrix, project_orthographic

F64 = torch.float64


@pytest.fixture(scope="module")
def hand():
    return load_mano(standin=True, use_pca=False, dtype=F64)


def _palm_to_camera():
    # fingers up (-y), palm towards the camera (-z): Rz(90 deg) Rx(90 deg)
    R = axis_angle_to_matrix(torch.tensor([0.0, 0.0, torch.pi / 2], dtype=F64)) @ axis_angle_to_matrix(
        torch.tensor([torch.pi / 2, 0.0, 0.0], dtype=F64))
    from mhe.geometry import matrix_to_axis_angle

    return matrix_to_axis_angle(R)


def test_mirror_in_depth_closed_form():
    g = torch.Generator().manual_seed(0)
    joints = torch.randn(2, 6, 3, generator=g, dtype=F64)
    out = mirror_in_depth(joints, chain=[2, 3], pivot=1)
    torch.testing.assert_close(out[..., :2], joints[..., :2])
    torch.testing.assert_close(out[:, [0, 1, 4, 5]], joints[:, [0, 1, 4, 5]])
    torch.testing.assert_close(out[:, [2, 3], 2], 2 * joints[:, [1], 2] - joints[:, [2, 3], 2])
    d = lambda x, a, b: (x[:, a] - x[:, b]).norm(dim=-1)  # noqa: E731
    for a, b in ((1, 2), (2, 3), (1, 3)):
        torch.testing.assert_close(d(out, a, b), d(joints, a, b))
    with pytest.raises(ValueError, match="shape"):
        mirror_in_depth(torch.zeros(3), [0], 0)


@pytest.mark.parametrize("finger", ["index", "thumb"])
def test_depth_flip_keeps_every_2d_keypoint(hand, finger):
    go = _palm_to_camera()
    pose = torch.zeros(45, dtype=F64)
    pose[2], pose[5] = 0.5, 0.5  # index curled towards the palm, i.e. towards the camera
    new, err = depth_flip_finger(hand, go, pose, finger)
    a = hand(go[None], pose[None]).joints[0]
    b = hand(go[None], new[None]).joints[0]
    assert err < 1e-6
    uv = lambda j: project_orthographic(j, torch.tensor(2.0, dtype=F64), torch.zeros(2, dtype=F64))  # noqa: E731
    torch.testing.assert_close(uv(b), uv(a), atol=1e-5, rtol=0)
    chain = FINGER_CHAINS[finger]
    assert (b[chain[-1], 2] - a[chain[-1], 2]).abs() > 0.01  # the tip moved in depth
    others = [j for j in range(21) if j not in chain[1:]]
    torch.testing.assert_close(b[others], a[others])


def test_ambiguity_errors(hand):
    pca = load_mano(standin=True)
    with pytest.raises(ValueError, match="use_pca=False"):
        depth_flip_finger(pca, torch.zeros(3), torch.zeros(45))
    with pytest.raises(ValueError, match="finger"):
        depth_flip_finger(hand, torch.zeros(3, dtype=F64), torch.zeros(45, dtype=F64), "toe")
    with pytest.raises(ValueError, match="target"):
        fit_pose(lambda p: torch.zeros(21, 3, dtype=F64), torch.zeros(45, dtype=F64), [0], torch.zeros(2, 3), [1])
    with pytest.raises(ValueError, match="unknown finger"):
        vary_fingers(hand, torch.zeros(45), ["toe"], 2)
    with pytest.raises(ValueError, match="use_pca=False"):
        vary_fingers(pca, torch.zeros(45), ["ring"], 2)


def test_vary_fingers_changes_only_the_named_fingers(hand):
    g = torch.Generator().manual_seed(1)
    poses = vary_fingers(hand, torch.zeros(45, dtype=F64), ["ring", "pinky"], 4, low=0.3, high=0.9, generator=g)
    assert poses.shape == (4, 45)
    joints = hand(torch.zeros(4, 3, dtype=F64), poses).joints
    # every changed joint's total rotation (mean + pose) is a flexion of 0.3 to 0.9 rad about its axis
    total = (poses + hand.pose_mean[3:]).view(4, 15, 3)[:, [9, 10, 11, 6, 7, 8]]
    angle = total.norm(dim=-1)
    assert ((angle >= 0.3 - 1e-9) & (angle <= 0.9 + 1e-9)).all()
    torch.testing.assert_close(total / angle[..., None], hand.flex_axes[[9, 10, 11, 6, 7, 8]].expand(4, -1, -1))
    moved = set(FINGER_CHAINS["ring"][1:] + FINGER_CHAINS["pinky"][1:])
    fixed = [j for j in range(21) if j not in moved]
    torch.testing.assert_close(joints[:, fixed], joints[:1, fixed].expand(4, -1, -1))
    assert (joints[:, sorted(moved)] - joints[:1, sorted(moved)]).abs().max() > 0.005
