"""mhe.data.ho3d on a tiny HO3D-format folder written by the test, with planted visible/occluded joints."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial.transform import Rotation
from torch.utils.data import DataLoader

from mhe.data import ho3d
from mhe.data.fake_ho3d import write_fake_ho3d
from mhe.data.ho3d import HO3D

FLIP = np.array([1.0, -1.0, -1.0])


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("ho3d")
    truth = write_fake_ho3d(root, frames_per_sequence=2)
    return root, truth


def test_depth_decoding_widens_before_arithmetic():
    rgb = np.zeros((1, 3, 3), np.uint8)
    rgb[0, :, 0] = [100, 255, 0]  # R
    rgb[0, :, 1] = [200, 255, 3]  # G: 256 * 200 overflows uint8 and uint16-free arithmetic
    expected = np.array([100 + 256 * 200, 255 + 256 * 255, 3 * 256]) * ho3d.DEPTH_SCALE
    np.testing.assert_allclose(ho3d.decode_depth(rgb)[0], expected, rtol=1e-12)
    depth = np.array([[0.0, 0.5, 1.234, 8.0]])
    np.testing.assert_allclose(ho3d.decode_depth(ho3d.encode_depth(depth)), depth, atol=ho3d.DEPTH_SCALE / 2)


def test_depth_png_round_trip_and_segmentation_resize(tmp_path):
    depth = np.linspace(0.2, 1.5, 12).reshape(3, 4)
    Image.fromarray(ho3d.encode_depth(depth)).save(tmp_path / "d.png")
    np.testing.assert_allclose(ho3d.read_depth(tmp_path / "d.png"), depth, atol=ho3d.DEPTH_SCALE / 2)
    seg = np.zeros((2, 3, 3), np.uint8)
    seg[0, 1] = (0, 0, 255)  # hand
    seg[1, 2] = (0, 255, 0)  # object
    Image.fromarray(seg).save(tmp_path / "s.png")
    hand, obj = ho3d.read_segmentation(tmp_path / "s.png", (6, 4))  # twice the size
    assert hand.shape == (4, 6)
    np.testing.assert_array_equal(np.argwhere(hand), [[0, 2], [0, 3], [1, 2], [1, 3]])
    np.testing.assert_array_equal(np.argwhere(obj), [[2, 4], [2, 5], [3, 4], [3, 5]])


def test_official_visibility_window_and_depth_tolerance():
    hand = np.zeros((40, 40), bool)
    depth = np.full((40, 40), 0.5)
    hand[24, 24] = True
    uv = np.array([[20.9, 20.2], [19.5, 20.0], [20.0, 20.0], [20.0, 20.0], [-3.5, 24.0]])
    # Truncated (20, 20): the window spans 16..24 and contains (24, 24); (19, 20) spans 15..23 and does not.
    z = np.array([0.5, 0.5, 0.539, 0.541, 0.5])
    hand[20, 0] = True  # for the joint near the left border: window -7..1 (trunc(-3.5) = -3) reaches column 0
    vis = ho3d.official_visibility(uv, z, hand, depth)
    np.testing.assert_array_equal(vis, [True, False, True, False, True])


def test_crop_box_hand_computed():
    uv = np.array([[10.0, 20.0], [30.0, 60.0]])
    # Joints box (10..30, 20..60), centre (20, 40), x1.5 -> (5..35, 10..70): side 60 around (20, 40).
    assert ho3d.crop_box(uv, None, (100, 100)) == (-10.0, 10.0, 60.0)
    obj = np.zeros((100, 100), bool)
    obj[5, 90] = True
    # Fused with the object: (5..90, 5..70) -> centre floor(47.5, 37.5), side 85.
    assert ho3d.crop_box(uv, obj, (100, 100)) == (47 - 42.5, 37 - 42.5, 85.0)
    # Clipping to the frame: the object at column 90 is outside a 50-wide frame's right edge.
    assert ho3d.crop_box(uv, obj, (50, 100)) == (27 - 32.5, 37 - 32.5, 65.0)


def test_inside_crop_uses_the_window():
    px = np.array([[-4.0, 10.0], [-4.5, 10.0], [259.0, 0.0], [259.5, 0.0], [10.0, 300.0]])
    np.testing.assert_array_equal(ho3d.inside_crop(px, 256), [True, False, True, False, False])


def test_orthographic_fit_recovers_an_exact_camera():
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(21, 3))
    uv = 3.5 * xyz[:, :2] + np.array([0.1, -0.2])
    log_s, tx, ty = ho3d.fit_orthographic_camera(xyz, uv)
    assert (np.exp(log_s), tx, ty) == pytest.approx((3.5, 0.1, -0.2))


def test_items_match_the_planted_ground_truth(fake):
    root, truth = fake
    ds = HO3D(root, split="all")
    assert len(ds) == 4
    for i in range(len(ds)):
        item, t = ds[i], truth["/".join(ds.frames[i])]
        np.testing.assert_array_equal(item["visible"].numpy(), t["visible"])
        assert t["kind"].tolist().count("object") == 5 and (~t["visible"]).sum() == 7
        # keypoints: a uniform scaling plus translation of the planted pixels, inside the crop
        px = item["keypoints_2d_px"].double().numpy()
        box = item["crop_box"].double().numpy()
        np.testing.assert_allclose(px, (t["uv"] - box[:2]) * 256 / box[2], atol=1e-3)
        assert (px >= 0).all() and (px <= 256).all()
        np.testing.assert_allclose(item["obs"].numpy(), px / 128 - 1, atol=1e-5)
        # 3D: OpenGL -> OpenCV, root-relative, bone-normalised
        xyz = t["xyz_gl"] * FLIP
        rel_mm = (xyz - xyz[4]) * 1000
        bone = np.linalg.norm(xyz[5] - xyz[4])
        np.testing.assert_allclose(item["joints_3d_mm"].numpy(), rel_mm, atol=1e-3)
        assert item["scale"].item() == pytest.approx(bone, rel=1e-5)
        np.testing.assert_allclose(item["joints_3d"].numpy(), rel_mm / 1000 / bone, atol=1e-4)
        assert np.linalg.norm(item["joints_3d"][5] - item["joints_3d"][4]) == pytest.approx(1.0, rel=1e-5)
        # camera-frame depth is positive (in front of the camera)
        assert (xyz[:, 2] > 0).all()


def test_global_orient_is_expressed_in_the_camera_frame(fake):
    root, _ = fake
    ds = HO3D(root, split="test")
    item = ds[0]
    meta = pickle.load(open(ds.path(0, "meta"), "rb"), encoding="latin1")
    v = np.array([0.3, -0.1, 0.7])
    in_gl = Rotation.from_rotvec(meta["handPose"][:3].astype(float)).apply(v)
    in_cv = Rotation.from_rotvec(item["global_orient"].double().numpy()).apply(v)
    np.testing.assert_allclose(in_cv, in_gl * FLIP, atol=1e-5)
    np.testing.assert_allclose(item["hand_pose_aa"].numpy(), meta["handPose"][3:], atol=1e-6)
    np.testing.assert_allclose(item["betas"].numpy(), meta["handBeta"], atol=1e-6)


def test_image_crop_shows_the_planted_colours(fake):
    root, truth = fake
    ds = HO3D(root, split="train", images=True, image_size=128)
    item = ds[1]
    t = truth["/".join(ds.frames[1])]
    img = item["image"]
    assert img.shape == (3, 128, 128) and img.min() >= 0 and img.max() <= 1
    px = np.round(item["keypoints_2d_px"].numpy() / 2).astype(int)  # 256 -> 128 crop pixels
    for j in range(21):
        r, g, b = img[:, px[j, 1], px[j, 0]].tolist()
        if t["kind"][j] == "object":
            assert g > r + 0.2, f"joint {j} should be covered by the green object"
        else:
            assert r > g + 0.1 and r > b + 0.1, f"joint {j} should sit on skin colour"


def test_splits_and_sequences(fake):
    root, _ = fake
    assert {s for s, _ in HO3D(root).frames} == {"MC5"}  # default: the held-out sequences
    assert {s for s, _ in HO3D(root, split="train").frames} == {"ABF10"}
    assert len(HO3D(root, split="all")) == 4
    assert {s for s, _ in HO3D(root, split="all", sequences=["ABF10"]).frames} == {"ABF10"}
    assert set(ho3d.EVAL_SEQUENCES) == {"ABF14", "MC5", "SB14", "ShSu13"}


def test_default_collate_batches_items(fake):
    root, _ = fake
    batch = next(iter(DataLoader(HO3D(root, split="all", images=True, image_size=64), batch_size=3)))
    assert batch["obs"].shape == (3, 21, 2) and batch["visible"].dtype == torch.bool
    assert batch["image"].shape == (3, 3, 64, 64) and batch["scale"].shape == (3,)


def test_params_in_a_mano_pca_basis_reconstruct_the_pose(fake):
    root, _ = fake

    class FakeMano:
        hand_components = torch.from_numpy(np.linalg.qr(np.random.default_rng(1).normal(size=(45, 45)))[0].T)
        hand_mean = torch.linspace(-0.2, 0.2, 45)

    item = HO3D(root, mano=FakeMano())[0]
    recon = item["params"].double() @ FakeMano.hand_components + FakeMano.hand_mean.double()
    np.testing.assert_allclose(recon.numpy(), item["hand_pose_aa"].numpy(), atol=1e-5)
    with pytest.raises(TypeError, match="PCA basis"):
        HO3D(root, mano=object())


def test_wrong_root_is_explained(tmp_path, fake):
    with pytest.raises(FileNotFoundError, match="not an HO3D v3 folder"):
        HO3D(tmp_path)
    parent = tmp_path / "downloads"
    shutil.copytree(fake[0], parent / "HO3D_v3")
    with pytest.raises(FileNotFoundError, match="pass root="):
        HO3D(parent)


def test_bad_split_and_empty_selection(fake):
    root, _ = fake
    with pytest.raises(ValueError, match="split must be one of"):
        HO3D(root, split="validation")
    with pytest.raises(ValueError, match="sequences there"):
        HO3D(root, split="all", sequences=["NOPE1"])


def test_frame_without_hand_annotation(fake, tmp_path):
    root, _ = fake
    with pytest.raises(ValueError, match="no 21-joint hand annotation"):
        HO3D(root, split="evaluation")[0]
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    ds = HO3D(copy, split="test")
    meta = pickle.load(open(ds.path(0, "meta"), "rb"), encoding="latin1")
    meta["handJoints3D"] = None
    pickle.dump(meta, open(ds.path(0, "meta"), "wb"), protocol=2)
    with pytest.raises(ValueError, match="handJoints3D is None"):
        ds[0]


@pytest.mark.parametrize("kind", ["rgb", "depth", "seg", "meta"])
def test_missing_files_are_named(fake, tmp_path, kind):
    copy = tmp_path / "copy"
    shutil.copytree(fake[0], copy)
    ds = HO3D(copy, split="test")
    ds.path(0, kind).unlink()
    expected = {"rgb": "rgb", "depth": "depth", "seg": "segmentation", "meta": "meta"}[kind]
    with pytest.raises(FileNotFoundError, match=f"missing HO3D {expected} file"):
        ds[0]
