"""Readers of real body data: ProHMR's npz files and 3DPW's sequence pickles, on license-free files
written in the same formats from stand-in SMPL bodies."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from torch.utils.data import default_collate

import mhe.data
from mhe.body import BODY_BONE, BODY_KEYPOINTS, BODY_ROOT, SMPL_TO_BODY, load_smpl
from mhe.body.keypoints import BODY_FROM_OPENPOSE, BODY_FROM_PROHMR_EXTRA
from mhe.data.prohmr import (
    AMBIGUOUS_MIN_HIDDEN,
    BODY_ITEM_KEYS,
    EXTRA_FROM_SMPL,
    ProHMRBodies,
    random_camera_bodies,
    write_prohmr_npz,
)
from mhe.data.threedpw import BODY_FROM_COCO18, SMPL_TO_COCO18, ThreeDPW, read_sequence, write_threedpw_sequence
from mhe.errors import DataFileError

F64 = torch.float64
KP = {name: i for i, name in enumerate(BODY_KEYPOINTS)}


@pytest.fixture(scope="module")
def smpl():
    return load_smpl(standin=True, dtype=F64)


@pytest.fixture(scope="module")
def prohmr_file(tmp_path_factory, smpl):
    return write_prohmr_npz(tmp_path_factory.mktemp("prohmr") / "bodies.npz", 12, smpl=smpl, seed=3)


def _load(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _save(path, arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _check_item(item, crop_size=256):
    assert set(item) == set(BODY_ITEM_KEYS)
    shapes = {"obs": (17, 2), "visible": (17,), "keypoints_2d_px": (17, 2), "joints_3d": (17, 3), "scale": (),
              "joints_3d_mm": (17, 3), "params": (69,), "global_orient": (3,), "betas": (10,), "px_per_mm": (),
              "has_3d": (), "has_smpl": (), "ambiguous": ()}
    for key, shape in shapes.items():
        assert item[key].shape == shape, key
        bool_key = key in ("visible", "has_3d", "has_smpl", "ambiguous")
        assert item[key].dtype == (torch.bool if bool_key else torch.float32), key
    torch.testing.assert_close(item["keypoints_2d_px"], (item["obs"] + 1) * crop_size / 2, equal_nan=True)


def test_exports():
    assert mhe.data.ProHMRBodies is ProHMRBodies and mhe.data.ThreeDPW is ThreeDPW
    assert mhe.data.write_prohmr_npz is write_prohmr_npz
    assert mhe.data.write_threedpw_sequence is write_threedpw_sequence
    from mhe.data import synthetic_bodies

    assert AMBIGUOUS_MIN_HIDDEN == synthetic_bodies.AMBIGUOUS_MIN_HIDDEN  # one definition for every body dataset


# ------------------------------------------------------------------------------------------ ProHMR


def test_prohmr_round_trip(prohmr_file, smpl):
    ds = ProHMRBodies(prohmr_file)
    raw = _load(prohmr_file)
    assert len(ds) == 12 and ds.imgname[0].startswith("images/")
    # the writer's ground truth, drawn again from the same seed
    truth = random_camera_bodies(12, np.random.default_rng(3), smpl)
    body = truth["joints"][:, SMPL_TO_BODY]  # (12, 17, 3) camera frame, metres
    uv = body[..., :2] / body[..., 2:] * 1000.0 + 500.0  # the writer's camera
    side = 200.0 * raw["scale"]
    px = (uv - (raw["center"] - side[:, None] / 2)[:, None]) * (256 / side)[:, None, None]
    for i in range(len(ds)):
        item = ds[i]
        _check_item(item)
        torch.testing.assert_close(item["keypoints_2d_px"], torch.tensor(px[i], dtype=torch.float32), atol=1e-3,
                                   rtol=0)
        rel = body[i] - body[i, BODY_ROOT]
        scale = np.linalg.norm(body[i, BODY_BONE[1]] - body[i, BODY_BONE[0]])
        torch.testing.assert_close(item["joints_3d_mm"], torch.tensor(rel * 1000, dtype=torch.float32),
                                   atol=1e-3, rtol=0)
        torch.testing.assert_close(item["joints_3d"], torch.tensor(rel / scale, dtype=torch.float32), atol=1e-6,
                                   rtol=0)
        assert item["scale"].item() == pytest.approx(scale, rel=1e-6)
        torch.testing.assert_close(item["global_orient"], torch.tensor(truth["global_orient"][i]).float())
        torch.testing.assert_close(item["params"], torch.tensor(truth["body_pose"][i]).float())
        torch.testing.assert_close(item["betas"], torch.tensor(truth["betas"][i]).float())
        assert item["visible"].all() and item["has_3d"] and item["has_smpl"] and not item["ambiguous"]
        assert torch.isnan(item["px_per_mm"])  # no intrinsics in the format
        # the stored parameters reproduce the 3D keypoints through the body model
        t = lambda a: torch.as_tensor(a, dtype=F64)[None]  # noqa: E731
        again = smpl.keypoints(t(item["global_orient"]), t(item["params"]), t(item["betas"]),
                               joints=SMPL_TO_BODY)[0]
        torch.testing.assert_close((again - again[BODY_ROOT]).float() * 1000, item["joints_3d_mm"], atol=0.05,
                                   rtol=0)
    batch = default_collate([ds[0], ds[1]])
    assert batch["obs"].shape == (2, 17, 2) and batch["has_3d"].dtype == torch.bool


def test_prohmr_extra_keypoints_written_where_smpl_has_them(prohmr_file):
    raw = _load(prohmr_file)
    assert (raw["extra_keypoints_2d"][..., 2] > 0).sum(-1).tolist() == [int((EXTRA_FROM_SMPL >= 0).sum())] * 12
    assert (raw["extra_keypoints_2d"][:, EXTRA_FROM_SMPL < 0, 2] == 0).all()
    assert (raw["body_keypoints_3d"][..., 3] == 1).all()
    for key, shape in (("body_keypoints_2d", (12, 25, 3)), ("extra_keypoints_3d", (12, 19, 4)),
                       ("body_pose", (12, 72)), ("center", (12, 2)), ("scale", (12,)), ("imgname", (12,))):
        assert raw[key].shape == shape, key


def test_prohmr_crop_by_hand(tmp_path, prohmr_file):
    raw = _load(prohmr_file)
    raw["center"][0] = (500.0, 400.0)
    raw["scale"][0] = 2.0  # a 400 px box: x in [300, 700), y in [200, 600)
    pelvis, ankle = BODY_FROM_PROHMR_EXTRA[KP["pelvis"]], BODY_FROM_PROHMR_EXTRA[KP["right_ankle"]]
    raw["extra_keypoints_2d"][0, pelvis] = (350.0, 300.0, 1.0)
    raw["extra_keypoints_2d"][0, ankle] = (900.0, 300.0, 0.7)  # right of the box
    item = ProHMRBodies(_save(tmp_path / "hand.npz", raw))[0]
    # (350 - 300) * 256 / 400 = 32 px -> 32 / 128 - 1 = -0.75; (300 - 200) * 0.64 = 64 px -> -0.5
    torch.testing.assert_close(item["keypoints_2d_px"][KP["pelvis"]], torch.tensor([32.0, 64.0]))
    torch.testing.assert_close(item["obs"][KP["pelvis"]], torch.tensor([-0.75, -0.5]))
    assert item["keypoints_2d_px"][KP["right_ankle"], 0].item() == pytest.approx(384.0)
    assert item["visible"][KP["pelvis"]] and not item["visible"][KP["right_ankle"]]
    assert item["ambiguous"]  # a keypoint outside the crop: truncated
    assert ProHMRBodies(_save(tmp_path / "hand.npz", raw)).crop_box(0) == (300.0, 200.0, 400.0)


def test_prohmr_sources_fallback_and_visibility(tmp_path, prohmr_file):
    raw = _load(prohmr_file)
    hip_e, hip_o = BODY_FROM_PROHMR_EXTRA[KP["right_hip"]], BODY_FROM_OPENPOSE[KP["right_hip"]]
    raw["extra_keypoints_2d"][0, hip_e, 2] = 0.0  # no ground truth: OpenPose's detection is used
    raw["body_keypoints_2d"][0, hip_o, :2] += 10.0
    raw["extra_keypoints_2d"][1, hip_e, 2] = 0.0  # neither source: unknown
    raw["body_keypoints_2d"][1, hip_o, 2] = 0.0
    raw["extra_keypoints_2d"][1, BODY_FROM_PROHMR_EXTRA[KP["spine"]], 2] = 0.0  # OpenPose has no spine
    # four more hidden: with the two above, AMBIGUOUS_MIN_HIDDEN of the 16
    for name in ("left_wrist", "left_elbow", "left_knee", "right_ankle"):
        raw["extra_keypoints_2d"][1, BODY_FROM_PROHMR_EXTRA[KP[name]], 2] = 0.0
        raw["body_keypoints_2d"][1, BODY_FROM_OPENPOSE[KP[name]], 2] = 0.0
    ds, ref = ProHMRBodies(_save(tmp_path / "mixed.npz", raw)), ProHMRBodies(prohmr_file)
    side = 200.0 * raw["scale"][0]
    moved = ds[0]["keypoints_2d_px"][KP["right_hip"]] - ref[0]["keypoints_2d_px"][KP["right_hip"]]
    torch.testing.assert_close(moved, torch.full((2,), 10.0 * 256 / side), atol=1e-3, rtol=0)
    item = ds[1]
    hidden = [KP[n] for n in ("right_hip", "spine", "left_wrist", "left_elbow", "left_knee", "right_ankle")]
    assert torch.isnan(item["obs"][hidden]).all() and not item["visible"][hidden].any()
    assert AMBIGUOUS_MIN_HIDDEN == 6 and int((~item["visible"]).sum()) == 6 and item["ambiguous"]
    assert not ds[0]["ambiguous"]
    _check_item(item)


def test_prohmr_missing_3d_and_smpl(tmp_path, prohmr_file):
    raw = _load(prohmr_file)
    pelvis_e, pelvis_o = BODY_FROM_PROHMR_EXTRA[KP["pelvis"]], BODY_FROM_OPENPOSE[KP["pelvis"]]
    raw["extra_keypoints_3d"][0, pelvis_e, 3] = 0.0
    raw["body_keypoints_3d"][0, pelvis_o, 3] = 0.0
    raw["has_body_pose"][1] = 0.0
    ds = ProHMRBodies(_save(tmp_path / "partial.npz", raw))
    assert not ds[0]["has_3d"] and torch.isnan(ds[0]["joints_3d"]).all() and torch.isnan(ds[0]["scale"])
    assert ds[0]["has_smpl"] and ds[1]["has_3d"] and not ds[1]["has_smpl"]
    assert torch.isnan(ds[1]["params"]).all() and torch.isnan(ds[1]["betas"]).all()
    # a 2D-only file (as ProHMR's COCO / MPII ones): the optional keys may be absent
    slim = {k: raw[k] for k in ("imgname", "center", "scale", "body_keypoints_2d")}
    item = ProHMRBodies(_save(tmp_path / "slim.npz", slim))[0]
    _check_item(item)
    assert not item["has_3d"] and not item["has_smpl"]
    assert torch.isnan(item["obs"][KP["spine"]]).all() and not item["visible"][KP["spine"]]


def test_prohmr_missing_key_is_a_clear_error(tmp_path, prohmr_file):
    raw = _load(prohmr_file)
    del raw["center"]
    path = _save(tmp_path / "nocenter.npz", raw)
    with pytest.raises(DataFileError, match=r"nocenter\.npz has no key 'center' \(expected shape \(N, 2\)\)"):
        ProHMRBodies(path)


def test_prohmr_wrong_shape_is_a_clear_error(tmp_path, prohmr_file):
    raw = _load(prohmr_file)
    raw["body_keypoints_2d"] = raw["body_keypoints_2d"][:, :24]
    path = _save(tmp_path / "short.npz", raw)
    with pytest.raises(DataFileError, match=r"short\.npz: key 'body_keypoints_2d' has shape \(12, 24, 3\), "
                                            r"expected \(12, 25, 3\)"):
        ProHMRBodies(path)
    raw = _load(prohmr_file)
    raw["scale"] = raw["scale"][:5]
    with pytest.raises(DataFileError, match=r"key 'scale' has shape \(5,\), expected \(12,\)"):
        ProHMRBodies(_save(tmp_path / "scale.npz", raw))
    with pytest.raises(FileNotFoundError, match="no ProHMR dataset file"):
        ProHMRBodies(tmp_path / "absent.npz")


# -------------------------------------------------------------------------------------------- 3DPW


@pytest.fixture(scope="module")
def pw_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("3dpw")
    write_threedpw_sequence(root, "downtown_test_00", 40, people=2, seed=1)
    write_threedpw_sequence(root, "office_test_01", 25, people=1, seed=2)
    write_threedpw_sequence(root, "courtyard_train_00", 10, people=1, seed=3, split="train")
    return root


def _raw_sequence(path):
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def test_threedpw_file_format(pw_root):
    seq = _raw_sequence(pw_root / "sequenceFiles/test/downtown_test_00.pkl")
    assert seq["sequence"] == "downtown_test_00" and seq["genders"] == ["m", "f"]
    assert [len(b) for b in seq["betas"]] == [10, 300]
    assert seq["poses"][0].shape == (40, 72) and seq["trans"][1].shape == (40, 3)
    assert seq["poses2d"][0].shape == (40, 3, 18) and seq["jointPositions"][1].shape == (40, 72)
    assert seq["cam_poses"].shape == (40, 4, 4) and seq["cam_intrinsics"].shape == (3, 3)
    assert seq["campose_valid"][0].shape == (40,)
    with open(pw_root / "sequenceFiles/test/downtown_test_00.pkl", "rb") as f:
        assert f.read(2) == b"\x80\x02"  # pickle protocol 2, readable by Python 2


def test_threedpw_round_trip(pw_root):
    models = {g: load_smpl(standin=True, gender=g, dtype=F64) for g in ("male", "female")}
    ds = ThreeDPW(pw_root, standin=True)
    assert ds.split == "test" and [s["sequence"] for s in ds.sequences] == ["downtown_test_00", "office_test_01"]
    raw = {s["sequence"]: _raw_sequence(s["path"]) for s in ds.sequences}
    for i in range(0, len(ds), 7):
        item = ds[i]
        _check_item(item)
        s, p, f = ds.index[i]
        seq = raw[ds.sequences[s]["sequence"]]
        model = models["male" if seq["genders"][p] == "m" else "female"]
        pose = torch.as_tensor(seq["poses"][p][f], dtype=F64)[None]
        betas = torch.as_tensor(np.asarray(seq["betas"][p])[:10], dtype=F64)[None]
        trans = torch.as_tensor(seq["trans"][p][f], dtype=F64)[None]
        world = model(pose[:, :3], pose[:, 3:], betas, trans).joints[0, SMPL_TO_BODY].numpy()  # the full mesh path
        E = seq["cam_poses"][f]
        cam = world @ E[:3, :3].T + E[:3, 3]
        # kinematic joints agree with the file's own jointPositions
        given = seq["jointPositions"][p][f].reshape(24, 3) @ E[:3, :3].T + E[:3, 3]
        kin = SMPL_TO_BODY < 24
        np.testing.assert_allclose(cam[kin], given[SMPL_TO_BODY[kin]], atol=1e-9)
        rel = cam - cam[BODY_ROOT]
        torch.testing.assert_close(item["joints_3d_mm"], torch.tensor(rel * 1000, dtype=torch.float32), atol=1e-3,
                                   rtol=0)
        K = seq["cam_intrinsics"]
        uv = (cam @ K.T)[:, :2] / cam[:, 2:]
        lo, hi = uv.min(0), uv.max(0)
        side = 1.2 * (hi - lo).max()
        px = (uv - ((lo + hi) / 2 - side / 2)) * 256 / side
        torch.testing.assert_close(item["keypoints_2d_px"], torch.tensor(px, dtype=torch.float32), atol=1e-3, rtol=0)
        assert item["px_per_mm"].item() == pytest.approx(K[0, 0] * 256 / side / (cam[BODY_ROOT, 2] * 1000), rel=1e-5)
        orient = Rotation.from_matrix(E[:3, :3] @ Rotation.from_rotvec(seq["poses"][p][f][:3]).as_matrix())
        got = Rotation.from_rotvec(item["global_orient"].double().numpy())
        assert (got.inv() * orient).magnitude() < 1e-5
        torch.testing.assert_close(item["params"], torch.tensor(seq["poses"][p][f][3:], dtype=torch.float32))
        torch.testing.assert_close(item["betas"], betas[0].float())
        assert item["has_3d"] and item["has_smpl"]
        # visible: the COCO detection's confidence (proxies for pelvis / spine / head), all inside the crop
        conf = seq["poses2d"][p][f][2]
        det = np.array([conf[c] > 0 if c >= 0 else True for c in BODY_FROM_COCO18])
        det[KP["pelvis"]] = conf[8] > 0 and conf[11] > 0
        det[KP["spine"]] = det[KP["pelvis"]] and conf[1] > 0
        det[KP["head"]] = conf[0] > 0 and conf[1] > 0
        assert item["visible"].tolist() == det.tolist()
        assert bool(item["ambiguous"]) == (int((~det[1:]).sum()) >= AMBIGUOUS_MIN_HIDDEN)
    # the other split and a chosen sequence
    assert len(ThreeDPW(pw_root, "train", standin=True)) > 0
    only = ThreeDPW(pw_root, sequences=["office_test_01"], standin=True)
    assert {only.sequences[s]["sequence"] for s in only.index[:, 0]} == {"office_test_01"}


def test_threedpw_poses2d_are_projections_of_smpl(pw_root):
    """The writer's detections are the COCO-18 keypoints of the same SMPL bodies (what a detector sees)."""
    seq = _raw_sequence(pw_root / "sequenceFiles/test/office_test_01.pkl")
    model = load_smpl(standin=True, gender="male", dtype=F64)
    pose = torch.as_tensor(seq["poses"][0], dtype=F64)
    betas = torch.as_tensor(seq["betas"][0], dtype=F64).expand(len(pose), 10)
    world = model.keypoints(pose[:, :3], pose[:, 3:], betas, torch.as_tensor(seq["trans"][0]),
                            joints=SMPL_TO_COCO18).numpy()
    E = seq["cam_poses"]
    cam = np.einsum("fab,fjb->fja", E[:, :3, :3], world) + E[:, None, :3, 3]
    uvw = cam @ seq["cam_intrinsics"].T
    np.testing.assert_allclose(seq["poses2d"][0][:, :2].transpose(0, 2, 1), uvw[..., :2] / uvw[..., 2:], atol=1e-6)


