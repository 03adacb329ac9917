"""mhe.data.synthetic's settings: HO3D's official visibility rule, the HO3D-like rotation range,
``px_per_mm``, the occlusion rates -- and the default items left as they were."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
import torch

from mhe.body import HAND_ROOT
from mhe.data.hand_poses import HO3D_MAX_TILT, palm_tilt
from mhe.data.ho3d import official_visibility
from mhe.data.render import Occluder, depth_in_windows, pixel_centres, rasterize
from mhe.data.statistics import occlusion_rates, occlusion_stats
from mhe.data.synthetic import SyntheticHands
from mhe.geometry import crop_to_pixels, project_orthographic

NON_ROOT = [j for j in range(21) if j != HAND_ROOT]
MASKS = ("visible", "object_occluded", "self_occluded", "outside")


@pytest.fixture(scope="module")
def settings(mano):
    """The four settings on the same 120 test items (occlusion 0.4, the shipped configs'), generated at once."""
    out = {}
    for vis in ("depth", "official"):
        for rot in ("uniform", "ho3d"):
            ds = SyntheticHands("test", size=120, occlusion=0.4, visibility=vis, rotation=rot, mano=mano)
            out[vis, rot] = (ds, ds.generate_many())
    return out


def assert_bit_equal(stacked, reference, msg=""):
    """Every field of two stacked item sets equal to the last bit (same keys, shapes and dtypes)."""
    assert set(stacked) == set(reference), msg
    for key in reference:
        assert stacked[key].dtype == reference[key].dtype and torch.equal(stacked[key], reference[key]), (msg, key)


# --- the defaults -----------------------------------------------------------------------------------


def test_defaults_are_the_first_settings_and_leave_items_and_cache_names_alone(mano):
    default = SyntheticHands("test", size=20, mano=mano)
    assert (default.visibility, default.rotation) == ("depth", "uniform")
    explicit = SyntheticHands("test", size=20, mano=mano, visibility="depth", rotation="uniform")
    assert explicit.cache_key() == default.cache_key()
    assert "vis" not in default.cache_key() and "rot" not in default.cache_key()
    items = [default[i] for i in range(20)]
    for a, b in zip(items, (explicit[i] for i in range(20)), strict=True):
        for key in a:
            assert torch.equal(a[key], b[key]), key
    keys = ("visible", "object_occluded", "self_occluded")
    masks = torch.cat([torch.stack([it[k] for it in items]) for k in keys], 1)
    if getattr(getattr(mano, "source", None), "is_standin", False):
        # Recorded from the generator before the settings existed (the stand-in MANO of mhe.body).
        assert [int(m.sum()) for m in masks.split(21, 1)] == [203, 137, 130]
        assert hashlib.sha256(masks.numpy().tobytes()).hexdigest()[:16] == "cc883be8cb312d4b"


def test_bad_settings_are_refused(mano):
    with pytest.raises(ValueError, match="visibility must be one of"):
        SyntheticHands("test", size=2, mano=mano, visibility="ho3d")
    with pytest.raises(ValueError, match="rotation must be one of"):
        SyntheticHands("test", size=2, mano=mano, rotation="random")


def test_cache_key_changes_with_each_setting(mano):
    keys = {(v, r): SyntheticHands("val", size=10, mano=mano, visibility=v, rotation=r).cache_key()
            for v in ("depth", "official") for r in ("uniform", "ho3d")}
    assert len(set(keys.values())) == 4
    assert "visofficial" in keys["official", "uniform"] and "rotho3d" in keys["depth", "ho3d"]


# --- per item and many at once ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"visibility": "official"},
        {"rotation": "ho3d", "occluder_kind": "cylinder", "seed": 2},
        {"visibility": "official", "rotation": "ho3d", "occlusion": 0.6},
        {"visibility": "official", "occlusion": 0.0},
        {"visibility": "official", "rotation": "ho3d", "images": True, "image_size": 32},
    ],
)
def test_items_do_not_depend_on_the_chunks_for_the_settings(mano, kwargs):
    ds = SyntheticHands("train", size=100, mano=mano, **kwargs)
    indices = [0, 97, 5, 42, 13, 64, 7, 31, 88, 20]
    stacked = ds.generate_many(indices, chunk_size=4)
    assert_bit_equal(ds.generate_many(indices), stacked, "one chunk")
    items = [ds[i] for i in indices]  # each item generated once, then stacked field by field
    assert_bit_equal({k: torch.stack([item[k] for item in items]) for k in stacked}, stacked, "dataset[i]")


# --- the official visibility rule -------------------------------------------------------------------


