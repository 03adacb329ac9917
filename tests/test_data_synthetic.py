"""mhe.data.synthetic: reproducibility, the camera, priors, and visibility against exact ray casting."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mhe.body import HAND_BONE, HAND_ROOT, load_mano
from mhe.data.hand_poses import BETA_BOX, PCA_BOX, HandKinematics
from mhe.data.statistics import occlusion_stats
from mhe.data.synthetic import SyntheticHands, consistent_alternative
from mhe.geometry import project_orthographic


@pytest.fixture(scope="module")
def test_items(mano):
    ds = SyntheticHands("test", size=24, mano=mano)
    return ds, [ds[i] for i in range(len(ds))]


def test_items_are_a_function_of_split_seed_and_index(mano):
    a = SyntheticHands("test", size=5, mano=mano)[3]
    b = SyntheticHands("test", size=50, mano=mano, cache=True)[3]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["params"], SyntheticHands("val", size=5, mano=mano)[3]["params"])
    assert not torch.equal(a["params"], SyntheticHands("test", size=5, seed=1, mano=mano)[3]["params"])
    small = SyntheticHands("test", size=5, mano=mano)
    assert torch.equal(small[-2]["params"], small[3]["params"])


def test_camera_reproduces_the_observation_from_mano(mano, test_items):
    _, items = test_items
    for item in items[:8]:
        with torch.no_grad():
            out = mano(item["global_orient"][None], item["params"][None], item["betas"][None])
        joints = out.joints[0]
        rel = joints - joints[HAND_ROOT]
        cam = item["camera"]
        obs = project_orthographic(rel, cam[0], cam[1:])
        torch.testing.assert_close(obs, item["obs"], atol=1e-6, rtol=0)
        bone = (joints[HAND_BONE[1]] - joints[HAND_BONE[0]]).norm()
        torch.testing.assert_close(item["scale"], bone)
        torch.testing.assert_close(item["joints_3d"] * bone, rel, atol=1e-6, rtol=0)
        torch.testing.assert_close(item["joints_3d_mm"], rel * 1000, atol=1e-3, rtol=0)
        torch.testing.assert_close(item["keypoints_2d_px"], (item["obs"] + 1) * 128, atol=1e-4, rtol=0)


def test_ground_truth_stays_inside_the_priors_and_fills_the_crop(test_items):
    ds, items = test_items
    params = torch.stack([it["params"] for it in items])
    betas = torch.stack([it["betas"] for it in items])
    assert params.abs().max() <= PCA_BOX and betas.abs().max() <= BETA_BOX
    assert torch.stack([it["global_orient"] for it in items]).norm(dim=-1).max() <= np.pi + 1e-6
    comps = ds.kin.to_components(ds.kin.to_axis_angle(params.double()))
    lim = ds.kin.limits
    slack = 0.1  # the PCA box is applied after the limits; both hold up to a small residual
    assert (comps[..., 0] >= lim[:, 0] - slack).all() and (comps[..., 0] <= lim[:, 1] + slack).all()
    assert (comps[..., 1].abs() <= lim[:, 2] + slack).all() and (comps[..., 2].abs() <= lim[:, 3] + slack).all()
    extent = torch.stack([it["obs"].abs().max() for it in items])
    assert extent.min() > 0.4 and extent.max() < 1.2


@pytest.mark.parametrize("side", ["right", "left"])
def test_flexion_curls_fingers_towards_the_palm(side):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_mano(side=side)
    kin = HandKinematics(model)
    J = kin.rest
    # Independent palm side: where the fingertips go under the model's own relaxed mean pose.
    with torch.no_grad():
        relaxed = model(torch.zeros(1, 3), torch.zeros(1, 45), torch.zeros(1, 10)).joints[0].double()
    for mcp, tip in ((1, 17), (4, 18), (10, 19), (7, 20)):
        c = torch.zeros(15, 3, dtype=torch.float64)
        c[mcp - 1, 0] = 0.8
        params = kin.to_params(kin.from_components(c))
        with torch.no_grad():
            bent = model(torch.zeros(1, 3), params[None].float(), torch.zeros(1, 10)).joints[0].double()
        move, curl = bent[tip] - J[tip], relaxed[tip] - J[tip]
        assert torch.dot(move, curl) > 0, f"{side} hand: flexing MCP {mcp} moves tip {tip} away from the palm"
        assert move.norm() > 0.02


def test_object_occlusion_matches_ray_marching(test_items):
    from mhe.data.render import Occluder

    _, items = test_items
    checked = 0
    for item in items:
        if item["occluder"][13:].abs().sum() == 0:
            continue
        occ = Occluder.from_vector(item["occluder"].double())
        rel = (item["joints_3d"] * item["scale"]).double().numpy()
        for j in range(21):
            zs = np.linspace(rel[j, 2] - 0.5, rel[j, 2], 5001)  # towards the camera from the joint
            q = (np.stack([np.full_like(zs, rel[j, 0]), np.full_like(zs, rel[j, 1]), zs], -1) - occ.centre.numpy())
            q = q @ occ.rotation.numpy()
            h = occ.half_size.numpy()
            if occ.kind == "sphere":
                inside = np.linalg.norm(q, axis=-1) <= h[0]
            elif occ.kind == "box":
                inside = (np.abs(q) <= h).all(-1)
            else:
                inside = (np.abs(q[:, 0]) <= h[0]) & (np.hypot(q[:, 1], q[:, 2]) <= h[1])
            assert bool(inside.any()) == bool(item["object_occluded"][j]), f"joint {j}"
            checked += 1
    assert checked >= 100


def exact_front_depth(xy: np.ndarray, verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Nearest mesh depth along +z through each point xy (N, 2): 2D point-in-triangle per face."""
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    out = np.full(len(xy), np.inf)
    for n, p in enumerate(xy):
        v0, v1, v2 = b[:, :2] - a[:, :2], c[:, :2] - a[:, :2], p - a[:, :2]
        det = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
        ok = np.abs(det) > 1e-14
        l1 = np.where(ok, (v2[:, 0] * v1[:, 1] - v2[:, 1] * v1[:, 0]) / np.where(ok, det, 1), -1)
        l2 = np.where(ok, (v0[:, 0] * v2[:, 1] - v0[:, 1] * v2[:, 0]) / np.where(ok, det, 1), -1)
        hit = ok & (l1 >= 0) & (l2 >= 0) & (l1 + l2 <= 1)
        if hit.any():
            z = (1 - l1 - l2) * a[:, 2] + l1 * b[:, 2] + l2 * c[:, 2]
            out[n] = z[hit].min()
    return out


