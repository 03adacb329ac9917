"""mhe.viz.save_figure in a notebook: the PNG it writes is what the notebook shows, at the inline size, drawn once."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

import mhe.viz as viz  # noqa: E402


@pytest.fixture
def shown(monkeypatch):
    """What save_figure displays, as if it ran in a kernel."""
    import IPython.display

    out: list = []
    monkeypatch.setattr(viz, "in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", lambda obj: out.append(obj))
    return out


def test_a_notebook_shows_the_written_png_at_the_inline_size_and_closes_the_figure(shown):
    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    ax.plot([0, 1], [0, 1])
    draws = []
    fig.canvas.mpl_connect("draw_event", lambda event: draws.append(event))
    path = viz.save_figure(fig, "test_shown")
    (image,) = shown
    assert image.data == path.read_bytes()  # the file itself, not a second rendering
    width = int.from_bytes(image.data[16:20], "big")
    assert width > 400 and image.width == round(width * 100 / 150)  # 150 dpi pixels at the figure's 100 dpi size
    assert not plt.fignum_exists(fig.number)  # closed: the inline backend will not draw it again
    assert len(draws) <= 2  # the tight bounding box and the file, nothing for the display


def test_outside_a_notebook_nothing_is_shown(monkeypatch):
    monkeypatch.setattr(viz, "in_notebook", lambda: False)
    fig, _ = plt.subplots()
    assert viz.save_figure(fig, "test_not_shown").is_file()
    assert plt.fignum_exists(fig.number)
    plt.close(fig)


def test_a_plotly_figure_is_written_the_same_twice(monkeypatch):
    import plotly.graph_objects as go

    monkeypatch.setattr(viz, "in_notebook", lambda: False)
    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))
    first = viz.save_figure(fig, "test_plotly_twice").read_bytes()
    second = viz.save_figure(fig, "test_plotly_twice").read_bytes()
    assert first == second  # no random element id: reproducing a figure leaves git clean
    assert b'id="test_plotly_twice"' in first
