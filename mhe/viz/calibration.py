"""Post-hoc calibration by temperature (issue 29): the validation sweep of ``tools/calibration_temperature.py``
as a figure, and what its test table says, in words.

:func:`plot_temperature_calibration` draws, per body kind, each model's occluded-joint calibration score on the
validation split against the sampling temperature T, rings the T chosen there and marks T = 1 (the flow's own
spread) and the goal. :func:`calibration_takeaways` words ``figures/29_calibration_test.csv`` from its numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mhe.diagnostics import choose_temperature
from mhe.viz import OBJECTIVE_COLORS

__all__ = ["BODY_KINDS", "TARGET_SCORE", "calibration_takeaways", "model_label", "plot_temperature_calibration"]

#: the body kinds of the calibration tables, with their plural names
BODY_KINDS = {"hand": "hands", "body": "bodies"}
#: issue 29's goal for the occluded joints' calibration score at T = 1 (cGNF reports 0.03–0.07 on Human3.6M).
TARGET_SCORE = 0.10


def _short(model: str) -> str:
    return str(model).split("_", 1)[1] if "_" in str(model) else str(model)


def model_label(model: str) -> str:
    """The display name of a model named ``<body>_<name>`` (``hand_mhentropy_rot``) or ``<name>``, as the figures
    label it (:data:`mhe.viz.hands.LABELS`); other names (a run folder) are returned as they are."""
    from mhe.viz.hands import LABELS

    return LABELS.get(_short(model), str(model))



def plot_temperature_calibration(val: pd.DataFrame, models: Sequence[str] | None = None,
                                 goal: float = TARGET_SCORE) -> Figure:
    """One panel per body kind of ``val`` (the validation table): the occluded joints' score against T (log
    axis), one line per model (default: every model without a ``note``), its lowest score ringed (the chosen
    T), T = 1 and the ``goal`` dashed."""
    note = val["note"].fillna("") if "note" in val else pd.Series("", index=val.index)
    names = list(models) if models is not None else list(dict.fromkeys(val.loc[note == "", "model"]))
    bodies = [b for b in BODY_KINDS if b in set(val.loc[val["model"].isin(names), "body"])]
    fig, axes = plt.subplots(1, len(bodies), figsize=(5.6 * len(bodies), 5.2), squeeze=False)
    for ax, body in zip(axes[0], bodies, strict=True):
        ax.axhline(goal, color="#999999", ls="--", lw=1, label=f"goal: {goal:.2f}")
        ax.axvline(1.0, color="#bbbbbb", ls=":", lw=1)
        for name in names:
            rows = val[(val["model"] == name) & (val["body"] == body)].sort_values("temperature")
            if rows.empty:
                continue
            t, s = rows["temperature"].to_numpy(float), rows["score_occ"].to_numpy(float)
            color = OBJECTIVE_COLORS.get(_short(name))
            line, = ax.plot(t, s, marker="o", ms=3.5, lw=1.6, color=color, label=model_label(name))
            k = int(np.flatnonzero(t == choose_temperature(t, s))[0])  # the tool's choice
            ax.plot(t[k], s[k], "o", ms=11, mfc="none", mec=line.get_color(), mew=1.6)
        ax.set_xscale("log")
        ticks = sorted(set(val["temperature"].round(2)))
        ax.set_xticks(ticks, [f"{x:g}" for x in ticks], fontsize=7.5)
        ax.minorticks_off()
        ax.set(ylim=(0, 0.52), xlabel="sampling temperature T (T = 1: the flow's own spread)",
               ylabel="calibration score, occluded joints (0 = calibrated)",
               title=f"{BODY_KINDS[body]}, validation split: ring = T chosen")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    fig.tight_layout()
    return fig


def calibration_takeaways(test: pd.DataFrame, goal: float = TARGET_SCORE) -> str:
    """Markdown bullets from the test table: per body kind, the best model at T = 1, how far a temperature chosen
    on validation takes each kind of model, and which models it cannot calibrate."""
    one = test[test["sampling"] == "T = 1"].set_index("model")
    chosen = test[test["sampling"] != "T = 1"].set_index("model")
    lines = []
    for body, plural in BODY_KINDS.items():
        names = [m for m in one.index if one.loc[m, "body"] == body]
        if not names:
            continue
        best = min(names, key=lambda m: one.loc[m, "score_occ"])
        fixed = [m for m in names if chosen.loc[m, "score_occ"] <= goal < one.loc[m, "score_occ"]]
        flat = [m for m in names if chosen.loc[m, "score_occ"] >= 0.49]  # a curve at 0: no spread to widen
        stuck = [m for m in names if goal < chosen.loc[m, "score_occ"] < 0.49]
        text = (f"* **{plural.capitalize()}.** At T = 1 the best calibrated is {model_label(best)}: "
                f"{one.loc[best, 'score_occ']:.2f}, its 90 % region holding {one.loc[best, 'inside_90_occ']:.0%} of "
                f"the true occluded joints.")
        if fixed:
            text += " A temperature chosen on validation brings " + ", ".join(
                f"{model_label(m)} to {chosen.loc[m, 'score_occ']:.2f} (T = {chosen.loc[m, 'temperature']:g})"
                for m in fixed) + "."
        if stuck:
            text += " It cannot calibrate " + ", ".join(
                f"{model_label(m)} ({chosen.loc[m, 'score_occ']:.2f} at T = {chosen.loc[m, 'temperature']:g})"
                for m in stuck) + ": widened, their spread still misses the truth."
        if flat:
            who = ", ".join(model_label(m) for m in flat)
            text += " " + who[:1].upper() + who[1:] + (" has" if len(flat) == 1 else " have") + \
                " no spread on occluded joints to widen (score 0.50 at every T)."
        lines.append(text)
    return "\n".join(lines)
