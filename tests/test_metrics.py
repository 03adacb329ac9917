"""mhe.metrics against hand-computed cases, an independent Procrustes (scipy), invariances and skip rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mhe import metrics


def tiny_case():
    """B=1, S=2, J=3, root 0; joint j of hypothesis 0 sits at (j+1)·a, of hypothesis 1 at -2(j+1)·a."""
    a3 = torch.tensor([1.0, 2.0, 2.0])  # |a3| = 3
    a2 = torch.tensor([3.0, 4.0])  # |a2| = 5
    scale = torch.arange(1, 4, dtype=torch.float64)[:, None]
    pred_xyz = torch.stack([scale * a3, -2 * scale * a3])[None]  # (1, 2, 3, 3)
    pred_uv = torch.stack([scale * a2, torch.zeros(3, 2, dtype=torch.float64)])[None]  # (1, 2, 3, 2)
    gt_xyz = torch.zeros(1, 3, 3)
    gt_uv = torch.zeros(1, 3, 2)
    visible = torch.tensor([[True, True, False]])
    return pred_xyz, gt_xyz, pred_uv, gt_uv, visible


def test_hand_computed_tiny_case():
    out = metrics.evaluate(*tiny_case(), root=0)
    # 3D errors: hyp 0 -> 3(j+1), mean 6; hyp 1 -> 6(j+1), mean 12.
    assert out["mpjpe_bh"] == pytest.approx(6.0)
    assert out["mpjpe_mean"] == pytest.approx(9.0)
    # Visible non-root set = {1}: hyp 0 error 2·5 = 10, hyp 1 error 0.
    assert out["ah"] == pytest.approx(10.0)
    assert out["ah_mean"] == pytest.approx(5.0)
    # 2D PJD of joint 1: per-axis std of two values = |difference|/sqrt(2).
    sx, sy = 6 / math.sqrt(2), 8 / math.sqrt(2)
    pjd2 = math.sqrt(sx * sy) * math.sqrt(2)
    assert out["pjd_2d_vis"] == pytest.approx(pjd2)
    # 3D PJD of joint 2 (occluded): differences 9·a3 = (9, 18, 18).
    s = [9 / math.sqrt(2), 18 / math.sqrt(2), 18 / math.sqrt(2)]
    pjd3 = (s[0] * s[1] * s[2]) ** (1 / 3) * math.sqrt(3)
    assert out["pjd_3d_occ"] == pytest.approx(pjd3)
    assert out["rd"] == pytest.approx(pjd2 / pjd3)
    # The complementary sets: joint 1 in 3D (differences 6·a3), joint 2 in 2D (differences 3·a2).
    assert out["pjd_3d_vis"] == pytest.approx((6 * 12 * 12 / 2**1.5) ** (1 / 3) * math.sqrt(3))
    assert out["pjd_2d_occ"] == pytest.approx(math.sqrt(9 * 12 / 2) * math.sqrt(2))
    assert (out["n_images"], out["n_images_vis"], out["n_images_occ"]) == (1.0, 1.0, 1.0)


def test_root_is_excluded_from_visibility_sets():
    pred_xyz, gt_xyz, pred_uv, gt_uv, visible = tiny_case()
    # With root 1 the visible set is empty (only joints 0 and 1 are visible): AH and 2D-vis PJD are skipped.
    out = metrics.evaluate(pred_xyz, gt_xyz, pred_uv, gt_uv, torch.tensor([[False, True, False]]), root=1)
    assert math.isnan(out["ah"]) and math.isnan(out["pjd_2d_vis"]) and math.isnan(out["rd"])
    assert out["n_images_vis"] == 0.0
    # With root 2 the occluded set is empty.
    out = metrics.evaluate(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root=2)
    assert math.isnan(out["pjd_3d_occ"]) and math.isnan(out["rd"])
    # The root does count in BH (all joints).
    assert out["mpjpe_bh"] == pytest.approx(6.0)


def test_skip_rule_averages_only_images_with_a_nonempty_set():
    pred_xyz, gt_xyz, pred_uv, gt_uv, visible = tiny_case()
    # Second image: the same hypotheses twice as large, all joints visible -> no occluded joint.
    pred_xyz2 = torch.cat([pred_xyz, 2 * pred_xyz])
    pred_uv2 = torch.cat([pred_uv, 2 * pred_uv])
    vis2 = torch.cat([visible, torch.ones_like(visible)])
    out = metrics.evaluate(pred_xyz2, gt_xyz.repeat(2, 1, 1), pred_uv2, gt_uv.repeat(2, 1, 1), vis2, root=0)
    single = metrics.evaluate(*tiny_case(), root=0)
    assert out["pjd_3d_occ"] == pytest.approx(single["pjd_3d_occ"])  # image 2 skipped, not counted as 0
    assert out["n_images_occ"] == 1.0 and out["n_images_vis"] == 2.0
    # AH in image 2: visible {1, 2}, hyp 0 errors 2·10 and 3·10 -> 25; mean over images (10 + 25) / 2.
    assert out["ah"] == pytest.approx(17.5)
    assert out["mpjpe_bh"] == pytest.approx((6 + 12) / 2)


def test_single_hypothesis_has_zero_diversity():
    pred_xyz, gt_xyz, pred_uv, gt_uv, visible = tiny_case()
    out = metrics.evaluate(pred_xyz[:, :1], gt_xyz, pred_uv[:, :1], gt_uv, visible, root=0)
    assert out["pjd_2d_vis"] == 0.0 and out["pjd_3d_occ"] == 0.0
    assert math.isnan(out["rd"])
    assert out["ah"] == out["ah_mean"] == pytest.approx(10.0)


def test_pjd_matches_numpy_bessel_std():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 7, 5, 3, generator=g, dtype=torch.float64)
    ref = np.prod(np.std(x.numpy(), axis=1, ddof=1), axis=-1) ** (1 / 3) * np.sqrt(3)
    np.testing.assert_allclose(metrics.pjd(x).numpy(), ref, rtol=1e-12)


def random_case(seed: int, B: int = 3, S: int = 5, J: int = 6):
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64  # float32 shifts would round before the metrics' float64 step
    pred_xyz = torch.randn(B, S, J, 3, generator=g, dtype=f64) * 20
    gt_xyz = torch.randn(B, J, 3, generator=g, dtype=f64) * 20
    pred_uv = torch.randn(B, S, J, 2, generator=g, dtype=f64) * 10
    gt_uv = torch.randn(B, J, 2, generator=g, dtype=f64) * 10
    visible = torch.rand(B, J, generator=g) < 0.5
    visible[:, 1], visible[:, 2] = True, False  # every image has both sets
    return pred_xyz, gt_xyz, pred_uv, gt_uv, visible


def test_permuting_hypotheses_changes_nothing():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=25, deadline=None)
    @given(seed=st.integers(0, 10_000))
    def check(seed):
        pred_xyz, gt_xyz, pred_uv, gt_uv, visible = random_case(seed)
        perm = torch.randperm(pred_xyz.shape[1], generator=torch.Generator().manual_seed(seed + 1))
        a = metrics.evaluate(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root=0)
        b = metrics.evaluate(pred_xyz[:, perm], gt_xyz, pred_uv[:, perm], gt_uv, visible, root=0)
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-9)

    check()


def test_diversity_ignores_common_shifts_and_scales_linearly():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=25, deadline=None)
    @given(seed=st.integers(0, 10_000), scale=st.floats(0.1, 10.0))
    def check(seed, scale):
        pred_xyz, gt_xyz, pred_uv, gt_uv, visible = random_case(seed)
        g = torch.Generator().manual_seed(seed + 2)
        shift3 = torch.randn(3, 1, 6, 3, generator=g, dtype=torch.float64) * 50
        shift2 = torch.randn(3, 1, 6, 2, generator=g, dtype=torch.float64) * 50
        a = metrics.evaluate(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root=0)
        b = metrics.evaluate(pred_xyz + shift3, gt_xyz, pred_uv + shift2, gt_uv, visible, root=0)
        c = metrics.evaluate(pred_xyz * scale, gt_xyz, pred_uv * scale, gt_uv, visible, root=0)
        for key in ("pjd_2d_vis", "pjd_3d_occ", "pjd_2d_occ", "pjd_3d_vis", "rd"):
            assert b[key] == pytest.approx(a[key], rel=1e-9)
        for key in ("pjd_2d_vis", "pjd_3d_occ"):
            assert c[key] == pytest.approx(a[key] * scale, rel=1e-9)
        assert c["rd"] == pytest.approx(a["rd"], rel=1e-9)

    check()


def test_orderings_between_metrics():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=25, deadline=None)
    @given(seed=st.integers(0, 10_000))
    def check(seed):
        out = metrics.evaluate(*random_case(seed), root=0)
        assert out["mpjpe_bh"] <= out["mpjpe_mean"] + 1e-9
        assert out["ah"] >= out["ah_mean"] - 1e-9
        assert out["pa_mpjpe_bh"] >= 0.0
        assert all(out[k] >= 0 for k in ("pjd_2d_vis", "pjd_3d_occ"))

    check()


def test_best_of_n_equals_a_brute_force_loop():
    pred_xyz, gt_xyz, pred_uv, gt_uv, visible = random_case(3, B=4, S=6, J=5)
    out = metrics.evaluate(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, root=0)
    bh, worst = [], []
    for b in range(4):
        errs = [np.mean([np.linalg.norm(pred_xyz[b, s, j] - gt_xyz[b, j]) for j in range(5)]) for s in range(6)]
        bh.append(min(errs))
        vis = [j for j in range(1, 5) if visible[b, j]]
        worst.append(max(np.mean([np.linalg.norm(pred_uv[b, s, j] - gt_uv[b, j]) for j in vis]) for s in range(6)))
    assert out["mpjpe_bh"] == pytest.approx(np.mean(bh), rel=1e-6)
    assert out["ah"] == pytest.approx(np.mean(worst), rel=1e-6)


def test_pa_mpjpe_matches_scipy_kabsch():
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    for _ in range(10):
        gt = rng.normal(size=(21, 3))
        pred = rng.normal(size=(21, 3)) + 0.5 * gt
        p, g = pred - pred.mean(0), gt - gt.mean(0)
        R = Rotation.align_vectors(g, p)[0].as_matrix()  # minimises sum |g - R p|^2
        s = np.sum(g * (p @ R.T)) / np.sum(p * p)
        ref = np.linalg.norm(s * p @ R.T + gt.mean(0) - gt, axis=-1).mean()
        got = metrics.pa_mpjpe(torch.from_numpy(pred)[None, None], torch.from_numpy(gt)[None])
        assert float(got) == pytest.approx(ref, rel=1e-9)


def test_pa_mpjpe_is_zero_for_a_similar_pose_and_handles_reflections():
    from scipy.spatial.transform import Rotation

    g = torch.Generator().manual_seed(0)
    gt = torch.randn(2, 21, 3, generator=g, dtype=torch.float64)
    R = torch.from_numpy(Rotation.random(2, random_state=1).as_matrix())
    pred = (2.5 * gt @ R.transpose(-1, -2) + torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)).unsqueeze(1)
    assert metrics.pa_mpjpe(pred, gt).abs().max() < 1e-9
    # A mirrored pose cannot be aligned by a rotation: the error must stay clearly positive.
    mirrored = gt * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    assert metrics.pa_mpjpe(mirrored.unsqueeze(1), gt).min() > 0.1


def test_per_joint_table_on_the_tiny_case():
    table = metrics.per_joint_table(*tiny_case(), root=0, joint_names=["root", "a", "b"])
    assert list(table["visibility"]) == ["visible", "visible", "occluded"]
    row = table.set_index("name").loc["b"]
    assert row["pjd_3d"] == pytest.approx((9 * 18 * 18 / 2**1.5) ** (1 / 3) * math.sqrt(3))
    assert row["err_3d_mean"] == pytest.approx((9 + 18) / 2)
    assert row["err_3d_bh"] == pytest.approx(9.0)  # hypothesis 0 is best for the whole hand
    assert row["err_2d_mean"] == pytest.approx(15 / 2)
    assert bool(table.set_index("name").loc["root", "is_root"])
    assert table["n_images"].tolist() == [1, 1, 1]


def test_per_joint_table_rejects_wrong_names():
    with pytest.raises(ValueError, match="joint_names has 2 entries"):
        metrics.per_joint_table(*tiny_case(), root=0, joint_names=["a", "b"])


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda a: {**a, "pred_xyz": a["pred_xyz"][0]}, ValueError, "pred_xyz must be"),
        (lambda a: {**a, "gt_xyz": a["gt_xyz"][:, :2]}, ValueError, "gt_xyz must have shape"),
        (lambda a: {**a, "pred_uv": a["pred_uv"][:, :1]}, ValueError, "pred_uv must have shape"),
        (lambda a: {**a, "gt_uv": a["gt_uv"][..., :1]}, ValueError, "gt_uv must have shape"),
        (lambda a: {**a, "visible": a["visible"].float()}, TypeError, "visible must be a bool"),
        (lambda a: {**a, "visible": a["visible"][:, :2]}, ValueError, "visible must have shape"),
        (lambda a: {**a, "root": 3}, ValueError, "root must be a joint index"),
        (lambda a: {**a, "root": -1}, ValueError, "root must be a joint index"),
        (lambda a: {**a, "pred_uv": a["pred_uv"] * float("nan")}, ValueError, "pred_uv contains NaN"),
        (lambda a: {**a, "gt_xyz": a["gt_xyz"].numpy()}, TypeError, "gt_xyz must be a torch.Tensor"),
    ],
)
def test_bad_inputs_raise_clear_errors(change, error, match):
    pred_xyz, gt_xyz, pred_uv, gt_uv, visible = tiny_case()
    args = dict(pred_xyz=pred_xyz, gt_xyz=gt_xyz, pred_uv=pred_uv, gt_uv=gt_uv, visible=visible, root=0)
    with pytest.raises(error, match=match):
        metrics.evaluate(**change(args))


def test_pjd_rejects_wrong_rank():
    with pytest.raises(ValueError, match="pjd expects points"):
        metrics.pjd(torch.zeros(2, 3, 3))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    args = random_case(5)
    cpu = metrics.evaluate(*args, root=0)
    gpu = metrics.evaluate(*(a.cuda() for a in args), root=0)
    for key in cpu:
        assert gpu[key] == pytest.approx(cpu[key], rel=1e-6)


# -- per-item metrics (one image's hypotheses), RD in one place ----------------------------------------


def np_pjd(points: np.ndarray) -> np.ndarray:
    """(S, J, D) -> (J,): per-axis std over hypotheses (ddof 1), geometric mean over the axes, times sqrt(D)."""
    D = points.shape[-1]
    return np.prod(points.std(axis=0, ddof=1), axis=-1) ** (1.0 / D) * math.sqrt(D)


def np_item(xyz, gt_xyz, uv, gt_uv, vis, root):
    """The paper's definitions for one image, by brute force over the hypotheses (numpy loops)."""
    S, J = xyz.shape[:2]
    keep = np.arange(J) != root
    v, o = vis & keep, ~vis & keep
    err3 = [np.mean([np.linalg.norm(xyz[s, j] - gt_xyz[j]) for j in range(J)]) for s in range(S)]
    err2 = [np.mean([np.linalg.norm(uv[s, j] - gt_uv[j]) for j in np.flatnonzero(v)]) if v.any() else np.nan
            for s in range(S)]
    p2 = np_pjd(uv)[v].mean() if v.any() and S > 1 else (0.0 if v.any() else np.nan)
    p3 = np_pjd(xyz)[o].mean() if o.any() and S > 1 else (0.0 if o.any() else np.nan)
    return {"mpjpe_bh": min(err3), "ah": max(err2) if v.any() else np.nan, "pjd_2d_vis": p2, "pjd_3d_occ": p3,
            "rd": p2 / p3 if p3 > 0 else np.nan}