def test_self_occlusion_agrees_with_exact_ray_casting(mano, test_items):
    ds, items = test_items
    faces = np.asarray(mano.faces)
    agree = total = 0
    for item in items[:12]:
        with torch.no_grad():
            out = mano(item["global_orient"][None], item["params"][None], item["betas"][None])
        root = out.joints[0, HAND_ROOT]
        verts = (out.vertices[0] - root).double().numpy()
        rel = (out.joints[0] - root).double().numpy()
        front = exact_front_depth(rel[:, :2], verts, faces)
        exact = front < rel[:, 2] - ds.self_tolerance
        agree += int((exact == item["self_occluded"].numpy()).sum())
        total += 21
    # The dataset tests at the pixel the joint falls in (64 px): only silhouette edges may differ.
    assert agree / total > 0.93


def test_visibility_combines_the_causes(test_items):
    _, items = test_items
    for it in items:
        expected = ~(it["object_occluded"] | it["self_occluded"] | it["outside"])
        assert torch.equal(it["visible"], expected)
        assert torch.equal(it["outside"], (it["obs"].abs() > 1).any(-1))


def test_occlusion_fraction_is_controllable(mano):
    fractions = {}
    for occlusion in (0.0, 0.15, 0.5):
        ds = SyntheticHands("val", size=30, occlusion=occlusion, mano=mano)
        obj = torch.stack([ds[i]["object_occluded"] for i in range(len(ds))]).float()
        fractions[occlusion] = obj[:, [j for j in range(21) if j != HAND_ROOT]].mean().item()
    assert fractions[0.0] == 0.0
    assert abs(fractions[0.15] - 0.15) < 0.07 and abs(fractions[0.5] - 0.5) < 0.1


def test_images_and_default_collate(mano):
    ds = SyntheticHands("train", size=4, images=True, image_size=48, occluder_kind="box", mano=mano)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 48, 48) and batch["image"].dtype == torch.float32
    assert 0 <= batch["image"].min() and batch["image"].max() <= 1
    assert batch["obs"].shape == (4, 21, 2) and batch["visible"].dtype == torch.bool
    assert batch["params"].shape == (4, 45) and batch["scale"].shape == (4,)
    kinds = batch["occluder"][:, 0]
    sized = batch["occluder"][:, 13:].abs().sum(-1) > 0
    assert (kinds[sized] == 1).all()  # "box"
    # The hand is drawn: a good share of pixels differ from the corner (background) colour.
    img = batch["image"][0]
    differs = (img - img[:, :1, :1]).abs().sum(0) > 0.05
    assert differs.float().mean() > 0.1


