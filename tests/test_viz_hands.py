"""mhe.viz.hands.plot_accuracy_vs_diversity: the axes say what they plot, and every label sits beside its own
point without overlapping another."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from mhe.viz.hands import LABELS, plot_accuracy_vs_diversity  # noqa: E402


@pytest.fixture(scope="module")
def table():
    # crowded on purpose: three models share a point, two more nearly do
    rows = {
        "mhentropy": (17.7, 22.8, 7.1, 3.8, 17.0), "mhentropy_aa": (18.6, 23.8, 8.4, 4.5, 17.0),
        "mhentropy_rot": (15.6, 24.2, 12.6, 9.8, 49.6), "no_entropy": (26.9, 26.9, 0.0, 0.0, 13.6),
        "deterministic": (28.0, 28.0, 0.0, 0.0, 12.6), "min_of_n": (20.6, 22.4, 1.8, 1.7, 15.4),
        "nll": (29.2, 42.7, 14.3, 15.5, 53.5), "mhentropy_image": (46.9, 52.2, 6.7, 5.2, 46.8),
        "deterministic_image": (58.9, 58.9, 0.0, 0.0, 42.1), "nll_image": (51.3, 67.9, 21.3, 16.8, 68.5),
    }
    return pd.DataFrame(rows, index=["mpjpe_bh", "mpjpe_mean", "pjd_3d_occ", "pjd_2d_vis", "ah"]).T


def _labels(ax):
    return [t for t in ax.texts if t.get_text() in LABELS.values()]


def test_the_left_panel_plots_the_mean_error_and_the_oracle_honestly(table):
    fig = plot_accuracy_vs_diversity(table, samples=200)
    left = fig.axes[0]
    assert "accura" not in left.get_title().lower()
    assert "MPJPE" in left.get_ylabel()
    offsets = np.concatenate([c.get_offsets() for c in left.collections])
    for name, row in table.iterrows():
        for col in ("mpjpe_mean", "mpjpe_bh"):  # both markers are drawn at the table's values
            assert np.isclose(offsets, [row.pjd_3d_occ, row[col]]).all(axis=1).any(), (name, col)
    legend = " ".join(t.get_text() for t in left.get_legend().get_texts())
    assert "oracle" in legend and "best of 200" in legend
    plt.close(fig)


def test_labels_sit_beside_their_points_without_overlapping(table):
    fig = plot_accuracy_vs_diversity(table)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax, ycol, xcol in ((fig.axes[0], "mpjpe_mean", "pjd_3d_occ"), (fig.axes[1], "ah", "pjd_2d_vis")):
        labels = _labels(ax)
        assert sorted(t.get_text() for t in labels) == sorted(LABELS[n] for n in table.index)
        boxes = []
        for t in labels:
            name = next(n for n in table.index if LABELS[n] == t.get_text())
            assert np.allclose(t.xy, (table.loc[name, xcol], table.loc[name, ycol]))  # anchored at its point
            box = t.get_window_extent(renderer)
            point = ax.transData.transform(t.xy)
            gap = max(box.x0 - point[0], point[0] - box.x1, box.y0 - point[1], point[1] - box.y1, 0.0)
            assert gap < 40, f"{t.get_text()!r} is {gap:.0f} px from its point"
            boxes.append(box)
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                assert not boxes[i].overlaps(boxes[j]), (labels[i].get_text(), labels[j].get_text())
    plt.close(fig)
