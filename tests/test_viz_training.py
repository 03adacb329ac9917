"""The training-curve figure: its running mean against a brute-force loop, and what it draws."""

from __future__ import annotations

import numpy as np
import pytest

from mhe.viz.training import plot_training_terms, smooth


def test_smooth_is_the_running_mean_of_the_last_window_steps():
    rng = np.random.default_rng(0)
    x = rng.normal(size=57)
    for window in (1, 3, 10, 100):
        brute = [x[max(0, i - window + 1): i + 1].mean() for i in range(x.size)]
        np.testing.assert_allclose(smooth(x, window), brute, rtol=1e-12, atol=1e-12)


def test_one_panel_per_term_and_runs_without_a_term_are_left_out():
    history = [{"reconstruction": 5.0 - 0.1 * i, "prior": 1.0, "entropy": 0.5 * i} for i in range(30)]
    collapsed = [{"reconstruction": 4.0, "prior": 1.0} for _ in range(30)]  # no entropy reported
    fig = plot_training_terms({"mhentropy": history, "no_entropy": collapsed}, window=5)
    axes = fig.axes
    assert len(axes) == 3
    # two lines (raw + smoothed) per run that reports the term
    assert [len(ax.lines) for ax in axes] == [4, 4, 2]
    smoothed = axes[0].lines[1].get_ydata()
    np.testing.assert_allclose(smoothed, smooth([h["reconstruction"] for h in history], 5))


def test_no_runs_is_an_error():
    with pytest.raises(ValueError, match="at least one run"):
        plot_training_terms({})
