"""Training curves: the terms an objective returns, step by step, one panel per term.

The objectives of :mod:`mhe.objectives` return ``(loss, terms)`` with ``terms`` a dict of floats
(``reconstruction``, ``prior``, ``entropy``, ...). A notebook that trains live appends each step's
``terms`` to a list; :func:`plot_training_terms` draws those lists for one or more runs side by side, so
a student sees what each term does while the model learns (and what happens when one is switched off).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from mhe.viz import OBJECTIVE_COLORS

TERM_TITLES = {
    "reconstruction": "reconstruction  E[−log p(obs | θ)]",
    "prior": "prior  E[−log p(θ)]",
    "entropy": "entropy  −E[log q(θ | obs)]",
    "loss": "loss",
    "nll": "NLL  −log q(θ_gt | obs)",
}


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """The running mean of ``values`` over the last ``window`` steps (shorter at the start)."""
    x = np.asarray(values, dtype=float)
    if window <= 1 or x.size == 0:
        return x
    cumsum = np.cumsum(np.insert(x, 0, 0.0))
    counts = np.minimum(np.arange(1, x.size + 1), window)
    return (cumsum[1:] - cumsum[np.maximum(np.arange(1, x.size + 1) - window, 0)]) / counts


def plot_training_terms(
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    terms: Sequence[str] = ("reconstruction", "prior", "entropy"),
    window: int = 20,
    colors: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Figure:
    """One panel per term, one line per run: the term against the training step.

    Args:
        histories: ``{run: [terms of step 0, terms of step 1, ...]}``, each element the dict an objective
            returns. A run that does not report a term (e.g. the entropy of a run trained without it) is
            left out of that panel.
        terms: the terms to draw, in panel order.
        window: running-mean window in steps (the raw values are drawn faintly behind).
        colors: a colour per run (default: the house colour of an objective of that name).
        labels: a legend label per run (default: the run's name).
    """
    if not histories:
        raise ValueError("plot_training_terms needs at least one run's history")
    fig, axes = plt.subplots(1, len(terms), figsize=(4.2 * len(terms), 3.2), squeeze=False)
    for ax, term in zip(axes[0], terms, strict=True):
        for k, (run, history) in enumerate(histories.items()):
            values = [step[term] for step in history if term in step]
            if not values:
                continue
            color = (colors or {}).get(run) or OBJECTIVE_COLORS.get(run) or f"C{k}"
            steps = np.arange(len(values))
            ax.plot(steps, values, color=color, alpha=0.2, lw=0.8)
            ax.plot(steps, smooth(values, window), color=color, lw=2, label=(labels or {}).get(run, run))
        ax.set_title(TERM_TITLES.get(term, term), fontsize=10)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("nats per item")
    handles, names = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="upper center", ncol=len(names), frameon=False, bbox_to_anchor=(0.5, 1.08))
    fig.tight_layout()
    return fig
