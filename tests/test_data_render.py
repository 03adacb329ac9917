"""mhe.data.render against brute force: ray marching for occluders, per-pixel loops for the rasteriser."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from mhe.data.render import Occluder, depth_at_pixels, pixel_centres, rasterize, rasterize_batch, render_crop


def solid(kind: str, seed: int) -> Occluder:
    rng = np.random.default_rng(seed)
    R = torch.from_numpy(Rotation.random(random_state=rng).as_matrix())
    half = torch.tensor({"sphere": [0.3, 0.3, 0.3], "box": [0.4, 0.2, 0.3], "cylinder": [0.5, 0.2, 0.2]}[kind])
    return Occluder(kind, torch.from_numpy(rng.normal(0, 0.1, 3)), R, half.double())


def contains(occ: Occluder, p: np.ndarray) -> np.ndarray:
    """The solid's defining inequalities at points p (N, 3) -- written independently of the ray code."""
    q = (p - occ.centre.numpy()) @ occ.rotation.numpy()  # solid-frame coordinates
    h = occ.half_size.numpy()
    if occ.kind == "sphere":
        return np.linalg.norm(q, axis=-1) <= h[0]
    if occ.kind == "box":
        return (np.abs(q) <= h).all(-1)
    return (np.abs(q[:, 0]) <= h[0]) & (np.hypot(q[:, 1], q[:, 2]) <= h[1])


@pytest.mark.parametrize("kind", ["sphere", "box", "cylinder"])
def test_entry_depth_matches_ray_marching(kind):
    for seed in range(3):
        occ = solid(kind, seed)
        xy = torch.from_numpy(np.random.default_rng(10 + seed).uniform(-0.6, 0.6, (300, 2)))
        zs = np.linspace(-2, 2, 8001)  # 0.5 mm steps
        enter, leave = (t.numpy() for t in occ.depth_interval(xy))
        for (x, y), z_in, z_out in zip(xy.numpy(), enter, leave, strict=True):
            pts = np.stack([np.full_like(zs, x), np.full_like(zs, y), zs], -1)
            inside = contains(occ, pts)
            if inside.any():
                assert z_in == pytest.approx(zs[inside.argmax()], abs=1e-3)
            else:
                assert math.isinf(z_in) or z_out - z_in < 1e-3  # a miss, or a graze thinner than the march step


def test_sphere_entry_closed_form_and_hides():
    occ = Occluder("sphere", torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), torch.eye(3, dtype=torch.float64),
                   torch.full((3,), 0.5, dtype=torch.float64))
    xy = torch.tensor([[0.3, 0.0], [0.0, 0.4], [0.6, 0.0]], dtype=torch.float64)
    expected = [1 - math.sqrt(0.25 - 0.09), 1 - math.sqrt(0.25 - 0.16), math.inf]
    np.testing.assert_allclose(occ.entry_depth(xy).numpy(), expected)
    pts = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, -0.2], [0.0, 0.0, 1.0], [0.7, 0.0, 5.0]], dtype=torch.float64)
    # behind it, in front of it, inside it, beside it
    assert occ.hides(pts).tolist() == [True, False, True, False]
    assert occ.scaled(2.0).hides(pts).tolist() == [True, False, True, True]


def test_axis_parallel_rays_through_box_and_cylinder():
    eye = torch.eye(3, dtype=torch.float64)
    box = Occluder("box", torch.zeros(3, dtype=torch.float64), eye, torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64))
    xy = torch.tensor([[0.05, 0.1], [0.2, 0.0]], dtype=torch.float64)
    np.testing.assert_allclose(box.entry_depth(xy).numpy(), [-0.3, math.inf])
    # A cylinder whose axis is the viewing direction: a disc of radius r seen end-on.
    R = torch.from_numpy(Rotation.from_euler("y", 90, degrees=True).as_matrix())  # local x -> camera -z
    half = torch.tensor([0.5, 0.2, 0.2], dtype=torch.float64)
    cyl = Occluder("cylinder", torch.zeros(3, dtype=torch.float64), R, half)
    xy = torch.tensor([[0.1, 0.1], [0.2, 0.2]], dtype=torch.float64)
    np.testing.assert_allclose(cyl.entry_depth(xy).numpy(), [-0.5, math.inf], atol=1e-12)


def test_occluder_vector_round_trip_and_bad_kind():
    occ = solid("cylinder", 1)
    back = Occluder.from_vector(occ.to_vector())
    assert back.kind == "cylinder"
    for a, b in ((back.centre, occ.centre), (back.rotation, occ.rotation), (back.half_size, occ.half_size)):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="occluder kind must be one of"):
        Occluder("cone", occ.centre, occ.rotation, occ.half_size)


def brute_force_raster(uv: np.ndarray, z: np.ndarray, faces: np.ndarray, size: int):
    depth = np.full((size, size), np.inf)
    face = np.full((size, size), -1)
    for r in range(size):
        for c in range(size):
            p = np.array([(c + 0.5) / size * 2 - 1, (r + 0.5) / size * 2 - 1])
            for f, (i, j, k) in enumerate(faces):
                a, b, d = uv[i], uv[j], uv[k]
                T = np.array([b - a, d - a]).T
                if abs(np.linalg.det(T)) < 1e-12:
                    continue
                l1, l2 = np.linalg.solve(T, p - a)
                if l1 >= 0 and l2 >= 0 and l1 + l2 <= 1:
                    zz = (1 - l1 - l2) * z[i] + l1 * z[j] + l2 * z[k]
                    if zz < depth[r, c]:
                        depth[r, c], face[r, c] = zz, f
    return depth, face