def test_official_visibility_changes_only_the_masks(settings):
    (_, depth), (_, official) = settings["depth", "uniform"], settings["official", "uniform"]
    for key in depth:
        if key not in MASKS:
            assert torch.equal(depth[key], official[key]), key
    assert torch.equal(depth["outside"], official["outside"])
    differ = (depth["visible"] != official["visible"]).any(-1)
    assert 0.2 < differ.float().mean() < 1.0  # many items, not all
    # The causes are disjoint under the official rule, and visible is what none of them hides.
    assert not (official["object_occluded"] & official["self_occluded"]).any()
    hidden = official["object_occluded"] | official["self_occluded"] | official["outside"]
    assert torch.equal(official["visible"], ~hidden)


def full_maps(ds, item):
    """The whole 256 px crop rendered from scratch: the hand's z-buffer and the object's entry depth."""
    with torch.no_grad():
        out = ds.mano(item["global_orient"][None], item["params"][None], item["betas"][None])
    joints, verts = out.joints[0].float(), out.vertices[0].float()
    vrel, rel = verts - joints[HAND_ROOT], joints - joints[HAND_ROOT]
    cam = item["camera"]
    zbuf, _ = rasterize(project_orthographic(vrel, cam[0], cam[1:]), vrel[:, 2], ds.faces, 256)
    enter = torch.full_like(zbuf, float("inf"))
    if item["occluder"][13:].abs().sum() > 0:
        s = float(torch.exp(cam[0].double()))
        rays = (pixel_centres(256).reshape(-1, 2) - cam[1:].double()) / s
        enter = Occluder.from_vector(item["occluder"].double()).entry_depth(rays).reshape(256, 256)
    return rel, zbuf.numpy(), enter.numpy()


def test_official_visibility_is_ho3ds_rule_on_the_rendered_crop(settings):
    ds, official = settings["official", "uniform"]
    _, depth = settings["depth", "uniform"]
    differ = (depth["visible"] != official["visible"]).any(-1) & (official["occluder"][:, 13:].abs().sum(-1) > 0)
    picked = differ.nonzero().squeeze(1)[:2].tolist()
    assert len(picked) == 2
    for i in picked:
        item = ds[i]  # full_maps below repeats its MANO forward on its own
        rel, zbuf, enter = full_maps(ds, item)
        uv, z = item["keypoints_2d_px"].numpy(), rel[:, 2].double().numpy()
        hand = np.isfinite(zbuf)
        front = hand & (zbuf <= enter)  # hand pixels with the hand in front of the object
        seen = official_visibility(uv, z, front, np.minimum(zbuf, enter), window=9, tolerance=0.040)
        alone = official_visibility(uv, z, hand, zbuf, window=9, tolerance=0.040)
        outside = item["outside"].numpy()
        np.testing.assert_array_equal(item["visible"].numpy(), seen & ~outside)
        np.testing.assert_array_equal(item["self_occluded"].numpy(), ~alone)
        np.testing.assert_array_equal(item["object_occluded"].numpy(), alone & ~seen)


def test_depth_in_windows_is_the_rasterized_map(mano, settings):
    ds, items = settings["official", "uniform"]
    i = 3
    rel, zbuf, _ = full_maps(ds, {k: v[i] for k, v in items.items()})
    with torch.no_grad():
        out = ds.mano(items["global_orient"][i:i + 1], items["params"][i:i + 1], items["betas"][i:i + 1])
    vrel = (out.vertices[0] - out.joints[0, HAND_ROOT]).float()
    uv = project_orthographic(vrel, items["camera"][i, 0], items["camera"][i, 1:])
    corners = torch.tensor([[[-4, -4], [250, 100], [0, 0], [120, 130], [300, 10]]])  # off the crop too
    corners = torch.cat([corners, torch.trunc(crop_to_pixels(project_orthographic(
        rel, items["camera"][i, 0], items["camera"][i, 1:]))).long()[None] - 4], 1)
    got = depth_in_windows(uv[None], vrel[None, :, 2], ds.faces, 256, corners, 9)[0]
    padded = np.full((256 + 2 * 60, 256 + 2 * 60), np.inf)
    padded[60:-60, 60:-60] = zbuf
    for (c, r), window in zip(corners[0].tolist(), got, strict=True):
        np.testing.assert_array_equal(window.numpy(), padded[60 + r:60 + r + 9, 60 + c:60 + c + 9])
    assert torch.isfinite(got).any()


# --- the HO3D-like rotations -------------------------------------------------------------------------


def test_ho3d_rotations_lie_in_the_documented_range(settings):
    ds, ho3d = settings["depth", "ho3d"]
    _, uniform = settings["depth", "uniform"]
    tilt = palm_tilt(ho3d["global_orient"], ds.kin.palm)
    assert float(tilt.max()) <= HO3D_MAX_TILT + 1e-3 and float(tilt.max()) > HO3D_MAX_TILT - 10
    assert 0.3 < float((palm_tilt(uniform["global_orient"], ds.kin.palm) > HO3D_MAX_TILT).float().mean()) < 0.7
    # The palm normal from the joints themselves (the shape moves it a little): within the range too.
    j = ho3d["joints_3d"].double()
    normal = torch.linalg.cross(j[:, 1] - j[:, 7], j[:, 4] - j[:, 0])
    cos = (normal[:, 2].abs() / normal.norm(dim=-1)).clamp(max=1)
    assert float(torch.rad2deg(torch.arccos(cos)).max()) < HO3D_MAX_TILT + 2
    # Palm towards and away from the camera, and every in-plane direction of the hand.
    towards = normal[:, 2] < 0
    assert 0.3 < float(towards.double().mean()) < 0.7
    up = j[:, 4, :2] - j[:, 0, :2]
    angle = torch.atan2(up[:, 1], up[:, 0])
    assert torch.histc(angle, bins=4, min=-np.pi, max=np.pi).min() >= 10


