"""mhe.body models: stand-ins through smplx, regressor, rigidity, mirror symmetry, PCA, errors."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import smplx
import torch

from mhe.body import (
    HAND_PARENTS,
    KNOWN_MD5,
    SMPL_PARENTS,
    TIP_VERTEX_IDS,
    BodyModelFileError,
    StandInWarning,
    build_standin_mano,
    build_standin_smpl,
    load_mano,
    load_smpl,
    read_model_file,
)
from mhe.body import mano as body_mano
from mhe.body import models as M

F64 = torch.float64


@pytest.fixture(scope="module")
def hand():
    return load_mano(standin=True, dtype=F64)


@pytest.fixture(scope="module")
def hand_aa():
    return load_mano(standin=True, use_pca=False, flat_hand_mean=True, dtype=F64)


@pytest.fixture(scope="module")
def body():
    return load_smpl(standin=True, dtype=F64)


def _rand(*shape, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=g, dtype=F64)


def test_standins_load_through_smplx(hand, body):
    assert isinstance(hand, smplx.MANO) and isinstance(body, smplx.SMPL)
    assert hand.is_standin and body.is_standin and hand.side == "right"
    assert hand.num_pose_params == 45 and hand.use_pca
    assert hand.faces.shape == (1538, 3) and hand.faces.dtype == np.int64
    assert body.faces.shape == (13776, 3)
    assert tuple(hand.parents.tolist()) == tuple(HAND_PARENTS[:16])
    out = hand(_rand(3, 3), _rand(3, 45), _rand(3, 10, scale=0.5), _rand(3, 3))
    assert out.joints.shape == (3, 21, 3) and out.vertices.shape == (3, 778, 3)
    assert out.full_pose.shape == (3, 48)
    bo = body(_rand(2, 3), _rand(2, 69, scale=0.3))
    assert bo.joints.shape == (2, 45, 3) and bo.vertices.shape == (2, 6890, 3)


def test_regressor_reproduces_joints_also_posed(hand, body):
    data = read_model_file(hand.source.path)
    jreg = torch.tensor(data["J_regressor"], dtype=F64)
    # Rest pose, then random poses and shapes: the regressor applied to the posed mesh gives the
    # kinematic joints (rings only blend a joint with its parent).
    for k, scale in enumerate((0.0, 1.0)):
        out = hand(_rand(4, 3, scale=scale, seed=k), _rand(4, 45, scale=scale, seed=10 + k),
                   _rand(4, 10, scale=scale, seed=20 + k))
        torch.testing.assert_close(jreg @ out.vertices, out.joints[:, :16], atol=1e-7, rtol=0)
    bdata = read_model_file(body.source.path)
    out = body(_rand(3, 3), _rand(3, 69, scale=0.5), _rand(3, 10))
    torch.testing.assert_close(torch.tensor(bdata["J_regressor"], dtype=F64) @ out.vertices, out.joints[:, :24],
                               atol=1e-7, rtol=0)


def _bones(joints, parents):
    child = [j for j, p in enumerate(parents) if p >= 0]
    par = [p for p in parents if p >= 0]
    return (joints[..., child, :] - joints[..., par, :]).norm(dim=-1)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("use_pca", [True, False])
def test_keypoints_only_path_equals_the_full_smplx_forward(side, use_pca):
    # the fast path re-derives LBS for 16 joints + 5 tips; smplx's full mesh forward is the reference
    m = load_mano(side=side, use_pca=use_pca, flat_hand_mean=False).double()
    g = torch.Generator().manual_seed(4)
    n = 7
    go = torch.randn(n, 3, generator=g, dtype=torch.double)
    hp = 0.7 * torch.randn(n, m.num_pose_params, generator=g, dtype=torch.double)
    betas = torch.randn(n, 10, generator=g, dtype=torch.double)
    transl = torch.randn(n, 3, generator=g, dtype=torch.double)
    full = m(global_orient=go, hand_pose=hp, betas=betas, transl=transl).joints
    torch.testing.assert_close(m.keypoints(go, hp, betas, transl), full, atol=1e-10, rtol=0)
    # leading batch dims, default betas, and gradients agree too
    hp = hp.reshape(n, 1, -1).expand(n, 2, -1).clone().requires_grad_()
    go2 = go[:, None].expand(n, 2, 3)
    fast = m.keypoints(go2, hp)
    assert fast.shape == (n, 2, 21, 3)
    (grad_fast,) = torch.autograd.grad(fast.square().sum(), hp)
    (grad_full,) = torch.autograd.grad(m(global_orient=go2, hand_pose=hp).joints.square().sum(), hp)
    torch.testing.assert_close(grad_fast, grad_full, atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match="hand_pose must have shape"):
        m.keypoints(go, hp[:, 0, :5])


def test_bone_lengths_preserved_under_random_poses(hand, body):
    rest = hand(torch.zeros(1, 3, dtype=F64), torch.zeros(1, 45, dtype=F64))
    posed = hand(_rand(16, 3, scale=2.0), _rand(16, 45, scale=1.5), transl=_rand(16, 3))
    torch.testing.assert_close(_bones(posed.joints, HAND_PARENTS), _bones(rest.joints, HAND_PARENTS).expand(16, -1))
    brest = body(torch.zeros(1, 3, dtype=F64), torch.zeros(1, 69, dtype=F64))
    bposed = body(_rand(4, 3), _rand(4, 69, scale=0.8))
    torch.testing.assert_close(_bones(bposed.joints[:, :24], SMPL_PARENTS),
                               _bones(brest.joints[:, :24], SMPL_PARENTS).expand(4, -1))


def test_left_hand_is_the_mirror_image_of_the_right():
    right = load_mano(standin=True, side="right", dtype=F64)
    left = load_mano(standin=True, side="left", dtype=F64)
    assert left.side == "left" and left.is_standin
    flip_aa = torch.tensor([1.0, -1.0, -1.0], dtype=F64)  # a rotation vector under x -> -x
    flip_x = torch.tensor([-1.0, 1.0, 1.0], dtype=F64)
    go, x, betas = _rand(5, 3), _rand(5, 45), _rand(5, 10)
    r = right(go, x, betas)
    # PCA coefficients carry over unchanged: the left basis is the mirrored right basis.
    lo = left(go * flip_aa, x, betas)
    torch.testing.assert_close(lo.vertices, r.vertices * flip_x)
    torch.testing.assert_close(lo.joints, r.joints * flip_x)
    # In axis-angle, every joint's rotation vector is mirrored.
    ra = load_mano(standin=True, side="right", use_pca=False, flat_hand_mean=True, dtype=F64)
    la = load_mano(standin=True, side="left", use_pca=False, flat_hand_mean=True, dtype=F64)
    aa = _rand(5, 45, scale=0.5, seed=3)
    torch.testing.assert_close(la(go * flip_aa, (aa.view(5, 15, 3) * flip_aa).view(5, 45)).vertices,
                               ra(go, aa).vertices * flip_x)


def test_45_pca_components_really_are_pca(hand, hand_aa):
    data = read_model_file(hand.source.path)
    comps = torch.tensor(data["hands_components"], dtype=F64)
    mean = torch.tensor(data["hands_mean"], dtype=F64)
    go, x = _rand(6, 3), _rand(6, 45)
    manual = mean + x @ comps  # the axis-angle pose the PCA coefficients stand for
    torch.testing.assert_close(hand(go, x).vertices, hand_aa(go, manual).vertices)
    # and it differs from reading the same numbers as axis-angle (what smplx does for 45 by default)
    assert (hand(go, x).vertices - hand_aa(go, x + mean).vertices).abs().max() > 1e-2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trap = smplx.MANO(str(hand.source.path), data_struct=smplx.utils.Struct(**data), use_pca=True,
                          num_pca_comps=45)
    assert trap.use_pca is False  # the smplx behaviour load_mano works around


def test_fewer_pca_components_use_the_leading_rows(hand_aa):
    m12 = load_mano(standin=True, num_pca_comps=12, dtype=F64)
    assert m12.num_pose_params == 12
    data = read_model_file(m12.source.path)
    x = _rand(3, 12)
    manual = torch.tensor(data["hands_mean"]) + x @ torch.tensor(data["hands_components"][:12])
    go = torch.zeros(3, 3, dtype=F64)
    torch.testing.assert_close(m12(go, x).joints, hand_aa(go, manual).joints)


def test_pca_basis_is_orthogonal_and_bounded():
    data = build_standin_mano("right")
    C = data["hands_components"]
    gram = C @ C.T
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-12)
    # A coefficient of +-2 on one component bends no joint by more than ~1 rad.
    per_joint = np.linalg.norm(C.reshape(45, 15, 3), axis=-1)
    assert (2 * per_joint.max(axis=1)).max() <= 1.0 + 1e-9
    assert 0.1 < np.abs(data["hands_mean"]).max() < 0.6  # a gentle curl


def test_tip_vertices_and_keypoint_order(hand):
    out = hand(_rand(2, 3), _rand(2, 45))
    for tips, ids in TIP_VERTEX_IDS.items():
        m = load_mano(standin=True, tips=tips, dtype=F64)
        o = m(_rand(2, 3), _rand(2, 45))
        torch.testing.assert_close(o.joints[:, 16:], o.vertices[:, list(ids)])
        torch.testing.assert_close(o.joints, out.joints)  # the stand-in puts every convention's tip in one place
    # Anatomy in the rest pose: fingertips are the ends of their chains, thumb tip nearest the thumb IP.
    rest = load_mano(standin=True, flat_hand_mean=True, dtype=F64)(torch.zeros(1, 3, dtype=F64),
                                                                  torch.zeros(1, 45, dtype=F64)).joints[0]
    for tip, dip in zip(range(16, 21), (15, 3, 6, 12, 9), strict=True):
        assert torch.argmin((rest[:16] - rest[tip]).norm(dim=-1)) == dip
    middle_bone = (rest[5] - rest[4]).norm()
    assert 0.035 < middle_bone < 0.05
    assert 0.15 < (rest[18] - rest[0]).norm() < 0.21  # wrist to middle tip


def test_thumb_is_opposed():
    m = load_mano(standin=True, use_pca=False, flat_hand_mean=True, dtype=F64)
    rest = m(torch.zeros(1, 3, dtype=F64), torch.zeros(1, 45, dtype=F64)).joints[0]
    # Flexing the thumb about its own (stand-in) flexion axes brings its tip towards the little finger.
    data = read_model_file(m.source.path)
    thumb_flex = torch.zeros(1, 45, dtype=F64)
    comps = torch.tensor(data["hands_components"])
    thumb_flex[:, 36:45] = comps[3, 36:45] / comps[3, 36:45].norm() * 1.2
    bent = m(torch.zeros(1, 3, dtype=F64), thumb_flex).joints[0]
    assert (bent[16] - rest[7]).norm() < (rest[16] - rest[7]).norm() - 0.02
    assert torch.allclose(bent[:16][:13], rest[:13])  # nothing else moved


def test_handedness_from_geometry():
    assert body_mano._handedness(build_standin_mano("right")) == "right"
    assert body_mano._handedness(build_standin_mano("left")) == "left"


def test_leading_batch_dims_and_default_betas(hand):
    go, x = _rand(2, 3, 3), _rand(2, 3, 45)
    out = hand(go, x)
    flat = hand(go.reshape(6, 3), x.reshape(6, 45), torch.zeros(6, 10, dtype=F64))
    assert out.joints.shape == (2, 3, 21, 3)
    torch.testing.assert_close(out.joints.reshape(6, 21, 3), flat.joints)
    single = hand(go[0, 0], x[0, 0])
    assert single.joints.shape == (21, 3)


def test_shape_space_changes_size_consistently(hand):
    go, x = torch.zeros(1, 3, dtype=F64), torch.zeros(1, 45, dtype=F64)
    betas = torch.zeros(1, 10, dtype=F64)
    betas[0, 0] = 1.0
    big, base = hand(go, x, betas).joints, hand(go, x).joints
    # beta_0 scales everything about the wrist by 6 %: every bone grows by that factor.
    torch.testing.assert_close(_bones(big, HAND_PARENTS), 1.06 * _bones(base, HAND_PARENTS))


def test_body_landmarks_are_anatomical(body):
    rest = body(torch.zeros(1, 3, dtype=F64), torch.zeros(1, 69, dtype=F64)).joints[0]
    from mhe.body import SMPL_JOINT_NAMES as N

    at = {n: rest[i] for i, n in enumerate(N)}
    assert at["nose"][1] > at["neck"][1] and at["nose"][2] > at["head"][2]  # above the neck, in front
    assert at["left_eye"][0] > 0 > at["right_eye"][0]
    assert at["left_big_toe"][1] < at["left_knee"][1] and at["left_big_toe"][2] > at["left_heel"][2]
    assert at["left_middle"][0] > at["left_hand"][0] > at["left_wrist"][0] > 0
    assert at["right_middle"][0] < at["right_hand"][0] < 0
    height = rest[:, 1].max() - rest[:, 1].min()
    assert 1.4 < height < 1.9


# ------------------------------------------------------------------------------------------ errors


def test_wrong_input_shapes_are_refused(hand, body):
    with pytest.raises(ValueError, match="PCA"):
        load_mano(standin=True, num_pca_comps=12)(torch.zeros(2, 3), torch.zeros(2, 45))
    with pytest.raises(ValueError, match="betas"):
        hand(torch.zeros(2, 3, dtype=F64), torch.zeros(2, 45, dtype=F64), torch.zeros(2, 300, dtype=F64))
    with pytest.raises(ValueError, match="hand_pose"):
        hand(torch.zeros(2, 3, dtype=F64), torch.zeros(3, 45, dtype=F64))
    with pytest.raises(ValueError, match="body_pose"):
        body(torch.zeros(2, 3, dtype=F64), torch.zeros(2, 72, dtype=F64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        hand(np.zeros((2, 3)), torch.zeros(2, 45, dtype=F64))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="side"):
        load_mano(side="both")
    with pytest.raises(ValueError, match="tips"):
        load_mano(tips="mine")
    with pytest.raises(ValueError, match="num_pca_comps"):
        load_mano(num_pca_comps=46)
    with pytest.raises(ValueError, match="gender"):
        load_smpl(gender="other")


def test_missing_files_name_the_expected_path(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"mano/MANO_RIGHT\.pkl.*mano\.is\.tue\.mpg\.de"):
        load_mano(model_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"smpl/SMPL_FEMALE\.pkl.*smpl\.is\.tue\.mpg\.de"):
        load_smpl(model_dir=tmp_path, gender="female")
    monkeypatch.setenv("MHE_BODY_MODELS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="MANO_LEFT"):
        load_mano(side="left", standin=False)


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data, protocol=2))
    return path


def test_corrupt_and_wrong_shape_files_are_refused(tmp_path):
    good = build_standin_mano("right")
    del good["mhe_standin"]
    bad = _write(tmp_path / "a" / "mano" / "MANO_RIGHT.pkl", {**good, "weights": good["weights"][:, :15]})
    with pytest.raises(BodyModelFileError, match=r"'weights' has shape \(778, 15\).*\(778, 16\)"):
        load_mano(model_dir=bad.parent.parent)
    missing = _write(tmp_path / "b" / "MANO_RIGHT.pkl", {k: v for k, v in good.items() if k != "hands_mean"})
    with pytest.raises(BodyModelFileError, match="lacks the key 'hands_mean'"):
        load_mano(model_dir=missing)
    smpl_as_mano = _write(tmp_path / "c" / "MANO_RIGHT.pkl", build_standin_smpl("neutral"))
    with pytest.raises(BodyModelFileError, match="hands_components|shape"):
        load_mano(model_dir=smpl_as_mano)
    truncated = tmp_path / "d" / "MANO_RIGHT.pkl"
    truncated.parent.mkdir()
    truncated.write_bytes(pickle.dumps(good)[:5000])
    with pytest.raises(BodyModelFileError, match="truncated"):
        load_mano(model_dir=truncated)


def test_left_right_and_gender_mismatches_are_refused(tmp_path):
    left = build_standin_mano("left")
    del left["mhe_standin"]  # judged like a real file: by its name, then by its geometry
    named = _write(tmp_path / "mano" / "MANO_LEFT.pkl", left)
    with pytest.raises(BodyModelFileError, match="LEFT hand file but side='right'"):
        load_mano(model_dir=named, side="right")
    assert load_mano(model_dir=named, side="left").side == "left"
    unnamed = _write(tmp_path / "hand_model.pkl", left)
    with pytest.raises(BodyModelFileError, match="left hand \\(by its geometry\\)"):
        load_mano(model_dir=unnamed, side="right")
    male = build_standin_smpl("male")
    del male["mhe_standin"]
    path = _write(tmp_path / "smpl" / "SMPL_MALE.pkl", male)
    with pytest.raises(BodyModelFileError, match="male SMPL model but gender='female'"):
        load_smpl(model_dir=path, gender="female")
    marked = _write(tmp_path / "x" / "body.pkl", build_standin_smpl("female"))
    with pytest.raises(BodyModelFileError, match="female SMPL model but gender='neutral'"):
        load_smpl(model_dir=marked)


def test_real_file_path_is_used_and_recognised_by_md5(tmp_path, monkeypatch):
    data = build_standin_mano("right")
    del data["mhe_standin"]
    path = _write(tmp_path / "mano" / "MANO_RIGHT.pkl", data)
    monkeypatch.setenv("MHE_BODY_MODELS", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error", StandInWarning)
        m = load_mano()
    assert not m.is_standin and m.source.path == path and m.source.genuine is None
    import hashlib

    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setitem(KNOWN_MD5, md5, "MANO test release")
    m = load_mano()
    assert m.source.genuine == "MANO test release" and "genuine MANO test release" in m.source.describe()


def test_standin_notice_is_given_once_and_smplx_stdout_is_silenced(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MHE_BODY_MODELS", str(tmp_path))
    monkeypatch.setattr(M, "_ANNOUNCED", set())
    with pytest.warns(StandInWarning, match=r"STAND-IN MANO.*mano\.is\.tue\.mpg\.de.*README") as rec:
        load_mano()
        load_mano()
        load_mano(side="left")
    assert sum(issubclass(r.category, StandInWarning) for r in rec) == 1
    with pytest.warns(StandInWarning, match="STAND-IN SMPL"):
        load_smpl()
    assert "shape coefficients" not in capsys.readouterr().out
