"""Synthetic ambiguous bodies (mhe.data.synthetic_bodies): determinism, the camera identity, agreement
with SMPL's forward, the visibility causes, plausible poses, the disk cache and batched generation."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from mhe.body import BODY_BONE, BODY_ROOT, SMPL_TO_BODY, load_smpl
from mhe.body.body_limits import BodyLimits
from mhe.data.render import Occluder
from mhe.data.statistics import body_occlusion_rates
from mhe.data.synthetic_bodies import (
    AMBIGUOUS_MIN_HIDDEN,
    GENERATOR_VERSION,
    SyntheticBodies,
    _capsule_entry,
)
from mhe.geometry import project_orthographic

warnings.filterwarnings("ignore", category=UserWarning)

KEYS = {"obs", "visible", "keypoints_2d_px", "px_per_mm", "joints_3d", "scale", "joints_3d_mm", "params",
        "global_orient", "betas", "camera", "object_occluded", "self_occluded", "outside", "truncated",
        "ambiguous", "occluder"}


@pytest.fixture(scope="module")
def smpl():
    return load_smpl(standin=True)


@pytest.fixture(scope="module")
def data(smpl):
    ds = SyntheticBodies("val", 96, seed=1, occlusion=0.5, truncation=0.4, smpl=smpl)
    return ds, ds.generate_many(chunk_size=40)


def test_item_keys_shapes_and_determinism(data, smpl):
    ds, items = data
    item = ds[3]
    assert set(item) == KEYS
    shapes = {"obs": (17, 2), "visible": (17,), "joints_3d": (17, 3), "params": (69,), "global_orient": (3,),
              "betas": (10,), "camera": (3,), "occluder": (16,), "scale": (), "truncated": (), "ambiguous": ()}
    for key, shape in shapes.items():
        assert tuple(item[key].shape) == shape, key
    assert item["visible"].dtype == torch.bool and item["obs"].dtype == torch.float32
    again = SyntheticBodies("val", 5, seed=1, occlusion=0.5, truncation=0.4, smpl=smpl)[3]
    for key in KEYS:
        assert torch.equal(item[key], again[key]), key
    other = SyntheticBodies("val", 5, seed=2, smpl=smpl)[3]
    assert not torch.equal(item["params"], other["params"])
    assert not torch.equal(item["params"], SyntheticBodies("train", 5, seed=1, smpl=smpl)[3]["params"])


def test_items_are_bit_equal_in_any_chunk_and_one_by_one(data):
    ds, items = data
    for i in (0, 7, 41, 95):
        one = ds.generate(i)
        for key in KEYS:
            assert torch.equal(one[key], items[key][i]), key
    picked = [95, 3, 41, 0, 60]
    for chunk in (1, 2, 16):
        part = ds.generate_many(picked, chunk_size=chunk)
        for key in KEYS:
            assert torch.equal(part[key], items[key][picked]), (chunk, key)


def test_projection_identity_and_smpl_forward(data, smpl):
    ds, items = data
    cam = items["camera"]
    obs = project_orthographic(items["joints_3d_mm"] / 1000, cam[:, 0], cam[:, 1:])
    torch.testing.assert_close(obs, items["obs"], rtol=0, atol=2e-5)
    torch.testing.assert_close(items["keypoints_2d_px"], (items["obs"] + 1) * 128)
    torch.testing.assert_close(items["px_per_mm"], cam[:, 0].exp() * 0.128)
    with torch.no_grad():
        out = smpl(items["global_orient"][:8], items["params"][:8], items["betas"][:8])
    j = out.joints[:, SMPL_TO_BODY]
    rel = j - j[:, BODY_ROOT:BODY_ROOT + 1]
    torch.testing.assert_close(items["joints_3d_mm"][:8], rel * 1000, rtol=0, atol=0.05)
    bone = (rel[:, BODY_BONE[1]] - rel[:, BODY_BONE[0]]).norm(dim=-1)
    torch.testing.assert_close(items["scale"][:8], bone, rtol=0, atol=1e-5)
    torch.testing.assert_close(items["joints_3d"] * items["scale"][:, None, None], items["joints_3d_mm"] / 1000,
                               rtol=0, atol=1e-5)
    # upright: the head above the pelvis in the image (image y grows downwards), the feet below
    assert (items["obs"][:, 10, 1] < items["obs"][:, 0, 1]).float().mean() > 0.9
    assert (items["obs"][:, 3, 1] > items["obs"][:, 0, 1]).float().mean() > 0.7


def test_poses_shapes_and_rotations_are_human(data):
    ds, items = data
    assert BodyLimits().plausible(items["params"], tolerance=0.0).all()
    assert items["betas"].abs().max() <= 1.0
    assert ((items["scale"] > 0.4) & (items["scale"] < 0.65)).all()  # pelvis -> thorax, metres
    # body up (SMPL +y) maps to image up (-y) within the lean and roll limits (20° and 10°)
    R = torch.from_numpy(
        __import__("scipy.spatial.transform", fromlist=["Rotation"]).Rotation.from_rotvec(
            items["global_orient"].double().numpy()).as_matrix())
    up = R[:, :, 1]
    tilt = torch.rad2deg(torch.arccos((-up[:, 1]).clamp(-1, 1)))
    assert tilt.max() < 23.0


def test_visibility_causes(data):
    ds, items = data
    vis, obj, slf, out = (items[k] for k in ("visible", "object_occluded", "self_occluded", "outside"))
    assert torch.equal(vis, ~(obj | slf | out))
    assert torch.equal(out, (items["obs"].abs() > 1).any(-1))
    assert torch.equal(items["truncated"], out.any(-1))
    hidden = (~vis[:, 1:]).sum(-1)
    assert torch.equal(items["ambiguous"], items["truncated"] | (hidden >= AMBIGUOUS_MIN_HIDDEN))
    assert items["truncated"].any() and (~items["truncated"]).any()
    # uncut items lie inside the crop with a margin; cut ones leave at least one keypoint out
    assert (items["obs"][~items["truncated"]].abs() < 0.95).all()
    # the occluder record alone decides object occlusion; items without one have a zero record
    has = items["occluder"][:, 13:].abs().sum(-1) > 0
    assert has.any() and (~has).any()
    assert not obj[~has].any()
    assert (items["occluder"][~has] == 0).all()
    rel = items["joints_3d_mm"].double() / 1000
    for i in has.nonzero().flatten().tolist():
        box = Occluder.from_vector(items["occluder"][i].double())
        assert box.kind == "box"
        assert torch.equal(box.hides(rel[i]), obj[i])
        assert float(box.centre[2] + box.half_size[2]) < float(rel[i, :, 2].min())  # in front of the body
    assert obj[has].any(-1).float().mean() > 0.8


def test_a_box_on_a_limb_hides_its_keypoints(data):
    ds, items = data
    rel = items["joints_3d_mm"][0].double() / 1000
    wrist = rel[13]
    centre = torch.tensor([wrist[0], wrist[1], rel[:, 2].min() - 0.3], dtype=torch.float64)
    box = Occluder("box", centre, torch.eye(3, dtype=torch.float64), torch.tensor([0.04, 0.04, 0.1]).double())
    hides = box.hides(rel)
    assert hides[13] and hides.sum() <= 3
    behind = Occluder("box", centre + torch.tensor([0.0, 0.0, 2.0]).double(), box.rotation, box.half_size)
    assert not behind.hides(rel)[13]


def test_capsule_entry_and_self_occlusion_from_behind(smpl):
    a = torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64)
    b = torch.tensor([[[1.0, 0.0, 1.0]]], dtype=torch.float64)
    r = torch.tensor([[0.1]], dtype=torch.float64)
    xy = torch.tensor([[[0.5, 0.0], [0.5, 0.06], [-0.05, 0.0], [0.5, 0.2]]], dtype=torch.float64)
    e = _capsule_entry(xy, a, b, r)[0, :, 0]
    torch.testing.assert_close(e[:3], torch.tensor([0.9, 1 - 0.08, 1 - math.sqrt(0.1**2 - 0.05**2)]).double())
    assert math.isinf(e[3])
    # seen from the back, the nose is hidden; from the front it is visible
    ds = SyntheticBodies("val", 200, seed=0, occlusion=0.0, truncation=0.0, smpl=smpl)
    items = ds.generate_many()
    R = __import__("scipy.spatial.transform", fromlist=["Rotation"]).Rotation.from_rotvec(
        items["global_orient"].double().numpy()).as_matrix()
    facing = torch.from_numpy(R[:, 2, 2])  # the body's forward (+z) along the viewing axis: > 0 faces away
    nose = items["self_occluded"][:, 9]
    assert nose[facing > 0.8].float().mean() > 0.9
    assert nose[facing < -0.8].float().mean() < 0.1


def test_cache_round_trip(tmp_path, smpl):
    ds = SyntheticBodies("test", 20, seed=4, cache_dir=tmp_path, smpl=smpl)
    first = [ds[i] for i in range(3)]
    files = list(tmp_path.iterdir())
    assert [f.name for f in files] == [ds.cache_key()] and f"v{GENERATOR_VERSION}" in ds.cache_key()
    again = SyntheticBodies("test", 20, seed=4, cache_dir=tmp_path, smpl=smpl)
    fresh = SyntheticBodies("test", 20, seed=4, smpl=smpl)
    for i, item in enumerate(first):
        loaded, made = again[i], fresh[i]
        for key in KEYS:
            assert torch.equal(item[key], loaded[key]), key
            if item[key].dtype == torch.bool:
                assert torch.equal(item[key], made[key]), key
            else:
                torch.testing.assert_close(item[key], made[key], rtol=1e-5, atol=1e-5)
    assert SyntheticBodies("test", 20, seed=5, cache_dir=tmp_path, smpl=smpl).cache_key() != ds.cache_key()


def test_occlusion_rates(data, smpl):
    ds, _ = data
    rates = body_occlusion_rates(ds, max_items=60)
    assert set(rates.index) == {"hidden", "object", "self", "outside", "truncated", "ambiguous", "n_items"}
    assert rates["n_items"] == 60
    for key in ("hidden", "object", "self", "outside", "truncated", "ambiguous"):
        assert 0.0 <= rates[key] <= 1.0
    assert rates["hidden"] >= max(rates["object"], rates["self"], rates["outside"])
    none = body_occlusion_rates(SyntheticBodies("val", 30, occlusion=0.0, truncation=0.0, smpl=smpl))
    assert none["object"] == 0.0 and none["outside"] == 0.0 and none["truncated"] == 0.0


def test_arguments_are_checked(smpl):
    with pytest.raises(ValueError):
        SyntheticBodies("dev", 5, smpl=smpl)
    with pytest.raises(ValueError):
        SyntheticBodies("val", 5, occlusion=1.5, smpl=smpl)
    with pytest.raises(IndexError):
        SyntheticBodies("val", 5, smpl=smpl)[5]
    assert np.isclose(len(SyntheticBodies("val", 7, smpl=smpl)), 7)


def test_the_benchmark_figure_draws_each_occluding_box_over_the_keypoints_it_hides():
    from matplotlib.path import Path as MplPath

    from mhe.viz.body import _occluder_outline

    data = SyntheticBodies("test", 40, seed=1)
    with_box = [data[i] for i in range(40) if data[i]["object_occluded"].any()]
    assert with_box, "no item with an occluder among 40"
    for item in with_box[:5]:
        outline = MplPath(_occluder_outline(item))
        hidden = item["keypoints_2d_px"][item["object_occluded"]].numpy()
        assert outline.contains_points(hidden, radius=1.0).all()
    assert _occluder_outline({**with_box[0], "occluder": torch.zeros(16)}) is None