def test_item_metrics_on_the_tiny_case():
    pred_xyz, gt_xyz, pred_uv, gt_uv, visible = tiny_case()
    got = metrics.item_metrics(pred_xyz[0], gt_xyz[0], pred_uv[0], gt_uv[0], visible[0], root=0)
    assert tuple(got) == metrics.ITEM_METRICS
    sx, sy = 6 / math.sqrt(2), 8 / math.sqrt(2)
    pjd2 = math.sqrt(sx * sy) * math.sqrt(2)
    s = [9 / math.sqrt(2), 18 / math.sqrt(2), 18 / math.sqrt(2)]
    pjd3 = (s[0] * s[1] * s[2]) ** (1 / 3) * math.sqrt(3)
    assert got["mpjpe_bh"] == pytest.approx(6.0) and got["ah"] == pytest.approx(10.0)
    assert got["pjd_2d_vis"] == pytest.approx(pjd2) and got["pjd_3d_occ"] == pytest.approx(pjd3)
    assert got["rd"] == pytest.approx(pjd2 / pjd3)
    # one image: the same numbers as the dataset evaluation of that image alone
    whole = metrics.evaluate(*tiny_case(), root=0)
    for name in metrics.ITEM_METRICS:
        assert got[name] == pytest.approx(whole[name])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_item_metrics_match_numpy_brute_force(seed):
    rng = np.random.default_rng(seed)
    B, S, J, root = 4, 7, 6, 1
    xyz, uv = rng.normal(0, 20, (B, S, J, 3)), rng.normal(100, 10, (B, S, J, 2))
    gt_xyz, gt_uv = rng.normal(0, 20, (B, J, 3)), rng.normal(100, 10, (B, J, 2))
    vis = rng.random((B, J)) < 0.5
    vis[0] = True  # no occluded joint: pjd_3d_occ and rd are NaN
    vis[1] = False
    vis[1, root] = True  # only the root visible: the visible set is empty, ah / pjd_2d_vis / rd are NaN
    vis[2, [0, 2]], vis[2, [3, 4]] = True, False  # both sets non-empty
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    got = metrics.per_item_metrics(t(xyz), t(gt_xyz), t(uv), t(gt_uv), t(vis), root)
    assert set(got) == set(metrics.ITEM_METRICS)
    for b in range(B):
        ref = np_item(xyz[b], gt_xyz[b], uv[b], gt_uv[b], vis[b], root)
        single = metrics.item_metrics(t(xyz[b]), t(gt_xyz[b]), t(uv[b]), t(gt_uv[b]), t(vis[b]), root)
        for name, value in ref.items():
            np.testing.assert_allclose(float(got[name][b]), value, rtol=1e-10, equal_nan=True)
            np.testing.assert_allclose(single[name], value, rtol=1e-10, equal_nan=True)
    assert math.isnan(float(got["rd"][0])) and math.isnan(float(got["rd"][1]))
    assert math.isfinite(float(got["rd"][2]))


