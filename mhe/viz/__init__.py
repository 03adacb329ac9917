"""Figures: one place that writes them, one house style.

Plotting functions across :mod:`mhe.viz` return figure objects; :func:`save_figure` writes
``figures/<name>.png`` for matplotlib figures and ``figures/<name>.html`` for plotly figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mhe.utils import figures_dir

# Colours used consistently across notebooks: one per objective.
OBJECTIVE_COLORS = {
    "mhentropy": "#1b9e77",
    "mhentropy_aa": "#1f78b4",
    "no_entropy": "#d95f02",
    "no_reconstruction": "#7570b3",
    "no_prior": "#e7298a",
    "nll": "#66a61e",
    "min_of_n": "#e6ab02",
    "deterministic": "#a6761d",
    "ground_truth": "#333333",
}
VISIBLE_COLOR = "#2b83ba"
OCCLUDED_COLOR = "#d7191c"


def save_figure(fig: Any, name: str, dpi: int = 150) -> Path:
    """Write a matplotlib figure to ``<figures>/<name>.png`` or a plotly figure to ``<name>.html``.

    Returns the written path. ``$MHE_FIGURES_DIR`` redirects the output (tests use a temp folder).
    """
    out = figures_dir()
    if hasattr(fig, "savefig"):
        path = out / f"{name}.png"
        fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white")
        return path
    if hasattr(fig, "write_html"):
        path = out / f"{name}.html"
        # offline: plotly.min.js is written once beside the html files
        fig.write_html(path, include_plotlyjs="directory", full_html=True)
        return path
    raise TypeError(f"save_figure expects a matplotlib or plotly figure, got {type(fig).__name__}")
