"""Figures of the posterior diagnostics and of selection by extra evidence, drawn from the diagnostics
CSVs (``figures/04_hand_diagnostics.csv``, ``figures/05_body_diagnostics.csv``, written by
``tools/diagnostics.py`` through :func:`mhe.diagnostics.diagnose_model`).

:func:`calibration_points` reads a model's calibration curve from such a table (columns ``calib_occ_<α>``),
:func:`plot_calibration` draws the curves of every model beside the diagonal (one panel per table), and
:func:`plot_selection` how much a random hypothesis, the hypotheses selected by each piece of evidence and
the oracle change the MPJPE against the mode's, per model, and :func:`plot_selection_temperature` how that
change depends on the sampling temperature on the validation split (the choice of T).
:func:`plot_flip_calibration` draws the validation table of ``tools/flip_calibration.py``: the temperature
scaling of the depth-flip weight (``model.flip_temperature``). :func:`plot_best_of_s` draws how the best of s
hypotheses' error falls as s grows (:func:`mhe.diagnostics.best_of_s_table`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mhe.viz import OBJECTIVE_COLORS
from mhe.viz.hands import LABELS

CALIBRATION_PREFIX = "calib_occ_"
# what each selection column of a diagnostics table means, in plot order
SELECTION_COLUMNS = {
    "mode": "mode",
    "mean": "a random hypothesis (mean)",
    "selected_depths": "selected by joint depths",
    "selected_side_view_noisy": "selected by a noisy side view",
    "selected_side_view": "selected by a side view",
    "oracle": "oracle (best hypothesis)",
}


def calibration_points(frame: pd.DataFrame, model: str, subset: str = "all") -> tuple[np.ndarray, np.ndarray]:
    """The calibration curve ``(alphas, fractions)`` of ``model``'s row for ``subset`` in a diagnostics table
    (empty arrays when the row has no curve, e.g. a deterministic model)."""
    cols = [c for c in frame.columns if c.startswith(CALIBRATION_PREFIX)]
    rows = frame[(frame["model"] == model) & (frame["subset"] == subset)]
    if rows.empty:
        raise KeyError(f"no row for model {model!r} and subset {subset!r}")
    alphas = np.array([float(c[len(CALIBRATION_PREFIX):]) for c in cols])
    values = rows.iloc[0][cols].to_numpy(dtype=float)
    keep = np.isfinite(values)
    order = np.argsort(alphas[keep])
    return alphas[keep][order], values[keep][order]


def plot_calibration(tables: Mapping[str, pd.DataFrame], subset: str = "all",
                     models: Sequence[str] | None = None) -> Figure:
    """One panel per diagnostics table (``{title: frame}``): the fraction of ground-truth occluded joints
    inside the central q-region of the hypotheses against q, one line per model, the diagonal ideal.
    A curve below the diagonal: the hypotheses are too narrow (over-confident); above: too wide."""
    fig, axes = plt.subplots(1, len(tables), figsize=(4.6 * len(tables), 4.4), squeeze=False)
    for ax, (title, frame) in zip(axes[0], tables.items(), strict=True):
        ax.plot([0, 1], [0, 1], color="#999999", ls="--", lw=1, label="calibrated (ideal)")
        names = models if models is not None else list(dict.fromkeys(frame["model"]))
        for name in names:
            if name not in set(frame["model"]):
                continue
            a, v = calibration_points(frame, name, subset)
            if len(a):
                ax.plot(a, v, marker="o", ms=3.5, lw=1.6, color=OBJECTIVE_COLORS.get(name),
                        label=LABELS.get(name, name))
        ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", title=title, xlabel="q (central region's share of hypotheses)",
               ylabel="ground-truth occluded joints inside")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, loc="upper left")
    fig.tight_layout()
    return fig


def plot_selection(tables: Mapping[str, pd.DataFrame], subset: str | None = "all",
                   models: Sequence[str] | None = None) -> Figure:
    """One panel per diagnostics table (``{title: frame}``): per model, grouped bars of the change in MPJPE
    against the model's own mode (%, negative: better) of a random hypothesis, the hypotheses selected by each
    piece of evidence and the oracle, on the rows of ``subset`` (``None``: each table's ambiguous subset, its
    first subset other than "all"). The mode's MPJPE (mm), and the sampling temperature when the table has
    it, are written under each model's name."""
    columns = {k: v for k, v in SELECTION_COLUMNS.items() if k != "mode"}
    fig, axes = plt.subplots(len(tables), 1, figsize=(10, 3.9 * len(tables)), squeeze=False)
    shades = plt.get_cmap("viridis")(np.linspace(0.1, 0.9, len(columns)))
    for ax, (title, frame) in zip(axes[:, 0], tables.items(), strict=True):
        which = subset if subset is not None else next((v for v in frame["subset"] if v != "all"), "all")
        rows = frame[frame["subset"] == which].set_index("model")
        names = [m for m in (models if models is not None else rows.index) if m in rows.index]
        width = 0.8 / len(columns)
        x = np.arange(len(names))
        mode = rows.loc[names, "mode"].to_numpy(dtype=float)
        for k, (col, label) in enumerate(columns.items()):
            if col in rows.columns:
                change = 100.0 * (rows.loc[names, col].to_numpy(dtype=float) / mode - 1.0)
                ax.bar(x + (k - (len(columns) - 1) / 2) * width, change, width, color=shades[k], label=label)
        ax.axhline(0.0, color="#333333", lw=0.8)
        # the sampling temperature, where there is a choice to sample (hypotheses that differ from the mode)
        sampled = "temperature" in rows.columns
        temps = [rows.loc[n, "temperature"] if sampled and rows.loc[n, "oracle"] < rows.loc[n, "mode"] else None
                 for n in names]
        ticks = [f"{textwrap.fill(LABELS.get(n, n), 16)}\nmode {m:.1f} mm" + (f"\nT = {t:g}" if t is not None else "")
                 for n, m, t in zip(names, mode, temps, strict=True)]
        ax.set_xticks(x, ticks, fontsize=7.5)
        ax.set(ylabel="MPJPE change against the mode (%)", title=f"{title} ({which})")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, ncol=3, loc="lower left")
        low = min(0.0, float(np.nanmin(ax.get_ylim())))
        ax.set_ylim(low * 1.35, max(5.0, float(ax.get_ylim()[1])))  # room for the legend below the bars
    fig.tight_layout()
    return fig