def test_occlusion_stats_counts_items(test_items):
    ds, items = test_items
    table = occlusion_stats(ds, max_items=10)
    manual = 1 - torch.stack([it["visible"] for it in items[:10]]).double().mean(0)
    np.testing.assert_allclose(table["occluded"].to_numpy(), manual.numpy())
    exclusive = table["object"] + table["self_only"] + table["outside_only"]
    np.testing.assert_allclose(exclusive.to_numpy(), table["occluded"].to_numpy())
    assert (table["self_only"] <= table["self"]).all()
    assert table.index[HAND_ROOT] == "middle_mcp" and table.loc["thumb_tip", "finger"] == "thumb"
    per_finger = occlusion_stats(ds, max_items=10, by="finger")
    assert per_finger.loc["thumb", "occluded"] == pytest.approx(table[table["finger"] == "thumb"]["occluded"].mean())
    with pytest.raises(ValueError, match="by must be"):
        occlusion_stats(ds, by="hand")


def test_consistent_alternative_keeps_every_visible_keypoint(test_items):
    ds, items = test_items
    found = 0
    for i, item in enumerate(items):
        alt = consistent_alternative(ds, i, seed=1)
        if alt is None:
            continue
        found += 1
        vis = item["visible"]
        torch.testing.assert_close(alt["obs"][vis], item["obs"][vis], atol=2e-5, rtol=0)
        moved = (alt["joints_3d"] - item["joints_3d"]).norm(dim=-1)
        assert moved[~vis].max() > 0.3  # at least a third of a bone length somewhere hidden
    assert found >= 3


def test_consistent_alternative_none_without_hidden_chain(mano):
    class AllVisible(SyntheticHands):
        def __getitem__(self, index):
            return {**super().__getitem__(index), "visible": torch.ones(21, dtype=torch.bool)}

    assert consistent_alternative(AllVisible("test", size=2, mano=mano), 0) is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"split": "dev"}, "split must be one of"),
        ({"occlusion": 1.5}, "occlusion is a fraction"),
        ({"size": 0}, "size must be a positive"),
        ({"occluder_kind": "cone"}, "occluder_kind must be one of"),
        ({"image_size": 8}, "image_size must be between"),
    ],
)
def test_bad_arguments(mano, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticHands(**{"mano": mano, **kwargs})


def test_index_out_of_range_and_model_without_pca(mano):
    with pytest.raises(IndexError, match="out of range"):
        SyntheticHands("test", size=3, mano=mano)[3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axis_angle_model = load_mano(use_pca=False)
    with pytest.raises(ValueError, match="45-component PCA"):
        SyntheticHands("test", size=3, mano=axis_angle_model)


def test_package_exports_are_lazy_and_complete():
    import mhe.data

    assert mhe.data.SyntheticHands is SyntheticHands and mhe.data.occlusion_stats is occlusion_stats
    for name in mhe.data.__all__:
        assert getattr(mhe.data, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = mhe.data.nope


# --- whole splits at once: generate_many, the disk cache, progress -----------------------------------

def assert_bit_equal(stacked, reference, msg=""):
    """Every field of two stacked item sets equal to the last bit (same keys, shapes and dtypes)."""
    assert set(stacked) == set(reference), msg
    for key in reference:
        assert stacked[key].dtype == reference[key].dtype and torch.equal(stacked[key], reference[key]), (msg, key)


@pytest.mark.parametrize("split", ["val", "test"])
def test_items_are_bit_equal_in_any_chunk_and_one_by_one(mano, split):
    ds = SyntheticHands(split, size=512, occlusion=0.4, mano=mano)  # the shipped configs' occlusion
    whole = ds.generate_many(range(64))
    # The MANO batch is padded to a multiple of 16 rows, so that BLAS sums alike in any chunk.
    for chunk in (1, 3, 16, 40):
        assert_bit_equal(ds.generate_many(range(64), chunk_size=chunk), whole, f"chunk {chunk}")
    picked = [39, 2, 63, 17]
    assert_bit_equal(ds.generate_many(picked), {k: v[picked] for k, v in whole.items()}, "subset")
    # dataset[i] without a cache is the same generator on one item
    one_by_one = [ds[i] for i in range(0, 64, 9)]
    assert_bit_equal({k: torch.stack([it[k] for it in one_by_one]) for k in whole},
                     {k: v[0:64:9] for k, v in whole.items()}, "dataset[i]")
    hidden = ~whole["visible"]
    assert whole["object_occluded"].any() and whole["self_occluded"].any() and hidden.float().mean() > 0.2
    with pytest.raises(ValueError, match="at least one index"):
        ds.generate_many([])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"occlusion": 0.0},
        {"occlusion": 0.7, "occluder_kind": "cylinder", "seed": 3},
        {"occlusion": 0.3, "occluder_kind": "box", "self_tolerance": 0.005},
        {"occlusion": 0.3, "images": True, "image_size": 48},
    ],
)
def test_items_do_not_depend_on_the_chunks_in_every_mode(mano, kwargs):
    ds = SyntheticHands("train", size=100, mano=mano, **kwargs)
    indices = [0, 97, 5, 42, 13, 64, 7, 31]  # any order, any subset
    stacked = ds.generate_many(indices)
    assert_bit_equal(ds.generate_many(indices, chunk_size=3), stacked, "chunks of 3")
    items = [ds.generate(i) for i in indices]  # each item generated once, then stacked field by field
    assert_bit_equal({k: torch.stack([item[k] for item in items]) for k in stacked}, stacked, "one by one")


