"""Missing data is data: files written in the real formats with their real quirks (keypoints missing in
both sources, zero confidences, no 3D, no SMPL, NaN where a value is marked missing) are read, trained on
and evaluated, with every figure computed on the usable joints only; values that are damaged (NaN or inf
where the file says they exist, a box of infinite size) are refused with one line naming the file, the
key, the item and the value."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from test_body_readers import _load, _save
from torch.utils.data import DataLoader

from mhe import metrics
from mhe.body import BODY_KEYPOINTS, BODY_ROOT
from mhe.body.keypoints import BODY_FROM_OPENPOSE, BODY_FROM_PROHMR_EXTRA
from mhe.data.prohmr import ProHMRBodies, write_prohmr_npz
from mhe.data.threedpw import ThreeDPW, write_threedpw_sequence
from mhe.errors import BodyModelFileError, DataFileError

KP = {name: i for i, name in enumerate(BODY_KEYPOINTS)}
F64 = torch.float64


# -- files with the real quirks ---------------------------------------------------------------------


def _drop_2d(raw, item, name, fill=0.0):
    """Keypoint ``name`` of ``item`` missing in both 2D sources, as ProHMR's files mark it: confidence 0 (and
    coordinates ``fill``: 0 in the real files; NaN must work as well, since it is never read)."""
    e, o = BODY_FROM_PROHMR_EXTRA[KP[name]], BODY_FROM_OPENPOSE[KP[name]]
    if e >= 0:
        raw["extra_keypoints_2d"][item, e] = (fill, fill, 0.0)
    if o >= 0:
        raw["body_keypoints_2d"][item, o] = (fill, fill, 0.0)


def _drop_3d(raw, item, name, fill=0.0):
    e, o = BODY_FROM_PROHMR_EXTRA[KP[name]], BODY_FROM_OPENPOSE[KP[name]]
    if e >= 0:
        raw["extra_keypoints_3d"][item, e] = (fill, fill, fill, 0.0)
    if o >= 0:
        raw["body_keypoints_3d"][item, o] = (fill, fill, fill, 0.0)


def quirky_prohmr(path, n, seed):
    """A ProHMR file of ``n`` >= 6 people where item 0 misses the right hip in 2D (zeros, confidence 0),
    item 1 the head in 3D (NaN, confidence 0), item 2 has no 3D at all (no pelvis), item 3 no SMPL (NaN
    pose with has_body_pose 0), item 4 nothing in 2D (skipped) and item 5 misses its left wrist in 2D
    with NaN coordinates."""
    raw = _load(write_prohmr_npz(path, n, seed=seed))
    _drop_2d(raw, 0, "right_hip")
    _drop_3d(raw, 1, "head", fill=np.nan)
    _drop_3d(raw, 2, "pelvis")
    raw["body_pose"][3] = np.nan
    raw["has_body_pose"][3] = 0.0
    raw["extra_keypoints_2d"][4, :, 2] = 0.0
    raw["body_keypoints_2d"][4, :, 2] = 0.0
    _drop_2d(raw, 5, "left_wrist", fill=np.nan)
    return _save(path, raw)


@pytest.fixture(scope="module")
def quirky(tmp_path_factory):
    return quirky_prohmr(tmp_path_factory.mktemp("quirky") / "test.npz", 8, seed=5)


def test_prohmr_missing_keypoints_are_not_visible_and_unusable_items_are_counted(quirky):
    ds = ProHMRBodies(quirky)
    assert len(ds) == 7 and ds.skipped_items == 1 and isinstance(ds.skipped_items, int)
    assert "1 of 8 items" in ds.skipped_reason and "no visible keypoint" in ds.skipped_reason
    assert ds.file_index.tolist() == [0, 1, 2, 3, 5, 6, 7]
    assert ds.imgname[4] == "images/synthetic_000005.jpg"  # names follow the items kept
    hip, wrist, head = KP["right_hip"], KP["left_wrist"], KP["head"]
    assert not ds[0]["visible"][hip] and torch.isnan(ds[0]["keypoints_2d_px"][hip]).all()
    assert int(ds[0]["visible"].sum()) == 16 and ds[0]["has_3d"]
    assert ds[1]["has_3d"] and torch.isnan(ds[1]["joints_3d_mm"][head]).all()
    assert int(torch.isfinite(ds[1]["joints_3d_mm"]).all(-1).sum()) == 16
    assert not ds[2]["has_3d"] and torch.isnan(ds[2]["joints_3d_mm"]).all() and torch.isnan(ds[2]["scale"])
    assert not ds[3]["has_smpl"] and torch.isnan(ds[3]["params"]).all() and ds[3]["has_3d"]
    assert not ds[4]["visible"][wrist] and ds[4]["visible"].sum() == 16
    # the crop of an item kept is still its own: item 4 of the dataset is row 5 of the file
    raw = _load(quirky)
    assert ds.crop_box(4) == pytest.approx((raw["center"][5][0] - 100 * raw["scale"][5],
                                            raw["center"][5][1] - 100 * raw["scale"][5], 200 * raw["scale"][5]))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r["scale"].__setitem__(2, np.inf), r"key 'scale' of item 2 \(images/synthetic_000002\.jpg\) is inf"),
        (lambda r: r["scale"].__setitem__(1, 0.0), r"key 'scale' of item 1 .* is 0\.0; expected a finite positive"),
        (lambda r: r["center"].__setitem__((3, 1), np.nan), r"key 'center' of item 3 .* is \[.*nan\]; expected finite"),
        (lambda r: r["body_pose"].__setitem__((1, 7), np.nan),
         r"key 'body_pose' of item 1 .*, value 7 is nan; expected finite values where has_body_pose is 1"),
        (lambda r: r["betas"].__setitem__((0, 2), -np.inf), r"key 'betas' of item 0 .*, value 2 is -inf"),
        (lambda r: r["body_keypoints_2d"].__setitem__((0, 3, 2), np.nan),
         r"key 'body_keypoints_2d' of item 0 .*, keypoint 3 is .*nan\]; its confidence .* must be finite"),
        (lambda r: r["extra_keypoints_2d"].__setitem__((2, 4, 2), -1.0),
         r"keypoint 4 .* must be finite and not negative"),
        (lambda r: r["extra_keypoints_3d"].__setitem__((1, 0, 1), np.inf),
         r"key 'extra_keypoints_3d' of item 1 .*, keypoint 0 .* positive confidence needs finite coordinates"),
        (lambda r: r["has_betas"].__setitem__(4, np.nan), r"key 'has_betas' of item 4 .* is nan; expected 0 or 1"),
    ],
)
def test_prohmr_damaged_numbers_are_refused_by_file_key_item_and_value(tmp_path, change, message):
    raw = _load(write_prohmr_npz(tmp_path / "ok.npz", 6, seed=2))
    change(raw)
    path = _save(tmp_path / "bad.npz", raw)
    with pytest.raises(DataFileError, match=message) as info:
        ProHMRBodies(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_prohmr_files_with_nothing_usable_are_refused(tmp_path):
    raw = _load(write_prohmr_npz(tmp_path / "ok.npz", 4, seed=2))
    dark = {k: v.copy() for k, v in raw.items()}
    dark["extra_keypoints_2d"][..., 2] = 0.0
    dark["body_keypoints_2d"][..., 2] = 0.0
    with pytest.raises(DataFileError, match="none of its 4 items has a visible keypoint"):
        ProHMRBodies(_save(tmp_path / "dark.npz", dark))
    empty = {k: v[:0] for k, v in raw.items()}
    with pytest.raises(DataFileError, match=r"empty\.npz holds no items"):
        ProHMRBodies(_save(tmp_path / "empty.npz", empty))
    (tmp_path / "random.npz").write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(DataFileError, match="cannot be read as .npz: it is not a numpy") as info:
        ProHMRBodies(tmp_path / "random.npz")
    assert "allow_pickle" not in str(info.value)
    with open(tmp_path / "array.npz", "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(DataFileError, match="is a single .npy array"):
        ProHMRBodies(tmp_path / "array.npz")


# -- metrics on the usable joints -------------------------------------------------------------------


def _umeyama_np(x, y):
    """Similarity alignment of x (N, 3) onto y (N, 3), written out (Umeyama 1991): the aligned x."""
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    u, d, vt = np.linalg.svd(yc.T @ xc / len(x))
    s = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s[2, 2] = -1
    R = u @ s @ vt
    c = np.trace(np.diag(d) @ s) / xc.var(0).sum()
    return c * xc @ R.T + my


def _metrics_np(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, valid, root):
    """The figures written out per image in NumPy, on visible non-root joints (2D) and labelled ones (3D)."""
    bh, pa, ah, mean = [], [], [], []
    for b in range(len(pred_xyz)):
        vis = visible[b].copy()
        vis[root] = False
        if vis.any():
            ah.append(max(np.linalg.norm(pred_uv[b, s, vis] - gt_uv[b, vis], axis=-1).mean()
                          for s in range(pred_uv.shape[1])))
        v = valid[b]
        if v.any():
            errs = [np.linalg.norm(pred_xyz[b, s, v] - gt_xyz[b, v], axis=-1).mean() for s in range(pred_xyz.shape[1])]
            bh.append(min(errs))
            mean.append(np.mean(errs))
        if v.sum() >= 3:
            pa.append(min(np.linalg.norm(_umeyama_np(pred_xyz[b, s, v], gt_xyz[b, v]) - gt_xyz[b, v], axis=-1).mean()
                          for s in range(pred_xyz.shape[1])))
    return {"mpjpe_bh": np.mean(bh), "pa_mpjpe_bh": np.mean(pa), "ah": np.mean(ah), "mpjpe_mean": np.mean(mean),
            "n_images_3d": float(valid.any(-1).sum())}


def _random_case(seed, B=5, S=4, J=6):
    g = torch.Generator().manual_seed(seed)
    pred_xyz = torch.randn(B, S, J, 3, generator=g, dtype=F64) * 30
    gt_xyz = torch.randn(B, J, 3, generator=g, dtype=F64) * 30
    pred_uv = torch.rand(B, S, J, 2, generator=g, dtype=F64) * 256
    gt_uv = torch.rand(B, J, 2, generator=g, dtype=F64) * 256
    visible = torch.rand(B, J, generator=g) > 0.3
    return pred_xyz, gt_xyz, pred_uv, gt_uv, visible


def test_metrics_on_labelled_joints_match_numpy():
    pred_xyz, gt_xyz, pred_uv, gt_uv, visible = _random_case(0)
    valid = torch.ones(5, 6, dtype=torch.bool)
    valid[0, 2] = False  # one joint without a 3D label
    valid[1] = False  # an image without any
    valid[2, :4] = False  # two labelled joints: too few for PA (that image is skipped there only)
    gt_xyz[~valid] = float("nan")
    gt_uv[~visible] = float("nan")
    pred_xyz[1] = float("nan")  # e.g. millimetres of a body whose scale is unknown
    out = metrics.evaluate(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root=0, valid_3d=valid)
    want = _metrics_np(pred_xyz.numpy(), gt_xyz.numpy(), pred_uv.numpy(), gt_uv.numpy(), visible.numpy(),
                       valid.numpy(), 0)
    for key, value in want.items():
        assert out[key] == pytest.approx(value, rel=1e-9), key
    assert all(math.isfinite(out[k]) for k in ("pjd_3d_occ", "pjd_2d_vis", "rd"))


def test_a_joint_without_label_everywhere_equals_dropping_it():
    pred_xyz, gt_xyz, pred_uv, gt_uv, visible = _random_case(1)
    valid = torch.ones(5, 6, dtype=torch.bool)
    valid[:, 5] = False
    visible[:, 5] = False  # and no 2D position either: a keypoint missing from the file
    keep = [0, 1, 2, 3, 4]
    dropped = metrics.evaluate(pred_xyz[:, :, keep], gt_xyz[:, keep], pred_uv[:, :, keep], gt_uv[:, keep],
                               visible[:, keep], root=0)
    gt_xyz[:, 5] = float("inf")
    gt_uv[:, 5] = float("nan")
    masked = metrics.evaluate(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root=0, valid_3d=valid)
    for key in ("mpjpe_bh", "pa_mpjpe_bh", "mpjpe_mean", "ah", "pjd_2d_vis", "pjd_3d_occ", "pjd_3d_vis"):
        assert masked[key] == pytest.approx(dropped[key], rel=1e-9), key


def test_metrics_refuse_nan_where_a_value_is_said_to_exist():
    pred_xyz, gt_xyz, pred_uv, gt_uv, visible = _random_case(2)
    bad_uv = gt_uv.clone()
    b, j = (int(i) for i in visible.nonzero()[0])
    bad_uv[b, j] = float("nan")
    with pytest.raises(ValueError, match=r"gt_uv contains NaN or inf at a visible joint.*first at index"):
        metrics.evaluate(pred_xyz, gt_xyz, pred_uv, bad_uv, visible, root=0)
    bad_xyz = gt_xyz.clone()
    bad_xyz[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="pass valid_3d"):
        metrics.evaluate(pred_xyz, bad_xyz, pred_uv, gt_uv, visible, root=0)
    with pytest.raises(TypeError, match=r"valid_3d must be a \(B, J\) = \(5, 6\) bool tensor"):
        metrics.evaluate(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root=0, valid_3d=torch.ones(5, 6))
    # NaN ground truth at joints that are neither visible nor labelled is never read
    gt_uv[~visible] = float("nan")
    valid = torch.ones(5, 6, dtype=torch.bool)
    valid[3, 3] = False
    gt_xyz[3, 3] = float("nan")
    table = metrics.per_joint_table(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root=0, valid_3d=valid)
    assert np.isfinite(table[["pjd_2d", "pjd_3d", "err_3d_mean", "err_3d_bh"]].to_numpy()).all()
    item = metrics.item_metrics(pred_xyz[3], gt_xyz[3], pred_uv[3], gt_uv[3], visible[3], 0, valid_3d=valid[3])
    assert math.isfinite(item["mpjpe_bh"])


def test_a_hand_computed_image_without_3d_is_skipped():
    """Two images, two hypotheses, three joints (root 0). Image 1 has no 3D label and NaN ground truth."""
    pred_xyz = torch.zeros(2, 2, 3, 3, dtype=F64)
    pred_xyz[0, 0, 1] = torch.tensor([3.0, 4.0, 0.0])  # hypothesis 0: joint 1 off by 5 mm -> mean 5/3
    pred_xyz[0, 1, 2] = torch.tensor([0.0, 0.0, 12.0])  # hypothesis 1: joint 2 off by 12 -> mean 4
    gt_xyz = torch.zeros(2, 3, 3, dtype=F64)
    gt_xyz[1] = float("nan")
    pred_uv = torch.zeros(2, 2, 3, 2, dtype=F64)
    pred_uv[:, 1, 1] = torch.tensor([6.0, 8.0])  # worst hypothesis: 10 px on joint 1
    gt_uv = torch.zeros(2, 3, 2, dtype=F64)
    gt_uv[:, 2] = float("nan")  # joint 2 has no 2D position: not visible
    visible = torch.tensor([[True, True, False], [True, True, False]])
    valid = torch.tensor([[True, True, True], [False, False, False]])
    out = metrics.evaluate(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root=0, valid_3d=valid)
    assert out["mpjpe_bh"] == pytest.approx(5 / 3) and out["mpjpe_mean"] == pytest.approx((5 / 3 + 4) / 2)
    assert out["ah"] == pytest.approx(10.0)  # both images count in 2D
    assert out["n_images_3d"] == 1.0 and out["n_images_vis"] == 2.0


# -- the losses -------------------------------------------------------------------------------------


def test_losses_leave_missing_labels_out():
    from mhe.objectives import Hypotheses, _keypoint_l1, _l1_3d

    pred = torch.zeros(2, 3, 4, 3, requires_grad=True)
    target = torch.ones(2, 4, 3)
    target[1, 2] = float("nan")  # one joint without a 3D label
    hyp = Hypotheses(params=torch.zeros(2, 3, 1), log_q=torch.zeros(2, 3), log_prior=torch.zeros(2, 3),
                     pred_obs=torch.zeros(2, 3, 4, 2), joints_3d=pred)
    batch = {"joints_3d": target, "has_3d": torch.tensor([True, True])}
    l1 = _l1_3d(hyp, batch, 1.0)
    assert l1.item() == pytest.approx(1.0)  # |0 - 1| on every labelled coordinate
    l1.backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad[1, :, 2] == 0).all() and (pred.grad[0] != 0).all()
    # an item whose has_3d is false takes no part, whatever its numbers
    batch = {"joints_3d": torch.cat([torch.ones(1, 4, 3), torch.full((1, 4, 3), 7.0)]),
             "has_3d": torch.tensor([True, False])}
    assert _l1_3d(hyp, batch).item() == pytest.approx(1.0)
    # ProHMR's keypoint L1: a NaN target where the keypoint is not visible is selected out, not multiplied
    obs = torch.tensor([[[1.0, 1.0], [float("nan"), float("nan")]]])
    vis = torch.tensor([[True, False]])
    assert _keypoint_l1(torch.zeros(1, 2, 2, 2), obs, vis).tolist() == [[2.0, 2.0]]


# -- 3DPW -------------------------------------------------------------------------------------------


def _rewrite(path, change):
    with open(path, "rb") as f:
        seq = pickle.load(f, encoding="latin1")
    change(seq)
    with open(path, "wb") as f:
        pickle.dump(seq, f, protocol=2)


def test_threedpw_unusable_frames_and_sequences(tmp_path):
    write_threedpw_sequence(tmp_path, "good", 6, seed=1, invalid_fraction=0.0)
    dark = write_threedpw_sequence(tmp_path, "dark", 5, seed=2, invalid_fraction=0.0)
    write_threedpw_sequence(tmp_path, "nocam", 4, seed=3, invalid_fraction=1.0)

    def undetect(seq):
        seq["poses2d"][0][:2, 2, :] = 0.0  # no keypoint detected in frames 0 and 1

    _rewrite(dark, undetect)
    ds = ThreeDPW(tmp_path, standin=True)
    assert len(ds) == 6 + 3 and ds.skipped_items == 2
    assert "2 of 11" in ds.skipped_reason and "nocam" in ds.skipped_reason
    assert {ds.describe(i).split()[0] for i in range(len(ds))} == {"good", "dark"}
    assert all(ds[i]["visible"].any() for i in range(len(ds)))
    only = tmp_path / "only_nocam"
    write_threedpw_sequence(only, "nocam", 4, seed=3, invalid_fraction=1.0)
    with pytest.raises(DataFileError, match="has no usable item .*nocam have campose_valid 0 in every frame"):
        ThreeDPW(only, standin=True)
    with pytest.raises(FileNotFoundError, match="does not exist: give the 3DPW folder"):
        ThreeDPW(tmp_path / "absent")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s["poses"][0].__setitem__((2, 5), np.nan), r"key 'poses' \(person 0, frame 2, entry 5\) is nan"),
        (lambda s: s["trans"][0].__setitem__((0, 1), np.inf), r"key 'trans' \(person 0, frame 0, entry 1\) is inf"),
        (lambda s: s["cam_poses"].__setitem__((3, 0, 3), np.nan),
         r"key 'cam_poses' \(frame 3, entry \(0, 3\)\) is nan"),
        (lambda s: s["cam_intrinsics"].__setitem__((0, 0), 0.0), "focal lengths .* must be positive"),
        (lambda s: s["poses2d"][0].__setitem__((1, 2, 4), np.nan),
         r"person 0, frame 1\): the confidence of keypoint 4 \(right_wrist\) is nan"),
        (lambda s: s["betas"][0].__setitem__(3, np.inf), r"key 'betas' \(person 0, entry 3\) is inf"),
    ],
)
def test_threedpw_damaged_numbers_are_refused(tmp_path, change, message):
    path = write_threedpw_sequence(tmp_path, "seq", 5, seed=4)
    _rewrite(path, change)
    with pytest.raises(DataFileError, match=message) as info:
        ThreeDPW(tmp_path, standin=True)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# -- HO3D and body-model files ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("handJoints3D", (3, 1, np.nan), r"key 'handJoints3D' at \(3, 1\) is nan"),
        ("handJoints3D", (0, 2, 0.5), "puts joint 0 at .* not in front of the camera"),
        ("camMat", (0, 0, 0.0), "focal lengths"),
        ("handPose", (7, np.inf), "key 'handPose' at 7 is inf"),
    ],
)
def test_ho3d_damaged_numbers_are_refused(tmp_path, key, value, message):
    from mhe.data import HO3D
    from mhe.data.fake_ho3d import write_fake_ho3d

    root = tmp_path / "ho3d"
    write_fake_ho3d(root, frames_per_sequence=1)
    ds = HO3D(root, split="test")
    meta_path = ds.path(0, "meta")
    with open(meta_path, "rb") as f:
        meta = pickle.load(f, encoding="latin1")
    arr = np.array(meta[key], dtype=np.float64)
    arr[value[:-1]] = value[-1]
    meta[key] = arr
    with open(meta_path, "wb") as f:
        pickle.dump(meta, f, protocol=2)
    with pytest.raises(DataFileError, match=message) as info:
        ds[0]
    assert str(meta_path) in str(info.value)


def test_body_model_file_with_nan_is_refused(tmp_path):
    from mhe.body.files import read_model_file, validate_model_arrays
    from mhe.body.standin import ensure_standin

    data = read_model_file(ensure_standin("mano", "right"))
    expected = {"v_template": (778, 3), "f": (1538, 3)}
    validate_model_arrays(data, expected, "MANO_RIGHT.pkl", "MANO")
    bad = dict(data, v_template=np.array(data["v_template"], dtype=np.float64))
    bad["v_template"][10, 1] = np.nan
    with pytest.raises(BodyModelFileError, match=r"key 'v_template' holds 1 NaN or infinite value\(s\), the first nan "
                                                 r"at \(10, 1\)"):
        validate_model_arrays(bad, expected, "MANO_RIGHT.pkl", "MANO")
    faces = dict(data, f=np.array(data["f"]) + 1)
    with pytest.raises(BodyModelFileError, match="key 'f' holds vertex indices from 1 to 778"):
        validate_model_arrays(faces, expected, "MANO_RIGHT.pkl", "MANO")


# -- evaluate and train on such files ---------------------------------------------------------------


@pytest.fixture(scope="module")
def prohmr_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("prohmr_root")
    quirky_prohmr(root / "train.npz", 16, seed=11)
    quirky_prohmr(root / "val.npz", 8, seed=12)
    quirky_prohmr(root / "test.npz", 8, seed=13)
    return root


@pytest.mark.parametrize("config", ["body_mhentropy_3d", "body_nll_3d"])
def test_train_and_evaluate_on_files_with_missing_data(prohmr_root, tmp_path, config):
    """A few steps with validation on files with every quirk, then ``evaluate_checkpoint``: the metrics equal
    the figures written out on the usable joints of the predictions."""
    from mhe.evaluation import EVAL_SEED, collect_predictions
    from mhe.lab.config_io import load_config
    from mhe.lab.experiments import evaluate_checkpoint, load_model, train_experiment

    cfg = load_config(config, [
        "data.dataset=prohmr", f"data.root={prohmr_root}", f"train.out_dir={tmp_path / 'run'}", "train.steps=2",
        "train.batch_size=8", "train.eval_every=2", "train.eval_samples=3", "train.progress=false",
        "data.train_size=null", "data.val_size=null", "data.test_size=null", "device=cpu"])
    result = train_experiment(cfg, overwrite=True)
    assert result.train_terms and all(math.isfinite(v) for v in result.train_terms.values())
    val = result.val_metrics
    assert math.isfinite(val["mpjpe_bh"]) and math.isfinite(val["ah"]) and val["n_images"] == 7.0

    out = evaluate_checkpoint(result.checkpoint, split="test", num_samples=3, batch_size=4, device="cpu")
    assert out["items"] == 7
    model, _ = load_model(result.checkpoint, device="cpu")
    data = ProHMRBodies(prohmr_root / "test.npz")
    p = collect_predictions(model, DataLoader(data, batch_size=4), num_samples=3, temperature=0.8, seed=EVAL_SEED)
    items = [data[i] for i in range(len(data))]
    gt_xyz = torch.stack([it["joints_3d_mm"] for it in items]).double().numpy()
    gt_uv = torch.stack([it["keypoints_2d_px"] for it in items]).double().numpy()
    visible = torch.stack([it["visible"] for it in items]).numpy()
    has_3d = torch.stack([it["has_3d"] for it in items]).numpy()
    valid = np.isfinite(gt_xyz).all(-1) & has_3d[:, None]
    assert valid.sum(-1).tolist() == [17, 16, 0, 17, 17, 17, 17]  # the head of item 1, nothing of item 2
    assert visible.sum(-1).tolist()[:5] == [16, 17, 17, 17, 16]  # the hip of item 0, the wrist of row 5
    want = _metrics_np(p["pred_xyz"].double().numpy(), gt_xyz, p["pred_uv"].double().numpy(), gt_uv, visible,
                       valid, BODY_ROOT)
    for key, value in want.items():
        assert out["metrics"][key] == pytest.approx(value, rel=1e-6), key


def test_mhe_evaluate_on_files_with_missing_data_and_on_a_damaged_one(prohmr_root, tmp_path, capsys):
    from mhe.lab.cli import main

    code = main(["evaluate", "--checkpoint", "body_mhentropy", "--data", "prohmr", "--root", str(prohmr_root),
                 "--samples", "2", "--device", "cpu"])
    out = capsys.readouterr()
    assert code == 0 and "Traceback" not in out.err
    assert "mpjpe_bh" in out.out and "n_images_3d" in out.out
    raw = _load(prohmr_root / "test.npz")
    raw["scale"][6] = np.inf
    bad = tmp_path / "bad"
    bad.mkdir()
    _save(bad / "test.npz", raw)
    code = main(["evaluate", "--checkpoint", "body_mhentropy", "--data", "prohmr", "--root", str(bad),
                 "--samples", "2", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"{bad / 'test.npz'}: key 'scale' of item 6 (images/synthetic_000006.jpg) is inf" in err


# -- found by probing beyond the issue --------------------------------------------------------------


def test_label_counts_and_arguments_of_the_readers_and_writers(quirky, tmp_path):
    ds = ProHMRBodies(quirky)
    assert (ds.items_with_3d, ds.items_with_smpl) == (6, 6)  # item 2 has no 3D, item 3 no SMPL
    assert ds.items_with_3d == sum(bool(ds[i]["has_3d"]) for i in range(len(ds)))
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder; give the .npz file"):
        ProHMRBodies(tmp_path / "folder.npz")
    with pytest.raises(ValueError, match="n must be a positive number of people, got 0"):
        write_prohmr_npz(tmp_path / "none.npz", 0)
    with pytest.raises(ValueError, match="frames must be a positive integer, got 0"):
        write_threedpw_sequence(tmp_path, "none", 0)
    path = write_threedpw_sequence(tmp_path, "walk", 3, seed=1, people=2)
    assert path.name == "walk.pkl"  # the sequence's own name, whatever the other arguments
    with pytest.raises(ValueError, match=r"sequences is empty: name some of \['walk'\]"):
        ThreeDPW(tmp_path, sequences=[], standin=True)
    with pytest.raises(TypeError, match=r"sequences must be a list of sequence names, e.g. \['walk'\]"):
        ThreeDPW(tmp_path, sequences="walk", standin=True)


def test_metrics_refuse_an_empty_set():
    with pytest.raises(ValueError, match="no images to score"):
        metrics.evaluate(torch.zeros(0, 2, 3, 3), torch.zeros(0, 3, 3), torch.zeros(0, 2, 3, 2), torch.zeros(0, 3, 2),
                         torch.zeros(0, 3, dtype=torch.bool), root=0)


def test_threedpw_person_behind_the_camera_has_no_scale_and_evaluates(tmp_path):
    from mhe.evaluation import score_predictions

    path = write_threedpw_sequence(tmp_path, "behind", 3, seed=1, invalid_fraction=0.0)
    _rewrite(path, lambda s: s["cam_poses"].__setitem__((1, 2, 3), -20.0))  # frame 1: everyone behind the camera
    ds = ThreeDPW(tmp_path, standin=True)
    with pytest.warns(UserWarning, match="behind the camera"):
        item = ds[1]
    assert torch.isnan(item["px_per_mm"]) and not item["visible"].any()
    assert ds[0]["px_per_mm"] > 0
    items = [ds[0], item]
    gt = torch.stack([it["joints_3d_mm"] for it in items])
    uv = torch.stack([it["keypoints_2d_px"] for it in items])
    p = {"pred_xyz": gt[:, None].repeat(1, 2, 1, 1), "gt_xyz": gt, "gt_uv": uv,
         "pred_uv": torch.nan_to_num(uv)[:, None].repeat(1, 2, 1, 1),
         "visible": torch.stack([it["visible"] for it in items]),
         "px_per_mm": torch.stack([it["px_per_mm"] for it in items])}
    out = score_predictions(p, root=BODY_ROOT)
    assert out["mpjpe_bh"] == 0.0 and out["px_per_mm"] == pytest.approx(float(ds[0]["px_per_mm"]))


def test_meshes_of_items_without_3d_or_smpl_hold_no_nan(quirky):
    from torch.utils.data import default_collate

    from mhe.lab.experiments import load_model

    model, _ = load_model("body_mhentropy", device="cpu")
    ds = ProHMRBodies(quirky)
    batch = default_collate([ds[0], ds[2], ds[3]])  # item 2: no 3D (scale unknown), item 3: no SMPL
    torch.manual_seed(0)
    verts = model.predict_meshes(batch, 2, 0.8)
    assert torch.isfinite(verts).all()
    torch.manual_seed(0)
    pred = model.predict(batch, 2, 0.8)["xyz_mm"]
    assert torch.isfinite(pred[0]).all() and torch.isnan(pred[1]).all()  # keypoints need the true scale
    truth = model.ground_truth_meshes(batch)
    assert torch.isfinite(truth[:2]).all() and torch.isnan(truth[2]).all()
    assert model.ground_truth_meshes(default_collate([ds[3]])) is None


def test_reader_sizes_are_checked(quirky, tmp_path):
    from mhe.data import HO3D
    from mhe.data.fake_ho3d import write_fake_ho3d

    with pytest.raises(ValueError, match="crop_size must be a positive integer"):
        ProHMRBodies(quirky, crop_size=0)
    write_threedpw_sequence(tmp_path / "pw", "seq", 2, seed=1)
    with pytest.raises(ValueError, match="box_factor must be a positive number"):
        ThreeDPW(tmp_path / "pw", box_factor=0, standin=True)
    write_fake_ho3d(tmp_path / "ho3d", frames_per_sequence=1)
    with pytest.raises(ValueError, match="image_size must be a positive integer"):
        HO3D(tmp_path / "ho3d", image_size=0)


def test_fake_ho3d_arguments_and_numpy_root_index(tmp_path):
    from mhe.data.fake_ho3d import write_fake_ho3d

    with pytest.raises(ValueError, match="frames_per_sequence must be a positive integer, got 0"):
        write_fake_ho3d(tmp_path / "none", frames_per_sequence=0)
    assert not (tmp_path / "none").exists()
    pred_xyz, gt_xyz, pred_uv, gt_uv, visible = _random_case(3)
    as_int = metrics.evaluate(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root=2)
    as_numpy = metrics.evaluate(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root=np.int64(2))
    assert as_numpy["ah"] == as_int["ah"] and as_numpy["pjd_3d_occ"] == as_int["pjd_3d_occ"]


def test_evaluation_names_the_ground_truth_it_needs():
    from mhe.evaluation import collect_predictions

    class Never(torch.nn.Module):
        def predict(self, *args):
            raise AssertionError("not reached")

    with pytest.raises(ValueError,
                       match=r"needs items with joints_3d_mm, keypoints_2d_px .* have \['obs', 'visible'\]"):
        collect_predictions(Never(), [{"obs": torch.zeros(1, 17, 2), "visible": torch.ones(1, 17, dtype=torch.bool)}])


def test_a_2d_only_file_and_an_empty_split(tmp_path):
    """ProHMR's 2D-only files (COCO, MPII) have no 3D keys: the 3D figures are undefined (None in the result),
    the 2D ones are computed. A 3DPW split folder without sequences says where it looked."""
    from mhe.lab.experiments import evaluate_checkpoint

    raw = _load(write_prohmr_npz(tmp_path / "full.npz", 5, seed=6))
    slim = {k: raw[k] for k in ("imgname", "center", "scale", "body_keypoints_2d", "body_pose", "has_body_pose")}
    slim["has_body_pose"][:] = 0.0
    (tmp_path / "slim").mkdir()
    _save(tmp_path / "slim" / "test.npz", slim)
    out = evaluate_checkpoint("body_mhentropy", dataset="prohmr", root=str(tmp_path / "slim"), num_samples=2,
                              device="cpu")
    m = out["metrics"]
    assert m["mpjpe_bh"] is None and m["pa_mpjpe_bh"] is None and m["pjd_3d_occ"] is None and m["rd"] is None
    assert m["n_images_3d"] == 0.0 and m["ah"] > 0 and out["items"] == 5
    (tmp_path / "pw" / "sequenceFiles" / "test").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no 3DPW sequence files at .*sequenceFiles/test/\*\.pkl"):
        ThreeDPW(tmp_path / "pw")


def test_threedpw_messages_place_the_value(tmp_path):
    path = write_threedpw_sequence(tmp_path, "one", 1, seed=2, invalid_fraction=0.0)  # a single frame
    _rewrite(path, lambda s: s["poses"][0].__setitem__((0, 4), np.nan))
    with pytest.raises(DataFileError,
                       match=r"'poses' \(person 0, frame 0, entry 4\) is nan; .* \(1 frame\(s\) in all\)"):
        ThreeDPW(tmp_path, standin=True)
    _rewrite(path, lambda s: (s["poses"][0].__setitem__((0, 4), 0.0), s["cam_intrinsics"].__setitem__((1, 2), np.inf)))
    with pytest.raises(DataFileError, match=r"'cam_intrinsics' \(entry \(1, 2\)\) is inf; expected finite"):
        ThreeDPW(tmp_path, standin=True)


@pytest.mark.parametrize("config, overrides, hint", [
    ("body_nll", [], "body_mhentropy or body_prohmr_2d"),
    ("body_nll_3d", ["objective.w_nll=0", "objective.w_params=0", "objective.w_betas=0"],
     "objective.w_3d_mode=0"),
])
def test_terms_scoring_labels_the_files_lack_are_refused(tmp_path, config, overrides, hint):
    """A ProHMR training file with no pose labels (or no 3D keypoints) cannot train an objective that scores
    them: refused before the first step, saying which terms and what to use instead (it trained on zeros)."""
    from mhe.config import ConfigError
    from mhe.data.prohmr import write_prohmr_npz
    from mhe.lab.config_io import load_config
    from mhe.lab.experiments import train_experiment

    root = tmp_path / "prohmr"
    root.mkdir()
    for split, seed in (("train", 1), ("val", 2)):
        path = write_prohmr_npz(root / f"{split}.npz", 6, seed=seed)
        arrays = dict(np.load(path))
        arrays["has_body_pose"] = np.zeros_like(arrays["has_body_pose"])
        arrays["has_betas"] = np.zeros_like(arrays["has_betas"])
        if "3d" in config:  # labels kept, 3D keypoints dropped (confidence 0)
            arrays = dict(np.load(path))
            for key in ("body_keypoints_3d", "extra_keypoints_3d"):
                arrays[key][..., -1] = 0.0
        np.savez(path, **arrays)
    cfg = load_config(config, ["data.dataset=prohmr", f"data.root={root}", f"train.out_dir={tmp_path / 'run'}",
                               "train.steps=2", "train.batch_size=4", "train.progress=false", "device=cpu",
                               "data.train_size=null", "data.val_size=null", "data.test_size=null", *overrides])
    with pytest.raises(ConfigError, match=hint.replace(".", r"\.")):
        train_experiment(cfg, overwrite=True)
    assert not (tmp_path / "run" / "last.pt").exists()
