"""mhe.geometry against closed forms and hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from mhe import geometry as G


def _rz(theta: float) -> torch.Tensor:
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rx(theta: float) -> torch.Tensor:
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def test_axis_angle_to_matrix_matches_elementary_rotations():
    aa = torch.tensor([[0.0, 0.0, 0.7], [-1.2, 0.0, 0.0]])
    R = G.axis_angle_to_matrix(aa)
    torch.testing.assert_close(R[0], _rz(0.7))
    torch.testing.assert_close(R[1], _rx(-1.2))


def test_axis_angle_round_trip_and_orthonormality():
    g = torch.Generator().manual_seed(1)
    axis = torch.nn.functional.normalize(torch.randn(4, 5, 3, generator=g, dtype=torch.float64), dim=-1)
    angle = torch.rand(4, 5, 1, generator=g, dtype=torch.float64) * 3.0  # stay below pi
    aa = axis * angle
    R = G.axis_angle_to_matrix(aa)
    assert R.shape == (4, 5, 3, 3)
    eye = torch.eye(3, dtype=torch.float64).expand_as(R)
    torch.testing.assert_close(R @ R.transpose(-1, -2), eye)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(4, 5, dtype=torch.float64))
    torch.testing.assert_close(G.matrix_to_axis_angle(R), aa)
    # Rodrigues: R v = v for the axis itself.
    torch.testing.assert_close((R @ axis[..., None])[..., 0], axis)


def test_rot6d_gram_schmidt_hand_computed():
    x = torch.tensor([[2.0, 0.0, 0.0, 1.0, 3.0, 0.0], [0.0, 0.0, 5.0, 1.0, 0.0, 7.0]])
    R = G.rot6d_to_matrix(x)
    torch.testing.assert_close(R[0], torch.eye(3))
    # b1 = z, b2 = x after removing the z part, b3 = z cross x = y
    # columns b1 = (0, 0, 1), b2 = (1, 0, 0), b3 = (0, 1, 0)
    torch.testing.assert_close(R[1], torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))


def test_rot6d_round_trip():
    g = torch.Generator().manual_seed(2)
    aa = torch.randn(7, 3, generator=g, dtype=torch.float64)
    R = G.axis_angle_to_matrix(aa)
    six = G.matrix_to_rot6d(R)
    assert six.shape == (7, 6)
    torch.testing.assert_close(six[:, :3], R[:, :, 0])
    torch.testing.assert_close(G.rot6d_to_matrix(six), R)
    # Any positive rescaling of the two vectors gives the same rotation.
    scaled = torch.cat((3.0 * six[:, :3], 0.5 * six[:, 3:] + 2.0 * six[:, :3]), dim=-1)
    torch.testing.assert_close(G.rot6d_to_matrix(scaled), R)


def test_project_orthographic_known_point_and_broadcast():
    xyz = torch.tensor([[[1.0, 2.0, 3.0], [-1.0, 0.5, -9.0]]])  # (1, 2, 3)
    uv = G.project_orthographic(xyz, torch.tensor([math.log(2.0)]), torch.tensor([[0.5, -1.0]]))
    torch.testing.assert_close(uv, torch.tensor([[[2.5, 3.0], [-1.5, 0.0]]]))
    # depth does not matter
    moved = xyz.clone()
    moved[..., 2] += 10.0
    torch.testing.assert_close(
        G.project_orthographic(moved, torch.zeros(1), torch.zeros(1, 2)), xyz[..., :2]
    )
    # (S, B) leading dims
    out = G.project_orthographic(torch.randn(4, 3, 21, 3), torch.zeros(4, 3), torch.zeros(4, 3, 2))
    assert out.shape == (4, 3, 21, 2)


def test_project_pinhole_known_points():
    K = torch.tensor([[500.0, 0.0, 128.0], [0.0, 400.0, 100.0], [0.0, 0.0, 1.0]])
    xyz = torch.tensor([[0.1, -0.2, 2.0], [0.0, 0.0, 0.5]])
    uv = G.project_pinhole(xyz, K)
    torch.testing.assert_close(uv, torch.tensor([[500 * 0.05 + 128, 400 * -0.1 + 100], [128.0, 100.0]]))
    # batched K against batched joints
    Kb = torch.stack((K, 2 * K * torch.tensor([[1.0], [1.0], [0.5]]).expand(3, 3)))
    uvb = G.project_pinhole(xyz.expand(2, 2, 3), Kb)
    torch.testing.assert_close(uvb[0], uv)
    torch.testing.assert_close(uvb[1], 2 * uv)


def test_root_relative_hand_computed():
    joints = torch.zeros(2, 6, 3)
    joints[:, 4] = torch.tensor([1.0, 1.0, 1.0])
    joints[:, 5] = torch.tensor([1.0, 1.0, 3.0])  # bone length 2
    joints[:, 0] = torch.tensor([3.0, 1.0, 1.0])
    norm, scale = G.root_relative(joints)
    torch.testing.assert_close(scale, torch.tensor([2.0, 2.0]))
    torch.testing.assert_close(norm[:, 4], torch.zeros(2, 3))
    torch.testing.assert_close(norm[:, 5], torch.tensor([[0.0, 0.0, 1.0]] * 2))
    torch.testing.assert_close(norm[:, 0], torch.tensor([[1.0, 0.0, 0.0]] * 2))
    n2, s2 = G.root_relative(joints, root=0, bone=(0, 4))
    torch.testing.assert_close(s2, torch.full((2,), math.sqrt(4.0)))
    torch.testing.assert_close(n2[:, 4], torch.tensor([[-1.0, 0.0, 0.0]] * 2))


def test_procrustes_recovers_known_similarity():
    g = torch.Generator().manual_seed(3)
    gt = torch.randn(3, 21, 3, generator=g, dtype=torch.float64)
    R = G.axis_angle_to_matrix(torch.tensor([[0.3, -1.1, 2.0], [0.0, 0.0, 0.0], [2.5, 0.1, 0.2]],
                                            dtype=torch.float64))
    s = torch.tensor([1.7, 0.2, 3.0], dtype=torch.float64)
    t = torch.randn(3, 3, generator=g, dtype=torch.float64)
    # pred = (R^T (gt - t)) / s  so that  s R pred + t = gt exactly
    pred = torch.matmul(gt - t[:, None], R) / s[:, None, None]
    torch.testing.assert_close(G.procrustes_align(pred, gt), gt)


def test_procrustes_refuses_reflections_and_is_optimal():
    g = torch.Generator().manual_seed(4)
    gt = torch.randn(15, 3, generator=g, dtype=torch.float64)
    mirrored = gt * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    aligned = G.procrustes_align(mirrored, gt)
    err = (aligned - gt).norm(dim=-1).pow(2).sum()
    assert err > 1e-3  # a reflection would have matched exactly
    # No random similarity transform does better (brute-force check of optimality).
    for _ in range(50):
        Rk = G.axis_angle_to_matrix(torch.randn(3, generator=g, dtype=torch.float64))
        sk = torch.rand((), generator=g, dtype=torch.float64) * 2
        tk = torch.randn(3, generator=g, dtype=torch.float64)
        other = sk * mirrored @ Rk.T + tk
        assert (other - gt).norm(dim=-1).pow(2).sum() >= err - 1e-9


def test_crop_pixel_conversions():
    uv = torch.tensor([[-1.0, 1.0], [0.0, 0.5]])
    px = G.crop_to_pixels(uv)
    torch.testing.assert_close(px, torch.tensor([[0.0, 256.0], [128.0, 192.0]]))
    torch.testing.assert_close(G.pixels_to_crop(px), uv)
    torch.testing.assert_close(G.crop_to_pixels(uv, size=100), torch.tensor([[0.0, 100.0], [50.0, 75.0]]))


@pytest.mark.parametrize(
    "call",
    [
        lambda: G.axis_angle_to_matrix(torch.zeros(4, 4)),
        lambda: G.matrix_to_axis_angle(torch.zeros(3, 4)),
        lambda: G.rot6d_to_matrix(torch.zeros(5)),
        lambda: G.matrix_to_rot6d(torch.zeros(2, 3)),
        lambda: G.project_orthographic(torch.zeros(21, 2), torch.zeros(()), torch.zeros(2)),
        lambda: G.project_orthographic(torch.zeros(21, 3), torch.zeros(()), torch.zeros(3)),
        lambda: G.project_pinhole(torch.zeros(21, 3), torch.zeros(3, 4)),
        lambda: G.root_relative(torch.zeros(3)),
        lambda: G.procrustes_align(torch.zeros(21, 3), torch.zeros(20, 3)),
        lambda: G.procrustes_align(torch.zeros(2, 3), torch.zeros(2, 3)),
    ],
)
def test_bad_shapes_are_refused(call):
    with pytest.raises(ValueError, match="shape|joints"):
        call()


def test_bad_indices_and_types_are_refused():
    with pytest.raises(IndexError, match="out of range"):
        G.root_relative(torch.zeros(5, 3), root=7)
    with pytest.raises(TypeError, match="torch.Tensor"):
        G.axis_angle_to_matrix([0.0, 0.0, 1.0])