def test_generation_is_deterministic_for_a_seed(mano):
    """Two datasets built apart, with another torch seed and thread count, give the same bits; another
    seed gives other items."""
    torch.manual_seed(1)
    first = SyntheticHands("train", size=50, seed=7, occlusion=0.4, mano=mano).generate_many(range(30))
    threads = torch.get_num_threads()
    torch.manual_seed(2)
    torch.set_num_threads(2)
    try:
        again = SyntheticHands("train", size=50, seed=7, occlusion=0.4, mano=mano).generate_many(range(30))
    finally:
        torch.set_num_threads(threads)
    assert_bit_equal(again, first, "same seed")
    other = SyntheticHands("train", size=50, seed=8, occlusion=0.4, mano=mano).generate_many(range(30))
    assert not torch.equal(other["params"], first["params"]) and not torch.equal(other["camera"], first["camera"])


def test_occluders_cover_their_drawn_number_of_joints(mano):
    """Each object hides at least the number of non-root joints drawn for it (its target), by the
    per-solid geometry of Occluder.hides, unless it reached the largest size (8 cm, 4 % more)."""
    from mhe.data.render import Occluder
    from mhe.data.synthetic import _draw_items

    ds = SyntheticHands("val", size=80, occlusion=0.4, mano=mano)
    items = ds.generate_many()
    draws = _draw_items([ds.rng(i) for i in range(80)], ds.occlusion, None, False)
    non_root = [j for j in range(21) if j != HAND_ROOT]
    checked = 0
    for i in range(80):
        target = int(draws["target"][i])
        record = items["occluder"][i]
        if target == 0:
            assert not record.any() and not items["object_occluded"][i].any()
            continue
        solid = Occluder.from_vector(record.double())
        rel = items["joints_3d"][i].double() * items["scale"][i].double()
        hides = solid.hides(rel)
        assert torch.equal(hides, items["object_occluded"][i])
        largest = float(solid.half_size.min()) > 0.08 * 1.04 * 0.39  # a box side may be 0.4 of its size
        if not largest:
            assert int(hides[non_root].sum()) >= target, (i, target)
            checked += 1
    assert checked > 40


def test_cache_dir_generates_the_split_once_with_a_progress_line(mano, tmp_path, capsys):
    ds = SyntheticHands("val", size=40, mano=mano, cache_dir=tmp_path)
    first = ds[3]
    out, err = capsys.readouterr()
    path = tmp_path / ds.cache_key()
    assert out == f"[mhe] generating 40 validation hands (synthetic-hands, seed 0); cached afterwards in {path}\n"
    assert "40/40" in err  # the tqdm bar
    assert path.exists()
    stacked = ds.generate_many()
    for key in first:
        assert torch.equal(first[key], stacked[key][3]), key

    again = SyntheticHands("val", size=40, mano=mano, cache_dir=tmp_path)
    assert torch.equal(again[3]["obs"], first["obs"])
    assert capsys.readouterr() == ("", "")  # loading an existing cache prints nothing

    quiet = SyntheticHands("test", size=1200, seed=2, mano=mano, cache_dir=tmp_path, progress=False)
    assert len(quiet) == 1200 and quiet[1199]["visible"].shape == (21,)
    assert capsys.readouterr() == ("", "")
    loud = SyntheticHands("train", size=1200, seed=2, mano=mano, cache_dir=tmp_path / "other")
    loud[0]
    assert "[mhe] generating 1,200 training hands (synthetic-hands, seed 2)" in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"not a torch file", "wrong size"])
def test_damaged_cache_is_regenerated_with_a_warning(mano, tmp_path, content):
    ds = SyntheticHands("test", size=12, mano=mano, cache_dir=tmp_path, progress=False)
    path = tmp_path / ds.cache_key()
    if content == "wrong size":
        torch.save(SyntheticHands("test", size=5, mano=mano).generate_many(), path)
    else:
        path.write_bytes(content)
    with pytest.warns(UserWarning, match=f"cache {re.escape(str(path))} is damaged"):
        item = ds[11]
    expected = ds.generate_many([11])
    for key in item:
        assert torch.equal(item[key], expected[key][0]), key
    reloaded = torch.load(path, weights_only=True)  # rewritten whole
    assert reloaded["visible"].shape == (12, 21)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(SyntheticHands("test", size=12, mano=mano, cache_dir=tmp_path)[11]["obs"], item["obs"])