def plot_selection_temperature(frame: pd.DataFrame, subset: str = "occluded",
                               chosen: Mapping[str, float] | None = None) -> Figure:
    """Selection against the sampling temperature, from a selection validation table
    (``tools/selection_validation.py``): per model (one colour), the MPJPE change against its mode (%) of the
    hypothesis a side view selects (solid) and of the oracle (dotted), on the rows of ``subset``; the
    temperature chosen for each model (``chosen``, e.g. ``mhe.lab.diagnostics_runs.selection_temperatures``) is
    ringed. The oracle's curve bounds the selected one's."""
    rows = frame[frame["subset"] == subset]
    fig, ax = plt.subplots(figsize=(7.4, 4.4))
    for model, group in rows.groupby("model", sort=False):
        group = group.sort_values("temperature")
        name = str(model).removeprefix("hand_").removeprefix("body_")  # as selection_temperatures keys it
        color = OBJECTIVE_COLORS.get(name)
        t = group["temperature"].to_numpy(dtype=float)
        mode = group["mode"].to_numpy(dtype=float)
        selected = 100.0 * (group["selected_side_view"].to_numpy(dtype=float) / mode - 1.0)
        line, = ax.plot(t, selected, marker="o", ms=3.5, lw=1.6, color=color, label=LABELS.get(name, name))
        ax.plot(t, 100.0 * (group["oracle"].to_numpy(dtype=float) / mode - 1.0), ls=":", lw=1.2, color=line.get_color())
        if chosen is not None and name in chosen:
            k = int(np.argmin(np.abs(t - chosen[name])))
            ax.plot(t[k], selected[k], "o", ms=11, mfc="none", mec=line.get_color(), mew=1.6)
    ax.set_xscale("log")
    ticks = sorted(set(rows["temperature"].astype(float)))
    ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
    ax.minorticks_off()
    ax.axhline(0.0, color="#333333", lw=0.8)
    ax.set(xlabel="sampling temperature T", ylabel="MPJPE change against the mode (%)",
           title=f"Selection by a side view on the validation split ({subset}): solid selected, dotted oracle")
    ax.title.set_fontsize(9.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper right")
    fig.tight_layout()
    return fig


def plot_flip_calibration(frame: pd.DataFrame, model: str, chosen: float | None = None) -> Figure:
    """Temperature scaling of the depth-flip weight, from a flip calibration table
    (``tools/flip_calibration.py``) for one ``model``: left, the ground truth's log-likelihood (nats per
    dimension, the criterion); right, the BH-MPJPE of the hands whose hypotheses mostly mirror the palm
    (flipped) and of the rest, and the mean over hypotheses, all in mm. The chosen τ (``chosen``, e.g.
    :func:`~mhe.lab.diagnostics_runs.flip_temperature_choice`) is ringed on the left and marked on the right."""
    rows = frame[frame["model"] == model].sort_values("flip_temperature")
    if rows.empty:
        raise ValueError(f"the flip calibration table has no rows for {model!r}")
    tau = rows["flip_temperature"].to_numpy(dtype=float)
    fig, (ax_ll, ax_mm) = plt.subplots(1, 2, figsize=(9.6, 3.9))
    color = OBJECTIVE_COLORS.get(str(model).removeprefix("hand_"), "#4c72b0")
    ll = rows["gt_log_lik"].to_numpy(dtype=float)
    ax_ll.plot(tau, ll, marker="o", ms=3.5, lw=1.6, color=color)
    ax_ll.set(xlabel="flip temperature τ (the weight's logit / τ)", ylabel="log q(ground truth), nats per dim",
              title="the criterion: the truth's log-likelihood (higher is better)")
    if "mpjpe_bh_flip" in rows and rows["mpjpe_bh_flip"].notna().any():
        ax_mm.plot(tau, rows["mpjpe_bh_flip"], marker="o", ms=3.5, lw=1.6, color="#c44e52",
                   label="BH-MPJPE, hands mostly flipped")
        ax_mm.plot(tau, rows["mpjpe_bh_noflip"], marker="o", ms=3.5, lw=1.6, color="#4c72b0",
                   label="BH-MPJPE, the rest")
        ax_mm.plot(tau, rows["mpjpe_mean"], marker="s", ms=3.0, lw=1.2, ls="--", color="#555555",
                   label="mean over hypotheses")
        ax_mm.legend(fontsize=7.5)
    ax_mm.set(xlabel="flip temperature τ", ylabel="mm", title="what it does to the hypotheses")
    for ax in (ax_ll, ax_mm):
        ax.set_xscale("log")
        ax.set_xticks(tau, [f"{v:g}" for v in tau])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.title.set_fontsize(9.5)
        if chosen is not None:
            ax.axvline(chosen, color="#333333", lw=0.8, ls=":")
    if chosen is not None:
        k = int(np.argmin(np.abs(tau - chosen)))
        ax_ll.plot(tau[k], ll[k], "o", ms=11, mfc="none", mec=color, mew=1.6)
    fig.suptitle(f"{LABELS.get(str(model).removeprefix('hand_'), model)}: calibrating the depth-flip weight on "
                 f"the validation split", fontsize=10.5)
    fig.tight_layout()
    return fig


def plot_best_of_s(frame: pd.DataFrame, title: str | None = None) -> Figure:
    """The best-of-s error against s (log axis), one line per model of a :func:`mhe.diagnostics.best_of_s_table`
    frame, each model's mode (its zero-noise hypothesis) as a dotted horizontal line of the same colour."""
    fig, ax = plt.subplots(figsize=(7.2, 4.3))
    for model, group in frame.groupby("model", sort=False):
        group = group.sort_values("S")
        name = str(model).removeprefix("hand_").removeprefix("body_")
        line, = ax.plot(group["S"], group["mpjpe_bh"], marker="o", ms=3.5, lw=1.8, color=OBJECTIVE_COLORS.get(name),
                        label=f"{LABELS.get(name, name)}: best of s")
        mode = float(group["mpjpe_mode"].iloc[0])
        if np.isfinite(mode):
            ax.axhline(mode, color=line.get_color(), ls=":", lw=1.2, label=f"{LABELS.get(name, name)}: its mode")
    sizes = sorted(set(frame["S"].astype(int)))
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(v) for v in sizes])
    ax.minorticks_off()
    ax.set(xlabel="s, hypotheses drawn (log scale)", ylabel="best-of-s MPJPE (mm)",
           title=title or "The error of the best of s hypotheses against s")
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, ncol=2)
    fig.tight_layout()
    return fig