def test_threedpw_campose_valid_respected(pw_root):
    ds = ThreeDPW(pw_root, standin=True)
    expected = []
    for s, seq in enumerate(ds.sequences):
        valid = _raw_sequence(seq["path"])["campose_valid"]
        for p, v in enumerate(valid):
            assert 0 < int(np.sum(v)) < len(v)  # the writer leaves some frames invalid
            expected += [(s, p, f) for f in np.flatnonzero(v)]
    assert [tuple(r) for r in ds.index.tolist()] == expected
    assert len(ds) == len(expected)


def test_threedpw_missing_key_is_a_clear_error(tmp_path):
    path = write_threedpw_sequence(tmp_path, "broken", 5, seed=4)
    seq = _raw_sequence(path)
    del seq["cam_intrinsics"]
    with open(path, "wb") as f:
        pickle.dump(seq, f, protocol=2)
    with pytest.raises(DataFileError, match=r"broken\.pkl: key 'cam_intrinsics' is missing"):
        ThreeDPW(tmp_path, standin=True)
    seq["cam_intrinsics"] = np.eye(3)
    seq["poses"][0] = seq["poses"][0][:, :69]
    with open(path, "wb") as f:
        pickle.dump(seq, f, protocol=2)
    with pytest.raises(DataFileError, match=r"key 'poses' of person 0 has shape \(5, 69\), expected \(5, 72\)"):
        read_sequence(path)
    with pytest.raises(FileNotFoundError, match="sequenceFiles/validation"):
        ThreeDPW(tmp_path, "validation")