def test_item_metrics_of_a_single_prediction_have_no_diversity():
    rng = np.random.default_rng(3)
    xyz = torch.from_numpy(np.repeat(rng.normal(size=(1, 5, 3)), 2, axis=0))  # the same pose twice
    uv = torch.from_numpy(np.repeat(rng.normal(size=(1, 5, 2)), 2, axis=0))
    vis = torch.tensor([True, True, False, True, False])
    got = metrics.item_metrics(xyz, torch.zeros(5, 3, dtype=torch.float64), uv, torch.zeros(5, 2, dtype=torch.float64),
                               vis, root=0)
    assert got["pjd_2d_vis"] == 0 and got["pjd_3d_occ"] == 0 and math.isnan(got["rd"])
    with pytest.raises(ValueError, match="one image"):
        metrics.item_metrics(xyz[None], torch.zeros(1, 5, 3), uv[None], torch.zeros(1, 5, 2), vis[None], root=0)


def test_ratio_of_diversity_on_every_input_kind():
    assert metrics.ratio_of_diversity(1.0, 4.0) == 0.25
    for occ in (0.0, -1.0, float("nan")):
        assert math.isnan(metrics.ratio_of_diversity(1.0, occ))
    assert math.isnan(metrics.ratio_of_diversity(float("nan"), 2.0))
    np.testing.assert_array_equal(metrics.ratio_of_diversity(np.array([1.0, 2.0, 3.0]), np.array([2.0, 0.0, np.nan])),
                                  [0.5, np.nan, np.nan])
    got = metrics.ratio_of_diversity(torch.tensor([3.0, 1.0]), torch.tensor([1.5, 0.0]))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    torch.testing.assert_close(got, torch.tensor([2.0, float("nan")], dtype=torch.float64), equal_nan=True)
    # evaluate's RD is the ratio of its two dataset means
    out = metrics.evaluate(*tiny_case(), root=0)
    assert out["rd"] == metrics.ratio_of_diversity(out["pjd_2d_vis"], out["pjd_3d_occ"])


