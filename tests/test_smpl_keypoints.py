"""BodyModel.keypoints (SMPL joints without the mesh) against forward, and the body keypoint maps."""

from __future__ import annotations

import numpy as np
import pytest
import smplx
import torch

from mhe.body import load_smpl
from mhe.body.keypoints import (
    BODY_BONE,
    BODY_FROM_OPENPOSE,
    BODY_FROM_PROHMR_EXTRA,
    BODY_KEYPOINTS,
    BODY_PARENTS,
    BODY_ROOT,
    OPENPOSE_KEYPOINTS,
    PROHMR_EXTRA_KEYPOINTS,
    SMPL_JOINT_NAMES,
    SMPL_TO_BODY,
    SMPL_TO_OPENPOSE,
)

F64 = torch.float64


@pytest.fixture(scope="module")
def smpl64():
    return load_smpl(standin=True, dtype=F64)


@pytest.fixture(scope="module")
def smpl32():
    return load_smpl(standin=True, dtype=torch.float32)


def _inputs(n, dtype, seed=0, pose_scale=0.6):
    g = torch.Generator().manual_seed(seed)
    go = torch.randn(n, 3, generator=g, dtype=F64)
    pose = pose_scale * torch.randn(n, 69, generator=g, dtype=F64)
    betas = 1.5 * torch.randn(n, 10, generator=g, dtype=F64)
    transl = torch.randn(n, 3, generator=g, dtype=F64)
    return [x.to(dtype) for x in (go, pose, betas, transl)]


@pytest.mark.parametrize("dtype, tol", [(F64, 1e-10), (torch.float32, 1e-5)])
def test_keypoints_equal_forward_joints(smpl64, smpl32, dtype, tol):
    model = smpl64 if dtype == F64 else smpl32
    go, pose, betas, transl = _inputs(16, dtype)
    ref = model(go, pose, betas, transl).joints
    got = model.keypoints(go, pose, betas, transl)
    assert got.shape == (16, 45, 3) and got.dtype == dtype
    torch.testing.assert_close(got, ref, atol=tol, rtol=0)
    body = model.keypoints(go, pose, betas, transl, joints=SMPL_TO_BODY)
    assert body.shape == (16, 17, 3)
    torch.testing.assert_close(body, ref[:, SMPL_TO_BODY], atol=tol, rtol=0)
    # mean shape and no translation, as forward's defaults
    torch.testing.assert_close(model.keypoints(go, pose), model(go, pose).joints, atol=tol, rtol=0)


def test_any_selection_order_repeats_and_negative_indices(smpl64):
    go, pose, betas, transl = _inputs(5, F64, seed=1)
    ref = smpl64(go, pose, betas, transl).joints
    for sel in ([44, 3, 30, 3], [24], [0], [23, 22], np.array([-1, 10, 40]), list(range(24)),
                list(range(24, 45)), [2] * 3, torch.tensor([24, 0, 12])):
        got = smpl64.keypoints(go, pose, betas, transl, joints=sel)
        torch.testing.assert_close(got, ref[:, np.asarray(sel) % 45], atol=1e-10, rtol=0)


def test_dense_landmark_weights_and_blend_shapes(smpl64):
    """The stand-in skins each landmark to one joint; a model whose landmarks blend many joints, with
    pose blend shapes on them, must still match (after prepare_keypoints)."""
    model = load_smpl(standin=True, dtype=F64)
    g = torch.Generator().manual_seed(3)
    vids = model.vertex_joint_selector.extra_joints_idxs
    with torch.no_grad():
        w = torch.rand(len(vids), 24, generator=g, dtype=F64) * (torch.rand(len(vids), 24, generator=g) < 0.3)
        w[:, 0] += 0.1
        model.lbs_weights[vids] = w / w.sum(1, keepdim=True)
        dirs = model.posedirs.reshape(207, -1, 3)
        dirs[:, vids] += 0.01 * torch.randn(207, len(vids), 3, generator=g, dtype=F64)
    model.prepare_keypoints()
    go, pose, betas, transl = _inputs(6, F64, seed=4)
    ref = model(go, pose, betas, transl).joints
    torch.testing.assert_close(model.keypoints(go, pose, betas, transl), ref, atol=1e-10, rtol=0)
    torch.testing.assert_close(model.keypoints(go, pose, betas, transl, joints=[24, 44, 7]), ref[:, [24, 44, 7]],
                               atol=1e-10, rtol=0)


