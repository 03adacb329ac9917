"""mhe.viz.data: the first-look figures draw what the data says (markers, bar heights, both poses)."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mhe.body import HAND_KEYPOINTS, TO_FREIHAND, load_mano  # noqa: E402
from mhe.data import SyntheticHands, consistent_alternative, occlusion_stats  # noqa: E402
from mhe.viz import OCCLUDED_COLOR, OCCLUDED_LABEL, VISIBLE_COLOR, VISIBLE_LABEL, save_figure  # noqa: E402
from mhe.viz.data import first_look_figures, plot_consistent_poses, plot_crop_grid, plot_occlusion_stats  # noqa: E402
from mhe.viz.hands import plot_hypotheses  # noqa: E402


@pytest.fixture(scope="module")
def dataset():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SyntheticHands("test", size=12, images=True, image_size=48, mano=load_mano())


def _scatter_points(ax, color):
    rgba = matplotlib.colors.to_rgba(color)
    pts = [c.get_offsets() for c in ax.collections
           if len(c.get_offsets()) and len(c.get_facecolors()) and np.allclose(c.get_facecolors()[0], rgba)]
    return np.concatenate(pts) if pts else np.zeros((0, 2))


def test_crop_grid_marks_visible_and_occluded_joints(dataset):
    fig = plot_crop_grid(dataset, indices=[0, 1, 2], cols=3)
    for ax, i in zip(fig.axes, [0, 1, 2], strict=True):
        item = dataset[i]
        vis = item["visible"].numpy()
        shown_vis = _scatter_points(ax, VISIBLE_COLOR)
        shown_occ = _scatter_points(ax, OCCLUDED_COLOR)
        assert len(shown_vis) == vis.sum() and len(shown_occ) == (~vis).sum()
        # markers sit at the keypoints in image pixels (48 px crop, pixel centres at integers)
        expected = (item["obs"].numpy()[vis] + 1) / 2 * 48 - 0.5
        np.testing.assert_allclose(shown_vis, expected, atol=1e-5)
    plt.close(fig)


def test_occlusion_bars_have_the_table_heights(dataset):
    stats = occlusion_stats(dataset)
    fig = plot_occlusion_stats(stats)
    ax = fig.axes[0]
    order = [HAND_KEYPOINTS[k] for k in TO_FREIHAND]
    tops = np.zeros(21)
    for patch in ax.patches:
        k = int(round(patch.get_x() + patch.get_width() / 2))
        tops[k] = max(tops[k], patch.get_y() + patch.get_height())
    np.testing.assert_allclose(tops, stats.loc[order, "occluded"].to_numpy(), atol=1e-9)
    assert [t.get_text() for t in ax.get_xticklabels()][1] == "thumb cmc"
    plt.close(fig)


def test_consistent_poses_figure_and_first_look(dataset):
    index = next(i for i in range(len(dataset)) if consistent_alternative(dataset, i) is not None)
    fig = plot_consistent_poses(dataset[index], consistent_alternative(dataset, index))
    assert len(fig.axes) == 3 and "camera view" in fig.axes[1].get_title()
    plt.close(fig)
    figures = first_look_figures(dataset, n_grid=4, n_stats=6)
    assert set(figures) == {"crops", "occlusion", "ambiguity"}
    for name, f in figures.items():
        assert save_figure(f, f"test_{name}").stat().st_size > 1000
        plt.close(f)


def _marker_shape(ax, color):
    """The marker path (vertices) of the scatter drawn in ``color`` in ``ax``."""
    rgba = matplotlib.colors.to_rgba(color)
    (coll,) = [c for c in ax.collections
               if len(c.get_offsets()) and len(c.get_facecolors()) and np.allclose(c.get_facecolors()[0], rgba)]
    return np.round(coll.get_paths()[0].vertices, 6)


def test_hypotheses_figure_uses_the_house_encoding_with_a_legend_and_units(dataset):
    rng = np.random.default_rng(0)
    vis = np.arange(21) % 3 != 0
    gt_uv, gt_xyz = rng.uniform(60, 200, (21, 2)), rng.normal(0, 30, (21, 3))
    preds = {name: {"uv": gt_uv + rng.normal(0, 4, (6, 21, 2)), "xyz": gt_xyz + rng.normal(0, 6, (6, 21, 3))}
             for name in ("mhentropy", "nll")}
    fig = plot_hypotheses(preds, gt_uv, gt_xyz, vis, num_show=6)
    assert len(fig.axes) == 4  # (image, side) per objective
    side = np.stack([gt_xyz[:, 2], gt_xyz[:, 1]], -1)
    crops = plot_crop_grid(dataset, indices=[0], cols=1)
    for k, ax in enumerate(fig.axes):
        expected = gt_uv if k % 2 == 0 else side
        np.testing.assert_allclose(_scatter_points(ax, VISIBLE_COLOR), expected[vis])
        np.testing.assert_allclose(_scatter_points(ax, OCCLUDED_COLOR), expected[~vis])
        # the same shapes in both panels, and as in the benchmark's crops
        for color in (VISIBLE_COLOR, OCCLUDED_COLOR):
            np.testing.assert_array_equal(_marker_shape(ax, color), _marker_shape(crops.axes[0], color))
        unit = "(px" if k % 2 == 0 else "(mm"
        assert unit in ax.get_xlabel() and unit in ax.get_ylabel()
        assert ax.yaxis_inverted()  # image y points down in both views
    assert not np.array_equal(_marker_shape(fig.axes[0], VISIBLE_COLOR), _marker_shape(fig.axes[0], OCCLUDED_COLOR))
    assert "MHEntropy" in fig.axes[0].get_title() and "NLL" in fig.axes[2].get_title()
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert VISIBLE_LABEL in texts and OCCLUDED_LABEL in texts and "ground truth" in texts
    assert any("occluded" in t and "hypotheses" in t for t in texts)
    plt.close(fig)
    plt.close(crops)