def test_joint_diversity_is_2d_on_visible_and_3d_on_occluded_joints():
    rng = np.random.default_rng(4)
    xyz, uv = rng.normal(size=(9, 6, 3)), rng.normal(size=(9, 6, 2))
    vis = np.array([True, False, True, False, False, True])
    got = metrics.joint_diversity(torch.from_numpy(xyz), torch.from_numpy(uv), torch.from_numpy(vis))
    np.testing.assert_allclose(got.numpy(), np.where(vis, np_pjd(uv), np_pjd(xyz)), rtol=1e-12)
    with pytest.raises(ValueError, match=r"\(S, J, 3\)"):
        metrics.joint_diversity(torch.zeros(4, 6, 3), torch.zeros(5, 6, 2), torch.from_numpy(vis))
    with pytest.raises(ValueError, match="one flag per joint"):
        metrics.joint_diversity(torch.zeros(4, 6, 3), torch.zeros(4, 6, 2), torch.ones(5, dtype=torch.bool))


def _code_lines(source: str) -> dict[int, str]:
    """Each line's code without comments and docstrings (string literals without spaces, e.g. keys, kept)."""
    import io
    import tokenize

    lines: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT or (tok.type == tokenize.STRING and " " in tok.string):
            continue
        lines[tok.start[0]] = lines.get(tok.start[0], "") + " " + tok.string
    return lines