def test_body_rotations_instead_of_axis_angle(smpl64):
    # rotation matrices (what a 6D pose holds) give the keypoints of their axis-angle, gradients included
    go, pose, betas, transl = _inputs(6, F64, seed=3)
    rotations = smplx.lbs.batch_rodrigues(pose.reshape(-1, 3)).reshape(6, 23, 3, 3).requires_grad_(True)
    got = smpl64.keypoints(go, None, betas, transl, joints=SMPL_TO_BODY, body_rotations=rotations)
    torch.testing.assert_close(got, smpl64(go, pose, betas, transl).joints[:, SMPL_TO_BODY], atol=1e-10, rtol=0)
    # the matrices' gradient is the chain rule's through the axis-angle path's own matrices
    weights = torch.randn(6, 17, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    (grad,) = torch.autograd.grad((got * weights).sum(), rotations)
    aa = pose.clone().requires_grad_(True)
    mats = smplx.lbs.batch_rodrigues(aa.reshape(-1, 3)).reshape(6, 23, 3, 3)
    ref = smpl64.keypoints(go, aa, betas, transl, joints=SMPL_TO_BODY)
    want = torch.autograd.grad((ref * weights).sum(), aa)[0]
    torch.testing.assert_close(torch.autograd.grad(mats, aa, grad)[0], want, atol=1e-9, rtol=1e-9)
    with pytest.raises(ValueError, match="body_rotations of shape"):
        smpl64.keypoints(go, pose, body_rotations=rotations)
    with pytest.raises(ValueError, match="body_rotations of shape"):
        smpl64.keypoints(go, None, body_rotations=rotations[:, :22])
    with pytest.raises(ValueError, match="needs body_pose"):
        smpl64.keypoints(go, None)


@pytest.mark.parametrize("joints", [None, SMPL_TO_BODY])
def test_gradients_equal_forward(smpl64, joints):
    sel = np.arange(45) if joints is None else joints
    inputs = [x.requires_grad_(True) for x in _inputs(4, F64, seed=2)]
    weights = torch.randn(4, len(sel), 3, generator=torch.Generator().manual_seed(5), dtype=F64)
    ref = torch.autograd.grad((smpl64(*inputs).joints[:, sel] * weights).sum(), inputs)
    got = torch.autograd.grad((smpl64.keypoints(*inputs, joints=joints) * weights).sum(), inputs)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)


def test_leading_shape(smpl64):
    go, pose, betas, transl = (x.reshape(3, 4, -1) for x in _inputs(12, F64, seed=6))
    got = smpl64.keypoints(go, pose, betas, transl, joints=SMPL_TO_BODY)
    assert got.shape == (3, 4, 17, 3)
    ref = smpl64(go, pose, betas, transl).joints[..., SMPL_TO_BODY, :]
    torch.testing.assert_close(got, ref, atol=1e-10, rtol=0)
    # a single pose without a batch dimension
    one = smpl64.keypoints(go[0, 0], pose[0, 0], betas[0, 0])
    assert one.shape == (45, 3)


def test_float32_inputs_on_float64_model(smpl64):
    go, pose, betas, transl = _inputs(3, torch.float32, seed=7)
    got = smpl64.keypoints(go, pose, betas, transl)
    assert got.dtype == F64
    torch.testing.assert_close(got, smpl64(go, pose, betas, transl).joints, atol=1e-10, rtol=0)


def test_bad_shapes_are_clear_errors(smpl64):
    go, pose, betas, transl = _inputs(2, F64)
    with pytest.raises(ValueError, match=r"body_pose must have shape \(2, 69\)"):
        smpl64.keypoints(go, pose[:, :66], betas)
    with pytest.raises(ValueError, match=r"betas must have shape \(2, 10\)"):
        smpl64.keypoints(go, pose, betas[:1])
    with pytest.raises(ValueError, match=r"global_orient must have shape"):
        smpl64.keypoints(go[:, :2], pose)
    with pytest.raises(TypeError, match="global_orient must be a torch.Tensor"):
        smpl64.keypoints(go.numpy(), pose)
    with pytest.raises(ValueError, match=r"0\.\.44"):
        smpl64.keypoints(go, pose, joints=[45])
    with pytest.raises(ValueError, match="1-D sequence of integer"):
        smpl64.keypoints(go, pose, joints=[[1, 2]])
    with pytest.raises(ValueError, match="1-D sequence of integer"):
        smpl64.keypoints(go, pose, joints=[])