def test_rasterize_matches_a_per_pixel_loop():
    rng = np.random.default_rng(0)
    uv = rng.uniform(-1.2, 1.2, (9, 2))
    z = rng.uniform(0, 1, 9)
    faces = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 4, 8], [2, 3, 7]])
    depth, face = rasterize(torch.from_numpy(uv), torch.from_numpy(z), torch.from_numpy(faces), 14)
    ref_depth, ref_face = brute_force_raster(uv, z, faces, 14)
    np.testing.assert_array_equal(face.numpy(), ref_face)
    np.testing.assert_allclose(depth.numpy(), ref_depth, atol=1e-12)


def test_rasterize_large_triangles_and_offscreen_faces():
    uv = torch.tensor([[-3.0, -3.0], [3.0, -3.0], [0.0, 3.0], [5.0, 5.0], [6.0, 5.0], [5.0, 6.0]], dtype=torch.float64)
    z = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    depth, face = rasterize(uv, z, torch.tensor([[0, 1, 2], [3, 4, 5]]), 16)
    assert (face == 0).all() and torch.allclose(depth, torch.ones_like(depth))


def random_meshes(seed: int, B: int = 6, V: int = 40, F: int = 60, spread: float = 1.3):
    """B meshes with shared faces: small and large triangles, some off the crop, in float32 like the hands."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-spread, spread, (B, F, 1, 2))
    sizes = rng.choice([0.02, 0.1, 0.4, 1.5], (B, F, 1, 1))
    uv = (centres + sizes * rng.normal(size=(B, F, 3, 2))).reshape(B, F * 3, 2)[:, :V]
    faces = rng.integers(0, V, (F, 3))
    return torch.from_numpy(uv).float(), torch.from_numpy(rng.uniform(0, 1, (B, V))).float(), torch.from_numpy(faces)


@pytest.mark.parametrize("size", [14, 32, 64])
def test_rasterize_batch_equals_rasterize_mesh_by_mesh(size):
    uv, z, faces = random_meshes(size)
    depth, face = rasterize_batch(uv, z, faces, size)
    assert depth.shape == face.shape == (len(uv), size, size)
    for b in range(len(uv)):
        ref_depth, ref_face = rasterize(uv[b], z[b], faces, size)
        assert torch.equal(depth[b], ref_depth) and torch.equal(face[b], ref_face)
    assert (face >= 0).float().mean() > 0.2


def test_rasterize_batch_breaks_ties_like_rasterize():
    # The same triangle twice, and a large one (drawn after the small ones) at the same depth.
    uv = torch.tensor([[[-0.5, -0.5], [0.5, -0.5], [0.0, 0.5], [-3.0, -3.0], [3.0, -3.0], [0.0, 3.0]]])
    z = torch.zeros(1, 6)
    faces = torch.tensor([[3, 4, 5], [0, 1, 2], [0, 1, 2]])
    for size, winners in ((8, {0, 2}), (16, {0})):  # at 16 px the large one has a window over 8 pixels
        depth, face = rasterize_batch(uv, z, faces, size)
        ref_depth, ref_face = rasterize(uv[0], z[0], faces, size)
        assert torch.equal(depth[0], ref_depth) and torch.equal(face[0], ref_face)
        assert set(face.unique().tolist()) == winners


def test_depth_at_pixels_reads_the_depth_map():
    uv, z, faces = random_meshes(1, B=5)
    size = 24
    full, _ = rasterize_batch(uv, z, faces, size)
    rng = np.random.default_rng(2)
    pixels = torch.from_numpy(rng.integers(-3, size + 3, (5, 50, 2)))
    pixels[:, :3] = pixels[:, 3:6]  # a pixel asked for twice
    got = depth_at_pixels(uv, z, faces, size, pixels)
    inside = ((pixels >= 0) & (pixels < size)).all(-1)
    c = pixels.clamp(0, size - 1)
    expected = full[torch.arange(5)[:, None], c[..., 1], c[..., 0]]
    expected = torch.where(inside, expected, torch.full_like(expected, float("inf")))
    assert torch.equal(got, expected) and torch.isfinite(got).sum() > 20


def test_render_crop_orders_hand_and_occluder_by_depth():
    # A square "hand" of two triangles at depth 0 covering the crop, and a box in front of / behind it.
    verts = torch.tensor([[-2, -2, 0.0], [2, -2, 0.0], [2, 2, 0.0], [-2, 2, 0.0]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    skin, obj, bg = (torch.tensor(c, dtype=torch.float64) for c in ([0.9, 0.6, 0.5], [0.1, 0.2, 0.9], [0, 0, 0]))
    box = lambda z: Occluder("box", torch.tensor([0.0, 0.0, z], dtype=torch.float64),  # noqa: E731
                             torch.eye(3, dtype=torch.float64), torch.tensor([0.3, 0.3, 0.1], dtype=torch.float64))
    front = render_crop(verts, faces, 0.0, torch.zeros(2), box(-0.5), 16, skin, obj, bg)
    behind = render_crop(verts, faces, 0.0, torch.zeros(2), box(0.5), 16, skin, obj, bg)
    centre = front[:, 8, 8].double()
    # Lambert with the light at the camera: a face-on square and a face-on box top are fully lit.
    assert torch.allclose(centre, obj, atol=1e-6)
    assert torch.allclose(behind[:, 8, 8].double(), skin, atol=1e-6)
    assert torch.allclose(front[:, 0, 0].double(), skin, atol=1e-6)  # outside the box's footprint
    assert front.shape == (3, 16, 16) and front.dtype == torch.float32


def test_pixel_centres_convention():
    c = pixel_centres(4)
    assert c.shape == (4, 4, 2)
    assert c[0, 0].tolist() == [-0.75, -0.75] and c[0, 3].tolist() == [0.75, -0.75]