def test_ho3d_rotation_keeps_the_other_draws(settings):
    (_, uniform), (_, ho3d) = settings["depth", "uniform"], settings["depth", "ho3d"]
    assert torch.equal(uniform["params"], ho3d["params"]) and torch.equal(uniform["betas"], ho3d["betas"])
    assert torch.equal(uniform["occluder"][:, 0], ho3d["occluder"][:, 0])  # the same object kinds
    assert not torch.equal(uniform["global_orient"], ho3d["global_orient"])
    # The map only ever straightens the palm towards the viewing axis.
    ds = settings["depth", "uniform"][0]
    tilt = palm_tilt(uniform["global_orient"], ds.kin.palm)
    assert (palm_tilt(ho3d["global_orient"], ds.kin.palm) <= tilt + 1e-3).all()


# --- px_per_mm -------------------------------------------------------------------------------------


def test_px_per_mm_is_the_pixel_shift_of_a_millimetre(settings):
    for setting in (("depth", "uniform"), ("official", "ho3d")):
        _, items = settings[setting]
        assert items["px_per_mm"].dtype == torch.float32 and items["px_per_mm"].shape == (120,)
        rel = items["joints_3d_mm"].double() / 1000
        cam = items["camera"].double()
        base = crop_to_pixels(project_orthographic(rel, cam[:, 0], cam[:, 1:]), 256)
        for axis in (0, 1):
            moved = rel.clone()
            moved[:, 6, axis] += 0.001  # one joint, 1 mm
            shift = crop_to_pixels(project_orthographic(moved, cam[:, 0], cam[:, 1:]), 256) - base
            torch.testing.assert_close(shift[:, 6, axis], items["px_per_mm"].double(), rtol=1e-6, atol=0)
            assert shift[:, 6, 1 - axis].abs().max() < 1e-9
        # The hand fills the crop: about a pixel per millimetre.
        assert 0.3 < float(items["px_per_mm"].min()) and float(items["px_per_mm"].max()) < 5


def test_px_per_mm_in_items_and_in_caches_written_before_it(mano, tmp_path):
    ds = SyntheticHands("val", size=6, mano=mano, cache_dir=tmp_path, progress=False)
    stacked = SyntheticHands("val", size=6, mano=mano).generate_many()
    old = {k: v for k, v in stacked.items() if k != "px_per_mm"}  # the cache format without the key
    torch.save(old, tmp_path / ds.cache_key())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        item = ds[4]
    assert item["px_per_mm"].dtype == torch.float32 and item["px_per_mm"].shape == ()
    assert torch.equal(item["px_per_mm"], stacked["px_per_mm"][4])
    assert torch.equal(item["px_per_mm"], SyntheticHands("val", size=6, mano=mano)[4]["px_per_mm"])
    assert "px_per_mm" not in torch.load(tmp_path / ds.cache_key(), weights_only=True)  # the file is left alone


# --- occlusion rates -------------------------------------------------------------------------------


class Items(torch.utils.data.Dataset):
    def __init__(self, stacked):
        self.stacked = stacked

    def __len__(self):
        return len(self.stacked["visible"])

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.stacked.items()}


def test_occlusion_rates_split_by_cause(settings):
    for (vis, rot), (ds, items) in settings.items():
        rates = occlusion_rates(ds, max_items=80)
        assert rates["n_items"] == 80
        assert rates["object"] + rates["self_only"] + rates["outside_only"] == pytest.approx(rates["occluded"])
        hidden = ~items["visible"][:80][:, NON_ROOT]
        assert rates["occluded"] == pytest.approx(float(hidden.double().mean()))
        # Any dataset, item by item through occlusion_stats: the same numbers.
        other = occlusion_rates(Items({k: v[:80] for k, v in items.items()}))
        for key in rates.index:
            assert other[key] == pytest.approx(rates[key]), (vis, rot, key)
        assert occlusion_stats(ds, max_items=5)["occluded"].between(0, 1).all()
    official = occlusion_rates(settings["official", "uniform"][0], max_items=80)
    default = occlusion_rates(settings["depth", "uniform"][0], max_items=80)
    assert official["occluded"] < default["occluded"]  # the 40 mm tolerance and the window see more
