"""The hypothesis explorer: figure data against numpy computations of the paper's definitions and the
hypotheses themselves, seeding and caching, widget interaction, and every error path."""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import re
import warnings

import numpy as np
import pytest
import torch
from plotly.callbacks import Points

from mhe.body import HAND_KEYPOINTS, HAND_PARENTS, HAND_ROOT
from mhe.config import ModelConfig
from mhe.data import SyntheticHands
from mhe.models.hand import MultiHypothesisHand
from mhe.viz import (
    OBJECTIVE_COLORS,
    OCCLUDED_COLOR,
    OCCLUDED_LABEL,
    OCCLUDED_SYMBOL,
    VISIBLE_COLOR,
    VISIBLE_LABEL,
    VISIBLE_SYMBOL,
    save_figure,
)
from mhe.viz.body import plotly_mesh
from mhe.viz.explorer import (
    ITEM_TRACES,
    SELECTED_TRACE,
    HypothesisExplorer,
    accuracy_diversity_figure,
    joint_diversity,
    plot_temperature_sweep,
)

warnings.filterwarnings("ignore", category=UserWarning)

SMALL = dict(context_dim=32, encoder_hidden=(32,), flow_transforms=2, flow_hidden=(32,), head_hidden=32)
S = 40
N_ITEMS = 6


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return SyntheticHands("test", size=N_ITEMS, seed=0, occlusion=0.4, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {"mhentropy": MultiHypothesisHand(ModelConfig(**SMALL)).eval(),
            "deterministic": MultiHypothesisHand(ModelConfig(**SMALL, deterministic=True)).eval()}


@pytest.fixture()
def explorer(models, dataset):
    return HypothesisExplorer(models, dataset, num_samples=S, temperature=0.8, seed=0)


@pytest.fixture(scope="module")
def mixed_item(dataset):
    """An item with both visible and occluded non-root joints."""
    for i in range(len(dataset)):
        vis = dataset[i]["visible"].clone()
        vis[HAND_ROOT] = True
        if vis.sum() >= 4 and (~vis).sum() >= 4:
            return i
    pytest.fail("no test item has both visible and occluded joints")


# -- independent numpy versions of the paper's definitions ----------------------------------------


def np_pjd(points: np.ndarray) -> np.ndarray:
    """(S, J, D) -> (J,): per-axis std over hypotheses, geometric mean over axes, times sqrt(D)."""
    D = points.shape[-1]
    std = points.std(axis=0, ddof=1)
    return np.prod(std, axis=-1) ** (1.0 / D) * math.sqrt(D)


def np_metrics(xyz, uv, gt_xyz, gt_uv, vis):
    keep = np.arange(21) != HAND_ROOT
    v, o = vis & keep, ~vis & keep
    err3 = np.linalg.norm(xyz - gt_xyz, axis=-1).mean(-1)  # (S,)
    err2 = np.linalg.norm(uv - gt_uv, axis=-1)[:, v].mean(-1)
    return {"mpjpe_bh": err3.min(), "ah": err2.max(), "pjd_2d_vis": np_pjd(uv)[v].mean(),
            "pjd_3d_occ": np_pjd(xyz)[o].mean()}


def trace(fig, name):
    (found,) = [t for t in fig.data if t.name == name]
    return found


def xyz_of(t):
    return np.stack([np.asarray(t.x, float), np.asarray(t.y, float), np.asarray(t.z, float)], -1)


def decode(value):
    """An array of plotly's JSON: a list, or a typed array {"dtype", "bdata" (base64)}."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).astype(float)
    return np.asarray(value, dtype=float)


def bars(fig):
    """The per-joint bars as one (20,) array (visible and occluded traces merged) and their labels."""
    a = np.asarray(trace(fig, ITEM_TRACES[10]).x, float)
    b = np.asarray(trace(fig, ITEM_TRACES[11]).x, float)
    assert not np.any(np.isfinite(a) & np.isfinite(b)), "a joint is drawn as both visible and occluded"
    return np.where(np.isfinite(a), a, b), a, list(trace(fig, ITEM_TRACES[10]).y)


# -- figure data ---------------------------------------------------------------------------------------


def test_per_joint_bars_equal_numpy_pjd(explorer, dataset, mixed_item):
    n = 25  # drawn; the bars are the diversity of all S hypotheses, as the title's numbers are
    fig = explorer.item_figure(mixed_item, "mhentropy", num_hypotheses=n)
    hyp = explorer.hypotheses(mixed_item, "mhentropy")
    xyz, uv = hyp["xyz_mm"].double().numpy(), hyp["uv_px"].double().numpy()
    assert len(xyz) == S
    vis = dataset[mixed_item]["visible"].numpy()
    expected = np.where(vis, np_pjd(uv), np_pjd(xyz))
    keep = np.arange(21) != HAND_ROOT
    merged, visible_bars, labels = bars(fig)
    assert labels == [name for j, name in enumerate(HAND_KEYPOINTS) if j != HAND_ROOT]
    np.testing.assert_allclose(merged, expected[keep], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.isfinite(visible_bars), vis[keep])
    assert expected[keep & ~vis].max() > 0  # the untrained flow is diverse: the check is not vacuous


def test_trace_coordinates_are_the_hypotheses(explorer, dataset, mixed_item):
    n = 12
    fig = explorer.item_figure(mixed_item, "mhentropy", num_hypotheses=n)
    hyp = explorer.hypotheses(mixed_item, "mhentropy")
    xyz, uv = hyp["xyz_mm"][:n].numpy(), hyp["uv_px"][:n].numpy()
    item = dataset[mixed_item]
    vis = item["visible"].numpy()
    bones = [(p, j) for j, p in enumerate(HAND_PARENTS) if p >= 0]
    for name, wanted in ((ITEM_TRACES[0], [b for b in bones if vis[b[1]]]),
                         (ITEM_TRACES[1], [b for b in bones if not vis[b[1]]])):
        seg = xyz_of(trace(fig, name)).reshape(n, len(wanted), 3, 3)  # hypothesis, bone, (start, end, gap)
        for k, (p, j) in enumerate(wanted):
            np.testing.assert_allclose(seg[:, k, 0], xyz[:, p], rtol=1e-6)
            np.testing.assert_allclose(seg[:, k, 1], xyz[:, j], rtol=1e-6)
        assert np.isnan(seg[:, :, 2]).all()
    np.testing.assert_allclose(xyz_of(trace(fig, ITEM_TRACES[2])), xyz[:, ~vis].reshape(-1, 3), rtol=1e-6)
    np.testing.assert_allclose(xyz_of(trace(fig, ITEM_TRACES[4])), item["joints_3d_mm"].numpy(), rtol=1e-6)
    hv = trace(fig, ITEM_TRACES[5])
    np.testing.assert_allclose(np.stack([hv.x, hv.y], -1), uv[:, vis].reshape(-1, 2), rtol=1e-6)
    obs = trace(fig, ITEM_TRACES[8])
    np.testing.assert_allclose(np.stack([obs.x, obs.y], -1), item["keypoints_2d_px"].numpy()[vis], rtol=1e-6)
    occ = trace(fig, ITEM_TRACES[9])
    np.testing.assert_allclose(np.stack([occ.x, occ.y], -1), item["keypoints_2d_px"].numpy()[~vis], rtol=1e-6)
    # equal-aspect 3D: the same span on every axis, containing every point drawn
    ranges = [fig.layout.scene[a].range for a in ("xaxis", "yaxis", "zaxis")]
    spans = [hi - lo for lo, hi in ranges]
    assert max(spans) - min(spans) < 1e-6 * max(spans)
    pts = np.concatenate([xyz.reshape(-1, 3), item["joints_3d_mm"].numpy()])
    for d, (lo, hi) in enumerate(ranges):
        assert lo <= pts[:, d].min() and pts[:, d].max() <= hi
    assert list(fig.layout.yaxis.range) == sorted(fig.layout.yaxis.range, reverse=True)  # image y points down
    assert [t.name for t in fig.data] == list(ITEM_TRACES)


def test_near_zero_temperature_gives_the_mode(explorer, models, dataset):
    # Independent of the seeding: every hypothesis at T -> 0 is the zero-noise one.
    tiny = explorer.hypotheses(2, "mhentropy", temperature=1e-6)["xyz_mm"]
    det = MultiHypothesisHand(ModelConfig(**SMALL, deterministic=True)).eval()
    det.load_state_dict(models["mhentropy"].state_dict())  # the same network, asked for its mode only
    other = HypothesisExplorer({"deterministic": det}, dataset, num_samples=S)
    mode = other.hypotheses(2, "deterministic")["xyz_mm"]
    assert mode.shape[0] == 1  # a deterministic model has one hypothesis
    torch.testing.assert_close(tiny, mode.expand_as(tiny), atol=1e-3, rtol=0)


def _np_item(hyp, item, n=None):
    return np_metrics(hyp["xyz_mm"][:n].double().numpy(), hyp["uv_px"][:n].double().numpy(),
                      item["joints_3d_mm"].double().numpy(), item["keypoints_2d_px"].double().numpy(),
                      item["visible"].numpy())


def test_item_metrics_of_the_first_n_equal_numpy(explorer, dataset, mixed_item):
    n = 30
    hyp, item = explorer.hypotheses(mixed_item, "mhentropy"), dataset[mixed_item]
    ref = _np_item(hyp, item, n)
    got = explorer.item_metrics(mixed_item, "mhentropy", num_hypotheses=n)
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, rel=1e-5)
    assert got["rd"] == pytest.approx(ref["pjd_2d_vis"] / ref["pjd_3d_occ"], rel=1e-5)


def test_title_shows_the_numbers_of_all_hypotheses_whatever_is_drawn(explorer, dataset, mixed_item):
    hyp, item = explorer.hypotheses(mixed_item, "mhentropy"), dataset[mixed_item]
    ref = _np_item(hyp, item)  # all S
    vis = item["visible"].numpy()
    occluded = int((~vis & (np.arange(21) != HAND_ROOT)).sum())
    for n in (1, 7, S):
        title = explorer.item_figure(mixed_item, "mhentropy", num_hypotheses=n).layout.title.text
        assert f"BH-MPJPE {ref['mpjpe_bh']:.1f} mm" in title and f"PJD 3D-occ {ref['pjd_3d_occ']:.1f} mm" in title
        assert f"RD {ref['pjd_2d_vis'] / ref['pjd_3d_occ']:.2f}" in title  # never n/a at one drawn hypothesis
        assert f"item {mixed_item}" in title and f"{n} of {S} hypotheses drawn" in title
        assert f"{occluded} of 20 joints occluded (root not counted)" in title
        assert title == explorer.title(mixed_item, "mhentropy", None, n) == "<br>".join(
            explorer.describe(mixed_item, "mhentropy", None, n))
    assert int(explorer.occluded(mixed_item).sum()) == occluded


def test_dataset_figure_points_are_per_item_metrics(explorer, dataset):
    n = 4
    fig = explorer.dataset_figure(n)
    assert [t.meta for t in fig.data] == ["mhentropy", "deterministic"]
    assert fig.data[0].marker.color == OBJECTIVE_COLORS["mhentropy"]
    ent, det = fig.data
    ringed = accuracy_diversity_figure(explorer.dataset_metrics(n), selected=("deterministic", 2))
    assert ringed.data[-1].name == SELECTED_TRACE and ringed.data[-1].meta is None  # the ring: not clickable
    assert list(ringed.data[-1].x) == [pytest.approx(det.x[2])] and list(ringed.data[-1].y) == [pytest.approx(det.y[2])]
    np.testing.assert_array_equal(np.asarray(ent.customdata)[:, 0], np.arange(n))
    for i in range(n):
        hyp, item = explorer.hypotheses(i, "mhentropy"), dataset[i]
        ref = np_metrics(hyp["xyz_mm"].double().numpy(), hyp["uv_px"].double().numpy(),
                         item["joints_3d_mm"].double().numpy(), item["keypoints_2d_px"].double().numpy(),
                         item["visible"].numpy())
        assert ent.x[i] == pytest.approx(ref["pjd_3d_occ"], rel=1e-5)
        assert ent.y[i] == pytest.approx(ref["mpjpe_bh"], rel=1e-5)
        assert ent.customdata[i][1] == pytest.approx(ref["ah"], rel=1e-5)
    np.testing.assert_array_equal(det.x, np.zeros(n))  # a single prediction has no diversity
    assert "item %{customdata[0]" in ent.hovertemplate
    assert "%{customdata[4]:.0f} of 20 joints occluded (root not counted)" in ent.hovertemplate  # as the title says
    frame = explorer.dataset_metrics(n)
    np.testing.assert_array_equal(frame["occluded"][:n], [int(explorer.occluded(i).sum()) for i in range(n)])
    save_figure(fig, "test_explorer_scatter")  # plotly figures save as html


# -- seeding, caching, temperature --------------------------------------------------------------------


def test_same_request_same_hypotheses_and_cached(explorer, models, dataset, monkeypatch):
    state = torch.random.get_rng_state()
    a = explorer.hypotheses(1, "mhentropy")
    assert torch.equal(torch.random.get_rng_state(), state), "drawing must not move the global RNG"
    calls = []
    real = models["mhentropy"].hypotheses
    monkeypatch.setattr(models["mhentropy"], "hypotheses", lambda *a, **k: calls.append(1) or real(*a, **k))
    b = explorer.hypotheses(1, "mhentropy")
    assert calls == [] and torch.equal(a["xyz_mm"], b["xyz_mm"])
    # A fresh explorer, other items drawn first: the same hypotheses (seeded per objective and item).
    fresh = HypothesisExplorer(models, dataset, num_samples=S, seed=0)
    fresh.hypotheses(3, "mhentropy")
    c = fresh.hypotheses(1, "mhentropy")
    assert len(calls) == 2
    assert torch.equal(a["xyz_mm"], c["xyz_mm"]) and torch.equal(a["uv_px"], c["uv_px"])
    other_seed = HypothesisExplorer(models, dataset, num_samples=S, seed=1).hypotheses(1, "mhentropy")
    assert not torch.allclose(a["xyz_mm"], other_seed["xyz_mm"])
    assert not torch.allclose(a["xyz_mm"], explorer.hypotheses(2, "mhentropy")["xyz_mm"])


def test_lower_temperature_smaller_diversity(explorer, mixed_item):
    spread = {t: float(explorer.joint_diversity(mixed_item, "mhentropy", temperature=t).mean())
              for t in (0.2, 0.5, 1.0)}
    assert 0 < spread[0.2] < spread[0.5] < spread[1.0]
    hot, cold = (explorer.hypotheses(mixed_item, "mhentropy", t)["xyz_mm"] for t in (1.0, 0.5))
    assert not torch.allclose(hot, cold)
    # the deterministic model ignores the temperature and has no diversity
    d1, d2 = (explorer.hypotheses(mixed_item, "deterministic", t)["xyz_mm"] for t in (0.3, 1.5))
    assert torch.equal(d1, d2)
    assert float(explorer.joint_diversity(mixed_item, "deterministic").abs().max()) == 0.0


def test_temperature_sweep(explorer):
    frame = explorer.temperature_sweep([0.3, 1.0], num_items=3)
    assert list(frame["objective"]) == ["mhentropy", "mhentropy"]  # mode-only models are left out
    per_item = explorer.dataset_metrics(3, ["mhentropy"], 0.3)
    assert frame["pjd_3d_occ"].iloc[0] == pytest.approx(np.nanmean(per_item["pjd_3d_occ"]))
    assert frame["pjd_3d_occ"].iloc[0] < frame["pjd_3d_occ"].iloc[1]
    assert hasattr(plot_temperature_sweep(frame), "savefig")


# -- widget -------------------------------------------------------------------------------------------


def _check_shows(w, explorer, dataset, index, objective, temperature, n):
    fig = w.figure
    item = dataset[index]
    np.testing.assert_allclose(xyz_of(trace(fig, ITEM_TRACES[4])), item["joints_3d_mm"].numpy(), rtol=1e-6)
    hyp = explorer.hypotheses(index, objective, temperature)["xyz_mm"][:n].numpy()
    occ = ~item["visible"].numpy()
    np.testing.assert_allclose(xyz_of(trace(fig, ITEM_TRACES[2])), hyp[:, occ].reshape(-1, 3), rtol=1e-6)
    assert f"item {index}" in fig.layout.title.text and f"item {index}" in w.metrics.value


@pytest.mark.parametrize("live", [False, True], ids=["output", "clickable"])
def test_widget_controls_update_the_figure(explorer, dataset, live):
    if live and importlib.util.find_spec("anywidget") is None:
        pytest.skip("the page helper needs anywidget")
    w = explorer.widget(index=0, num_hypotheses=10, use_figure_widget=live)
    figure_id = id(w.figure)
    _check_shows(w, explorer, dataset, 0, "mhentropy", 0.8, 10)
    w.item.value = 2
    _check_shows(w, explorer, dataset, 2, "mhentropy", 0.8, 10)
    w.temperature.value = 0.3
    _check_shows(w, explorer, dataset, 2, "mhentropy", 0.3, 10)
    w.hypotheses.value = 4
    _check_shows(w, explorer, dataset, 2, "mhentropy", 0.3, 4)
    w.objective.value = "deterministic"
    _check_shows(w, explorer, dataset, 2, "deterministic", 0.3, 4)
    assert "deterministic" in w.metrics.value
    assert id(w.figure) == figure_id  # the figure is updated in place, and the Output view shows it
    shown = w._view.outputs[0]["data"]["application/vnd.plotly.v1+json"]["data"][4]
    xyz = np.stack([decode(shown[a]) for a in "xyz"], -1)
    np.testing.assert_allclose(xyz, dataset[2]["joints_3d_mm"].numpy(), rtol=1e-6)
    assert w.box.children[-1] is w._view
    assert (w._anchor is not None) == live


def test_clicking_a_scatter_point_selects_it(explorer):
    w = explorer.widget(index=0, dataset_items=4, use_figure_widget=False)
    det = [t for t in w.scatter.data if t.meta == "deterministic"][0]
    w.on_scatter_click(det, Points(point_inds=[3], xs=[0.0], ys=[0.0], trace_name=det.name, trace_index=1))
    assert (w.objective.value, w.item.value) == ("deterministic", 3)
    assert "item 3" in w.figure.layout.title.text
    w.on_scatter_click(det, Points(point_inds=[], xs=[], ys=[], trace_name=det.name, trace_index=1))  # no point
    assert (w.objective.value, w.item.value) == ("deterministic", 3)
    if importlib.util.find_spec("anywidget") is not None:
        # what the page helper reports of a click on the scatter (plotly.js's plotly_click event)
        live = explorer.widget(index=0, dataset_items=3, use_figure_widget=True)
        live._anchor.clicked = {"index": 2, "objective": "mhentropy", "serial": 1}
        assert (live.objective.value, live.item.value) == ("mhentropy", 2)
        assert "item 2" in live.figure.layout.title.text and live._anchor.requests == 1
        live._anchor.clicked = {"index": 1, "objective": "chosen item", "serial": 2}  # the ring: no objective
        assert (live.objective.value, live.item.value) == ("mhentropy", 2)


@pytest.mark.skipif(importlib.util.find_spec("anywidget") is None, reason="the page helper needs anywidget")
def test_a_reloaded_page_shows_the_figure_the_controls_describe(explorer, dataset):
    """A page rebuilds its views from the widgets' synced state: the Output views' outputs must hold the
    current figures (a plotly FigureWidget edited in place would keep its first state there)."""
    w = explorer.widget(index=0, num_hypotheses=10, dataset_items=3, use_figure_widget=True)
    for change in (lambda: setattr(w.item, "value", 2), lambda: setattr(w.temperature, "value", 1.3),
                   lambda: setattr(w.hypotheses, "value", 1), lambda: setattr(w.objective, "value", "deterministic")):
        change()
        spec = w._view.outputs[0]["data"]["application/vnd.plotly.v1+json"]
        assert spec["layout"]["title"]["text"] == w.figure.layout.title.text
        shown = spec["data"][4]  # the ground-truth joints
        np.testing.assert_allclose(np.stack([decode(shown[a]) for a in "xyz"], -1),
                                   dataset[w.item.value]["joints_3d_mm"].numpy(), rtol=1e-6)
        assert spec["config"] == {"responsive": True}  # it follows the width of the page
    assert "item 2 · deterministic" in w.figure.layout.title.text
    assert "mhe-explorer-scatter" in w._scatter_view._dom_classes  # where the page helper listens for clicks


@pytest.mark.parametrize("live", [False, True], ids=["output", "clickable"])
def test_the_chosen_item_is_ringed_and_brought_into_view(explorer, live):
    if live and importlib.util.find_spec("anywidget") is None:
        pytest.skip("the page helper needs anywidget")
    w = explorer.widget(index=1, num_hypotheses=5, dataset_items=4, use_figure_widget=live)
    frame = explorer.dataset_metrics(4)

    def ring():
        t = next(t for t in w.scatter.data if t.name == SELECTED_TRACE)
        return list(t.x), list(t.y)

    def point(objective, index):
        row = frame[(frame["objective"] == objective) & (frame["index"] == index)].iloc[0]
        return [pytest.approx(row["pjd_3d_occ"])], [pytest.approx(row["mpjpe_bh"])]

    assert ring() == point("mhentropy", 1)
    w.item.value = 3
    assert ring() == point("mhentropy", 3)
    w.select(2, "deterministic")
    assert ring() == point("deterministic", 2) and "item 2" in w.metrics.value
    w.step(+1)
    assert w.item.value == 3 and ring() == point("deterministic", 3)
    w.item.value = N_ITEMS - 2
    w.step(+1)
    w.step(+1)  # stays on the last item
    assert w.item.value == N_ITEMS - 1 and ring() == ([], [])  # not in the scatter: no ring
    w.item.value = 0
    w.step(-1)
    assert w.item.value == 0
    if live:
        assert w._anchor.requests == 1  # one click-like selection asked the page to scroll to the figure
    shown = w._scatter_view.outputs[0]["data"]["application/vnd.plotly.v1+json"]["data"][-1]
    assert list(decode(shown["x"])) == pytest.approx(ring()[0])  # the page shows the ring, reloaded or not


def test_metrics_line_is_the_title(explorer):
    w = explorer.widget(index=1, num_hypotheses=3, dataset_items=2, use_figure_widget=False)
    head, numbers = explorer.describe(1, "mhentropy", 0.8, 3)
    assert w.metrics.value.startswith(f"<b>{head}</b><br>{numbers}")
    assert w.figure.layout.title.text == f"{head}<br>{numbers}"
    assert "stays at T" not in w.metrics.value
    w.temperature.value = 1.5  # the scatter keeps the explorer's temperature, and the line says so
    assert "The scatter below stays at T = 0.8" in w.metrics.value


# -- errors -------------------------------------------------------------------------------------------


def test_unknown_objective(explorer):
    for call in (lambda: explorer.item_figure(0, "mhentropyy"), lambda: explorer.hypotheses(0, "nll"),
                 lambda: explorer.dataset_metrics(2, ["nope"]), lambda: explorer.widget(objective="x")):
        with pytest.raises(ValueError, match="available: mhentropy, deterministic"):
            call()


def test_index_out_of_range(explorer):
    for bad in (-1, N_ITEMS, 100):
        with pytest.raises(IndexError, match=rf"valid indices are 0\.\.{N_ITEMS - 1}"):
            explorer.item_figure(bad, "mhentropy")
    with pytest.raises(IndexError, match="out of range"):
        explorer.widget(index=N_ITEMS)
    w = explorer.widget(use_figure_widget=False)
    with pytest.raises(IndexError, match="valid indices"):
        w.select(N_ITEMS, "mhentropy")
    with pytest.raises(TypeError, match="integer"):
        explorer.hypotheses(1.5, "mhentropy")


@pytest.mark.parametrize("t", [0.0, -0.5, float("nan"), float("inf")])
def test_bad_temperature(explorer, models, dataset, t):
    with pytest.raises(ValueError, match="temperature must be"):
        explorer.item_figure(0, "mhentropy", temperature=t)
    with pytest.raises(ValueError, match="temperature must be"):
        HypothesisExplorer(models, dataset, temperature=t)
    with pytest.raises(ValueError, match="temperature must be"):
        explorer.temperature_sweep([0.5, t], num_items=2)


def test_other_bad_arguments(explorer, models, dataset):
    with pytest.raises(ValueError, match="num_hypotheses"):
        explorer.item_figure(0, "mhentropy", num_hypotheses=0)
    with pytest.raises(ValueError, match="num_hypotheses"):
        explorer.widget(num_hypotheses=0)
    for n in (0, N_ITEMS + 1):
        with pytest.raises(ValueError, match=f"between 1 and {N_ITEMS}"):
            explorer.dataset_figure(n)
    with pytest.raises(ValueError, match="non-empty mapping"):
        HypothesisExplorer({}, dataset)
    with pytest.raises(ValueError, match="at least 2"):
        HypothesisExplorer(models, dataset, num_samples=1)
    with pytest.raises(ValueError, match="empty"):
        HypothesisExplorer(models, [])
    with pytest.raises(ValueError, match="temperatures is empty"):
        explorer.temperature_sweep([])
    with pytest.raises(ValueError, match=r"\(S, J, 3\)"):
        joint_diversity(torch.zeros(4, 21, 3), torch.zeros(5, 21, 2), torch.ones(21, dtype=torch.bool))
    with pytest.raises(ValueError, match="lacks the columns"):
        accuracy_diversity_figure(explorer.dataset_metrics(2).drop(columns=["rd"]))


# -- encoding, saved pages, module structure -------------------------------------------------------------


def test_visible_and_occluded_joints_have_one_encoding(explorer, dataset, mixed_item):
    fig = explorer.item_figure(mixed_item, "mhentropy", num_hypotheses=8)
    vis = dataset[mixed_item]["visible"].numpy()
    joints3d = trace(fig, ITEM_TRACES[4]).marker  # the ground truth's joints in 3D: one marker per joint
    assert list(joints3d.symbol) == [VISIBLE_SYMBOL if v else OCCLUDED_SYMBOL for v in vis]
    assert list(joints3d.color) == [VISIBLE_COLOR if v else OCCLUDED_COLOR for v in vis]
    for name, symbol, color in ((VISIBLE_LABEL, VISIBLE_SYMBOL, VISIBLE_COLOR),
                                (OCCLUDED_LABEL, OCCLUDED_SYMBOL, OCCLUDED_COLOR)):
        t = trace(fig, name)  # the 2D keypoints: the same shapes and colours, and the legend entries
        assert (t.marker.symbol, t.marker.color, t.showlegend) == (symbol, color, True)
    assert trace(fig, ITEM_TRACES[1]).line.color == OCCLUDED_COLOR  # hypotheses' bones to occluded joints
    assert trace(fig, ITEM_TRACES[11]).marker.color == OCCLUDED_COLOR  # and their PJD bars
    assert fig.layout.scene.xaxis.title.text == "x (mm)" and "(px" in fig.layout.yaxis.title.text


def _newplot_arguments(html: str) -> list:
    """The four JSON arguments of the page's ``Plotly.newPlot(id, data, layout, config)`` call."""
    decoder, pos, args = json.JSONDecoder(), html.index("Plotly.newPlot(") + len("Plotly.newPlot("), []
    for _ in range(4):
        while html[pos] in " \t\r\n,":
            pos += 1
        value, pos = decoder.raw_decode(html, pos)
        args.append(value)
    return args


@pytest.mark.parametrize("kind", ["item", "scatter", "mesh"])
def test_saved_html_is_self_contained_and_responsive(explorer, mixed_item, kind):
    if kind == "item":
        fig = explorer.item_figure(mixed_item, "mhentropy", num_hypotheses=5)
    elif kind == "scatter":
        fig = explorer.dataset_figure(3)
    else:
        fig = plotly_mesh(np.eye(3) * 0.1, np.array([[0, 1, 2]]), title="one triangle")
    path = save_figure(fig, f"test_page_{kind}")
    html = path.read_text(encoding="utf-8")
    # the library itself is inline: no script is loaded from elsewhere, and nothing is written beside the page
    assert re.search(r"<script[^>]*\bsrc\s*=", html) is None
    assert "plotly.js v" in html and "window.Plotly = Plotly" in html
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert 2_000_000 < path.stat().st_size < 8_000_000
    # no fixed width anywhere: the page's width (100 %), followed on resize; a height in px
    _, _, layout, config = _newplot_arguments(html)
    assert "width" not in layout and fig.layout.width is None
    assert config.get("responsive") is True
    assert re.search(r'<div style="height:\d+px; width:100%;">', html)