def test_rd_is_divided_out_in_one_place_only():
    """RD is ratio_of_diversity's: no other line of the package divides a PJD 2D-vis by an occluded PJD."""
    import re
    from pathlib import Path

    import mhe

    division = re.compile(r"pjd_2d_vis.*/\s*\(?[\w.\[\]\"'() ]*occ")

    def offenders(source: str) -> list[int]:
        return [n for n, line in _code_lines(source).items() if division.search(line)]

    # the check itself finds the forms RD used to be written in (and ignores docstrings)
    assert offenders('rd = out["pjd_2d_vis"] / occ if occ > 0 else nan\n') == [1]
    assert offenders('r = np.where(o > 0, p["pjd_2d_vis"].numpy() / p["pjd_3d_occ"].numpy(), np.nan)\n') == [1]
    assert offenders('"""rd = pjd_2d_vis / pjd_3d_occ"""\n') == []
    root = Path(mhe.__file__).parent
    found = {str(path.relative_to(root)): offenders(path.read_text()) for path in sorted(root.rglob("*.py"))}
    assert {k: v for k, v in found.items() if v} == {}


# --- the package's additions: scale-free diversity, the mode, plausibility, the depth flip -------------


def _flip_case():
    """Two images of a 6-keypoint 'palm' (root 0), 4 hypotheses each, built by hand."""
    gt = torch.tensor([[0, 0, 0], [10, 0, 5], [0, 10, -5], [-10, 0, 8], [0, -10, -2], [5, 5, 3]],
                      dtype=torch.float64)
    gt = torch.stack([gt, 2 * gt])  # (2, 6, 3)
    mirror = gt * torch.tensor([1.0, 1.0, -1.0])
    # image 0: 3 of 4 hypotheses are the mirror image (flipped), image 1: 1 of 4 (not flipped)
    pred = torch.stack([torch.stack([mirror[0], mirror[0], mirror[0], gt[0]]),
                        torch.stack([mirror[1], gt[1], gt[1] + 1.0, gt[1]])])
    return pred, gt


