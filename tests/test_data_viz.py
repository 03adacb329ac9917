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
from mhe.viz import OCCLUDED_COLOR, VISIBLE_COLOR, save_figure  # noqa: E402
from mhe.viz.data import first_look_figures, plot_consistent_poses, plot_crop_grid, plot_occlusion_stats  # noqa: E402


@pytest.fixture(scope="module")
def dataset():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SyntheticHands("test", size=12, images=True, image_size=48, mano=load_mano())


def _scatter_points(ax, color):
    rgba = matplotlib.colors.to_rgba(color)
    pts = [c.get_offsets() for c in ax.collections if len(c.get_offsets()) and np.allclose(c.get_facecolors()[0], rgba)]
    return np.concatenate(pts) if pts else np.zeros((0, 2))


def test_crop_grid_marks_visible_and_occluded_joints(dataset):
    fig = plot_crop_grid(dataset, indices=[0, 1, 2], cols=3)
    for ax, i in zip(fig.axes, [0, 1, 2]):
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
