"""Figures: one place that writes them, one house style.

Plotting functions across :mod:`mhe.viz` return figure objects; :func:`save_figure` writes
``figures/<name>.png`` for matplotlib figures and ``figures/<name>.html`` for plotly figures (one
self-contained, responsive page each). The constants below are the house style: a colour per objective
and one encoding of visible vs occluded joints shared by every figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mhe.utils import figures_dir

# Colours used consistently across notebooks: one per objective.
OBJECTIVE_COLORS = {
    "mhentropy": "#1b9e77",
    "mhentropy_aa": "#1f78b4",
    "mhentropy_rot": "#6a3d9a",
    "mhentropy_tempered": "#c51b7d",
    "mhentropy_long": "#66c2a5",
    "mhentropy_3d": "#0b5d45",
    "nll_3d": "#3b6310",
    "prohmr_2d": "#b2df8a",
    "no_entropy": "#d95f02",
    "no_reconstruction": "#7570b3",
    "no_prior": "#e7298a",
    "nll": "#66a61e",
    "min_of_n": "#e6ab02",
    "deterministic": "#a6761d",
    # the same objectives reading the image crop: lighter shades of their keypoint twins
    "mhentropy_image": "#66c2a5",
    "nll_image": "#a6d854",
    "deterministic_image": "#d9b26f",
    "ground_truth": "#333333",
}
GROUND_TRUTH_COLOR = OBJECTIVE_COLORS["ground_truth"]

# One encoding of visible vs occluded joints in every figure, matplotlib and plotly alike: a visible joint
# is a filled blue dot, an occluded one a filled red cross, both edged in white so they read on top of
# hypotheses; wherever a colour means "occluded" (hypotheses' bones to occluded joints, PJD bars) it is red.
VISIBLE_COLOR = "#2b83ba"
OCCLUDED_COLOR = "#d7191c"
VISIBLE_MARKER, OCCLUDED_MARKER = "o", "X"  # matplotlib
VISIBLE_SYMBOL, OCCLUDED_SYMBOL = "circle", "x"  # plotly
VISIBLE_LABEL = "visible joint (given to the model)"
OCCLUDED_LABEL = "occluded joint (never seen by the model)"


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, papermill, nbmake), False in a script or the tests."""
    try:
        from IPython import get_ipython
    except ImportError:  # IPython is a notebook dependency, not a core one
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def show_figure(fig: Any) -> None:
    """Display ``fig`` once in the notebook's output (matplotlib: as an inline PNG; plotly: interactive).

    A pyplot figure is closed after it is displayed, so that the inline backend does not show it a
    second time at the end of the cell. Outside a notebook this does nothing.
    """
    if not in_notebook():
        return
    from IPython.display import display

    display(fig)
    if hasattr(fig, "savefig"):
        import matplotlib.pyplot as plt

        plt.close(fig)


def show_png(path: Path, fig: Any, dpi: int) -> None:
    """Display the PNG ``path`` that ``fig`` was just written to at ``dpi``, and close ``fig``: the notebook shows
    the file itself, drawn once, instead of drawing the figure again for the inline backend. It takes the size
    the inline backend would give the figure (its pixels at the figure's own dpi), and is sharper for its
    higher dpi. Outside a notebook this does nothing."""
    if not in_notebook():
        return
    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    data = path.read_bytes()
    width = int.from_bytes(data[16:20], "big")  # the PNG header's width in pixels
    display(Image(data=data, width=max(1, round(width * fig.dpi / dpi))))
    plt.close(fig)


def save_figure(fig: Any, name: str, dpi: int = 150, show: bool | None = None) -> Path:
    """Write a matplotlib figure to ``<figures>/<name>.png`` or a plotly figure to ``<name>.html``.

    In a notebook the figure is also shown inline, once (``show=None``: when running in a kernel; pass
    ``show=False`` to only write it): a matplotlib figure as the PNG just written (:func:`show_png`). Returns the
    written path. ``$MHE_FIGURES_DIR`` redirects the output (tests use a temp folder).
    """
    out = figures_dir()
    if show is None:
        show = in_notebook()
    if hasattr(fig, "savefig"):
        path = out / f"{name}.png"
        fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white")
        if show:
            show_png(path, fig, dpi)
        return path
    if hasattr(fig, "write_html"):
        path = out / f"{name}.html"
        # Self-contained (plotly.js inline, ~5 MB: the file works offline and when copied alone) and
        # responsive (the figure takes the page's width and follows it when the window is resized). The
        # figure's element is named after the file, not a random id, so that a rerun writes the same bytes.
        fig.write_html(path, include_plotlyjs=True, full_html=True, config={"responsive": True},
                       default_width="100%", div_id=name)
        if show:
            show_figure(fig)
        return path
    raise TypeError(f"save_figure expects a matplotlib or plotly figure, got {type(fig).__name__}")