def test_depth_flip_by_hand():
    pred, gt = _flip_case()
    flipped = metrics.depth_flip(pred, gt, keypoints=[0, 1, 2, 3, 4])
    assert flipped.tolist() == [[True, True, True, False], [True, False, False, False]]
    with pytest.raises(ValueError, match="at least 3"):
        metrics.depth_flip(pred, gt, keypoints=[0, 1])


def test_flip_split_mode_plausible_and_scale_free_diversity_by_hand():
    pred, gt = _flip_case()
    B, S, J = pred.shape[:3]
    uv = pred[..., :2].clone()
    uv[0, :, 1, 0] += torch.tensor([0.0, 2.0, 0.0, 2.0])  # diversity on one visible joint of image 0
    visible = torch.tensor([[True] * 3 + [False] * 3, [True] * 3 + [False] * 3])
    px_per_mm = torch.tensor([2.0, 4.0], dtype=torch.float64)
    mode = gt[:, None] + 3.0  # every joint 3·√3 mm off
    plausible = torch.tensor([[True, False, True, True], [False, False, False, True]])
    out = metrics.evaluate(pred, gt, uv, gt[..., :2], visible, root=0, px_per_mm=px_per_mm, mode_xyz=mode,
                           plausible=plausible, flip_keypoints=[0, 1, 2, 3, 4])
    per = metrics.evaluate_per_image(pred, gt, uv, gt[..., :2], visible, root=0, px_per_mm=px_per_mm)
    # each image's 2D diversity divided by its own px/mm, then averaged; RD of the means
    expected_vis_mm = float(((per["pjd_2d_vis"] / px_per_mm).mean()))
    assert out["pjd_2d_vis_mm"] == pytest.approx(expected_vis_mm)
    assert out["rd_mm"] == pytest.approx(expected_vis_mm / out["pjd_3d_occ"])
    assert out["px_per_mm"] == pytest.approx(3.0)
    assert out["mpjpe_mode"] == pytest.approx(3.0 * math.sqrt(3.0))
    assert out["plausible"] == pytest.approx(4 / 8)
    # image 0 is flipped (3 of 4), image 1 is not; the split BH-MPJPE is each image's own
    bh = metrics.evaluate_per_image(pred, gt, uv, gt[..., :2], visible, root=0)["mpjpe_bh"]
    assert out["flip_rate"] == pytest.approx(0.5)
    assert out["mpjpe_bh_flip"] == pytest.approx(float(bh[0]))
    assert out["mpjpe_bh_noflip"] == pytest.approx(float(bh[1]))
    assert out["flip_gap"] == pytest.approx(float(bh[0] - bh[1]))
    # a uniform change of image scale leaves rd_mm alone while rd follows it
    out2 = metrics.evaluate(pred, gt, 3 * uv, 3 * gt[..., :2], visible, root=0, px_per_mm=3 * px_per_mm)
    assert out2["rd_mm"] == pytest.approx(out["rd_mm"])
    assert out2["rd"] == pytest.approx(3 * out["rd"])


@pytest.mark.parametrize("kwargs,match", [
    ({"px_per_mm": torch.tensor([1.0, -1.0])}, "px_per_mm"),
    ({"px_per_mm": torch.ones(3)}, "px_per_mm"),
    ({"mode_xyz": torch.zeros(2, 2, 6, 3)}, "mode_xyz"),
    ({"plausible": torch.ones(2, 4)}, "plausible"),
])
def test_optional_inputs_are_checked(kwargs, match):
    pred, gt = _flip_case()
    visible = torch.ones(2, 6, dtype=torch.bool)
    with pytest.raises(ValueError, match=match):
        metrics.evaluate(pred, gt, pred[..., :2], gt[..., :2], visible, root=0, **kwargs)