def test_follows_the_model_to_another_dtype():
    model = load_smpl(standin=True, dtype=torch.float32).double()
    go, pose, betas, transl = _inputs(3, F64, seed=8)
    got = model.keypoints(go, pose, betas, transl)
    assert got.dtype == F64
    # the folded buffers were computed in float32 before the cast: float32 rounding, not 1e-10
    torch.testing.assert_close(got, model(go, pose, betas, transl).joints, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------- keypoint maps

# body / OpenPose / ProHMR names that denote the same point under another name
_ALIASES = {
    "thorax": {"neck", "thorax_mpii"},
    "pelvis": {"mid_hip", "pelvis_mpii"},
    "spine": {"spine2", "spine_h36m"},
    "head": {"head_h36m"},
}


def _same(body_name: str, other: str) -> bool:
    return other == body_name or other in _ALIASES.get(body_name, set())


def test_smpl_to_body_names():
    assert len(BODY_KEYPOINTS) == len(SMPL_TO_BODY) == 17 == len(set(BODY_KEYPOINTS))
    names = [SMPL_JOINT_NAMES[i] for i in SMPL_TO_BODY]
    for body, smpl in zip(BODY_KEYPOINTS, names, strict=True):
        if body in SMPL_JOINT_NAMES:
            assert smpl == body, (body, smpl)
        else:
            assert _same(body, smpl), (body, smpl)
    assert BODY_KEYPOINTS[BODY_ROOT] == "pelvis" and BODY_KEYPOINTS[BODY_BONE[1]] == "thorax"


def test_openpose_maps():
    assert len(OPENPOSE_KEYPOINTS) == len(SMPL_TO_OPENPOSE) == 25
    for op, i in zip(OPENPOSE_KEYPOINTS, SMPL_TO_OPENPOSE, strict=True):
        smpl = SMPL_JOINT_NAMES[i]
        assert smpl == op or (op, smpl) == ("mid_hip", "pelvis"), (op, smpl)
    assert len(BODY_FROM_OPENPOSE) == 17
    for body, i in zip(BODY_KEYPOINTS, BODY_FROM_OPENPOSE, strict=True):
        if i >= 0:
            assert _same(body, OPENPOSE_KEYPOINTS[i]), (body, OPENPOSE_KEYPOINTS[i])
        else:  # OpenPose has no such point
            assert body not in OPENPOSE_KEYPOINTS


def test_prohmr_extra_map():
    assert len(PROHMR_EXTRA_KEYPOINTS) == 19 and len(BODY_FROM_PROHMR_EXTRA) == 17
    for body, i in zip(BODY_KEYPOINTS, BODY_FROM_PROHMR_EXTRA, strict=True):
        if i >= 0:
            assert _same(body, PROHMR_EXTRA_KEYPOINTS[i]), (body, PROHMR_EXTRA_KEYPOINTS[i])
        else:
            assert body not in PROHMR_EXTRA_KEYPOINTS
    # pelvis and thorax (root and scale bone) always have ground truth
    assert BODY_FROM_PROHMR_EXTRA[BODY_ROOT] >= 0 and BODY_FROM_PROHMR_EXTRA[BODY_BONE[1]] >= 0


def test_body_parents_is_a_tree_rooted_at_the_root():
    parents = np.asarray(BODY_PARENTS)
    assert parents.shape == (17,)
    assert parents[BODY_ROOT] == -1 and (np.delete(parents, BODY_ROOT) >= 0).all()
    for j in range(17):
        seen, k = set(), j
        while k != BODY_ROOT:
            assert k not in seen, f"cycle through keypoint {j}"
            seen.add(k)
            k = int(parents[k])
    # each bone joins keypoints that are also joined in SMPL's tree (ignoring skipped joints)
    assert BODY_KEYPOINTS[parents[BODY_BONE[1]]] in ("spine", "pelvis")
