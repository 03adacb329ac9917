"""The reference-posterior figure of issue 29: for the toy arm, one hand and one body, the draws of a reference
posterior beside MHEntropy's and NLL's hypotheses for the same item, and their calibration curves.

A *reference posterior* samples a model's own target p̃(θ | obs) without its flow: for the arm the exact
posterior (:class:`mhe.toy.ExactArmPosterior`), for hands and bodies the HMC draws of :mod:`mhe.reference`
that ``tools/reference_posterior.py`` caches as ``data/reference/<model>_ref<1|2>.npz`` (read them with
:func:`load_reference`). Each row of :func:`plot_reference_posterior` is a :class:`ReferenceRow`:

* :func:`arm_row` from the two tables notebook 01 commits (:func:`mhe.toy.write_arm_hypotheses`,
  :func:`mhe.toy.write_arm_calibration`): the elbow and tip of each hypothesis in the plane;
* :func:`pose_row` from root-relative 3D joints in mm: the occluded joints of each hypothesis seen from the side
  (depth z across, y down), where a single view leaves the most open.

The last panel of a row draws the calibration curves (:func:`calibration_curves`, the fraction of true joints
inside the central q-region of the hypotheses at cGNF's levels q = 0.05 … 0.95) of every source beside the
diagonal, each labelled with its score, the mean |curve − q| (:func:`calibration_score`).
:func:`reference_takeaways` words what ``figures/29_reference_calibration.csv`` says, from its numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mhe.diagnostics import CALIBRATION_LEVELS, calibration_curve, calibration_gap, joint_masks
from mhe.viz import GROUND_TRUTH_COLOR, OBJECTIVE_COLORS
from mhe.viz.body import draw_joints, visibility_handles

__all__ = ["REFERENCE_COLOR", "SOURCE_LABELS", "ReferenceRow", "arm_row", "calibration_curves",
           "calibration_score", "load_reference", "occluded_mask", "plot_reference_posterior", "pose_row",
           "reference_takeaways"]

#: The colour of a reference posterior's draws (the exact posterior's, for the toy): none of the objectives'.
REFERENCE_COLOR = "#8856a7"
#: Readable names of the figure's sources; others are shown as given.
SOURCE_LABELS = {"reference": "reference posterior (HMC)", "exact posterior": "exact posterior",
                 "mhentropy": "MHEntropy", "nll": "NLL (ProHMR-style)"}
#: What a reference file holds (``tools/reference_posterior.py`` writes it).
REFERENCE_KEYS = ("joints_mm", "truth_mm", "visible", "split", "index")


def _color(source: str) -> str:
    return REFERENCE_COLOR if source in ("reference", "exact posterior") else OBJECTIVE_COLORS.get(source, "#555555")


def _label(source: str) -> str:
    return SOURCE_LABELS.get(source, source)


def load_reference(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a cached reference posterior ``<model>_ref<1|2>.npz``: ``joints_mm (N, R, J, 3)`` R draws
    per item (root-relative, mm), ``truth_mm (N, J, 3)``, ``visible (N, J)``, ``split (N,)`` and ``index (N,)``
    (the item in that split of the model's experiment). A missing file says which tool draws it."""
    path = Path(path)
    if not path.is_file():
        model = path.name.split("_ref")[0]
        raise FileNotFoundError(
            f"no reference posterior at {path}: tools/reference_posterior.py draws it, e.g. `OMP_NUM_THREADS=1 "
            f"python tools/reference_posterior.py --models {model} --out {path.parent}` (docs/reference_posterior.md, "
            f"'Running it')")
    with np.load(path) as data:
        missing = [k for k in REFERENCE_KEYS if k not in data.files]
        if missing:
            raise ValueError(f"{path} lacks {missing}: it is not a reference file of tools/reference_posterior.py "
                             f"(which writes {list(REFERENCE_KEYS)}); draw it again with that tool")
        return {k: data[k] for k in data.files}


def occluded_mask(visible: Any, root: int = 0) -> torch.Tensor:
    """The (item, joint) pairs a reference is scored on ``(N, J)``: the occluded joints, the root left out (it is
    the origin of root-relative joints and never moves)."""
    return joint_masks(torch.as_tensor(np.asarray(visible)), root)[0]


def calibration_curves(draws: Mapping[str, Any], truth: Any, mask: Any,
                       levels: Sequence[float] = CALIBRATION_LEVELS) -> dict[str, np.ndarray]:
    """The calibration curve of each source's draws ``(N, S, J, D)`` against ``truth (N, J, D)`` on the pairs of
    ``mask (N, J)`` (:func:`mhe.diagnostics.calibration_curve`) → ``{source: (len(levels),)}``."""
    truth_t = torch.as_tensor(np.asarray(truth, dtype=np.float32))
    mask_t = torch.as_tensor(np.asarray(mask)).bool()
    return {name: calibration_curve(torch.as_tensor(np.asarray(d, dtype=np.float32)), truth_t, mask_t,
                                    levels).numpy() for name, d in draws.items()}


def calibration_score(curve: Any, levels: Sequence[float] = CALIBRATION_LEVELS) -> float:
    """The mean |fraction inside − q| over the levels (0: calibrated; cGNF's score):
    :func:`mhe.diagnostics.calibration_gap` of any array-like curve."""
    return calibration_gap(torch.as_tensor(np.asarray(curve, dtype=float)), levels)


@dataclass
class ReferenceRow:
    """One row of :func:`plot_reference_posterior`.

    ``points``: source → ``(N, K, 2)`` the drawn joints of each hypothesis, in the panel's coordinates;
    ``truth (J, 2)`` and ``parents`` the true skeleton in the same coordinates (``visible (J,)`` marks its joints
    in the house encoding, None: plain black); ``curves``: source → ``(len(levels),)`` calibration curve;
    ``hlines``: (value, line style, label) guides across the hypothesis panels (the arm's observed heights).
    """

    title: str
    points: dict[str, np.ndarray]
    truth: np.ndarray
    parents: tuple[int, ...]
    curves: dict[str, np.ndarray]
    curve_title: str
    xlabel: str
    ylabel: str
    visible: np.ndarray | None = None
    levels: tuple[float, ...] = CALIBRATION_LEVELS
    invert_y: bool = False
    hlines: list[tuple[float, str, str]] = field(default_factory=list)


def arm_row(hypotheses: pd.DataFrame, calibration: pd.DataFrame, title: str = "toy arm, one observation",
            sources: Sequence[str] = ("exact posterior", "mhentropy", "nll")) -> ReferenceRow:
    """The toy's row from notebook 01's tables: ``hypotheses`` (``figures/01_arm_hypotheses.csv``: source, elbow
    and tip in the plane; the source ``"truth"`` the true arm) and ``calibration`` (``figures/01_arm_calibration.csv``:
    source, alpha, inside)."""
    for name, frame, columns in (("hypotheses", hypotheses, ("source", "elbow_x", "elbow_y", "tip_x", "tip_y")),
                                 ("calibration", calibration, ("source", "alpha", "inside"))):
        if not set(columns) <= set(frame.columns):
            raise ValueError(f"the arm's {name} table needs the columns {list(columns)}, got {list(frame.columns)}: "
                             "notebook 01 writes it (mhe.toy.write_arm_{name})")
    have_h, have_c = set(hypotheses["source"]), set(calibration["source"])
    absent = [s for s in sources if s not in have_h or s not in have_c] + ([] if "truth" in have_h else ["truth"])
    if absent:
        raise ValueError(f"the arm's tables lack the sources {absent}; the hypotheses have {sorted(have_h)}, the "
                         f"calibration {sorted(have_c)}")
    joints = ["elbow_x", "elbow_y", "tip_x", "tip_y"]
    points = {s: hypotheses.loc[hypotheses["source"] == s, joints].to_numpy(float).reshape(-1, 2, 2) for s in sources}
    elbow, tip = hypotheses.loc[hypotheses["source"] == "truth", joints].to_numpy(float).reshape(2, 2)
    levels = tuple(float(a) for a in sorted(set(calibration["alpha"])))
    curves = {s: calibration[calibration["source"] == s].sort_values("alpha")["inside"].to_numpy(float)
              for s in sources}
    return ReferenceRow(title, points, np.stack([np.zeros(2), elbow, tip]), (-1, 0, 1), curves,
                        "calibration: elbow and tip", "x (never observed)", "height y (observed)",
                        levels=levels, hlines=[(float(elbow[1]), "--", "observed elbow height"),
                                               (float(tip[1]), ":", "observed tip height")])


def pose_row(title: str, draws: Mapping[str, Any], truth: Any, visible: Any, parents: Sequence[int],
             curves: Mapping[str, Any], curve_title: str, root: int = 0) -> ReferenceRow:
    """A hand's or body's row: ``draws`` source → ``(S, J, 3)`` root-relative joints (mm) of one item, its
    ``truth (J, 3)`` and ``visible (J,)``; the occluded non-root joints of each draw are shown from the side
    (depth z across, y down, as in :func:`mhe.viz.hands.plot_hypotheses`)."""
    vis = np.asarray(visible, dtype=bool)
    hidden = ~vis
    hidden[root] = False
    if not hidden.any():
        raise ValueError(f"{title}: the item has no occluded joint besides the root; pick an item with some")

    def side(x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        return np.stack([x[..., 2], x[..., 1]], -1)

    points = {s: side(d)[:, hidden] for s, d in draws.items()}
    return ReferenceRow(title, points, side(truth), tuple(int(p) for p in parents),
                        {s: np.asarray(c, dtype=float) for s, c in curves.items()}, curve_title,
                        "depth z (mm, never observed)", "y (mm, down)", visible=vis, invert_y=True)


def _limits(row: ReferenceRow, pad: float = 0.08) -> tuple[tuple[float, float], tuple[float, float]]:
    pts = np.concatenate([row.truth.reshape(-1, 2), *(p.reshape(-1, 2) for p in row.points.values())])
    pts = pts[np.isfinite(pts).all(-1)]
    lo, hi = pts.min(0), pts.max(0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * (1 + pad) + 1e-6  # square: one scale on both axes
    return (centre[0] - half, centre[0] + half), (centre[1] - half, centre[1] + half)


def _draw_truth(ax: Any, row: ReferenceRow) -> None:
    for j, p in enumerate(row.parents):
        if p >= 0:
            ax.plot(row.truth[[p, j], 0], row.truth[[p, j], 1], color=GROUND_TRUTH_COLOR, lw=1.6, alpha=0.9,
                    solid_capstyle="round", zorder=3)
    if row.visible is None:
        ax.scatter(row.truth[:, 0], row.truth[:, 1], s=28, c=GROUND_TRUTH_COLOR, edgecolors="white", lw=0.6, zorder=4)
    else:
        draw_joints(ax, row.truth, row.visible, size=24)


def _draw_curves(ax: Any, row: ReferenceRow) -> None:
    ax.plot([0, 1], [0, 1], color="#999999", ls="--", lw=1, label="calibrated (ideal)")
    for source, curve in row.curves.items():
        ax.plot(row.levels, curve, marker="o", ms=3, lw=1.6, color=_color(source),
                label=f"{_label(source)}: score {calibration_score(curve, row.levels):.2f}")
    ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", xlabel="q (central region's share of hypotheses)",
           ylabel="true joints inside")
    ax.set_title(row.curve_title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")


def plot_reference_posterior(rows: Sequence[ReferenceRow], num_show: int | None = None) -> Figure:
    """One row per :class:`ReferenceRow`: a panel per source with its hypotheses' joints as dots in the source's
    colour over the true skeleton (the three panels of a row share their limits, so spreads compare), then the
    calibration curves of every source against the diagonal, labelled with their scores. ``num_show``: at most
    this many hypotheses drawn per panel (default: as many as the smallest source has, so densities compare)."""
    if not rows:
        raise ValueError("plot_reference_posterior needs at least one row")
    ncols = max(len(r.points) for r in rows) + 1
    fig, axes = plt.subplots(len(rows), ncols, figsize=(3.5 * ncols, 3.6 * len(rows) + 0.9), squeeze=False,
                             layout="constrained")
    for r, row in enumerate(rows):
        show = num_show or min(len(p) for p in row.points.values())
        xlim, ylim = _limits(row)
        for c in range(ncols - 1):
            ax = axes[r, c]
            if c >= len(row.points):
                ax.axis("off")
                continue
            source, pts = list(row.points.items())[c]
            pts = pts[:show]
            for value, style, _ in row.hlines:
                ax.axhline(value, color="#999999", ls=style, lw=0.8, zorder=1)
            ax.scatter(pts[..., 0].ravel(), pts[..., 1].ravel(), s=5, c=_color(source), edgecolors="none",
                       alpha=float(np.clip(25.0 / max(len(pts), 1) ** 0.5, 0.15, 0.7)), zorder=2)
            _draw_truth(ax, row)
            ax.set_xlim(*xlim)
            ax.set_ylim(*(ylim[::-1] if row.invert_y else ylim))
            ax.set_aspect("equal")
            ax.set_title(f"{_label(source)}: {len(pts)} draws", fontsize=9, color=_color(source), fontweight="bold")
            ax.set_xlabel(row.xlabel, fontsize=8)
            ax.tick_params(labelsize=7)
            if c == 0:
                ax.set_ylabel(f"{row.title}\n{row.ylabel}", fontsize=8.5)
        _draw_curves(axes[r, -1], row)
    handles = [Line2D([], [], color=GROUND_TRUTH_COLOR, lw=1.6, label="the truth (skeleton)"),
               Line2D([], [], ls="", marker="o", ms=4, color="#777777", label="a draw's joint (colour: its source)"),
               *visibility_handles()]
    styles = {style: label for row in rows for _, style, label in row.hlines}
    handles += [Line2D([], [], color="#999999", ls=s, lw=0.8, label=label) for s, label in styles.items()]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig


def reference_takeaways(frame: pd.DataFrame, split: str = "test", label: str = "") -> str:
    """Markdown bullets, one per model of ``figures/29_reference_calibration.csv`` (``tools/reference_posterior.py
    --calibration``), that say on ``split``'s occluded joints how the flow's own hypotheses (T = 1), reference 1
    (the target, head held) and reference 2 (head sampled too) score against the truth, and what that means,
    worded from the numbers; ``label``: the references' label (e.g. ``" (replica exchange)"``)."""
    needed = {"model", "split", "source", "items", "score_occluded", "inside_90_occluded"}
    if not needed <= set(frame.columns):
        raise ValueError(f"the reference calibration table needs the columns {sorted(needed)}: "
                         "`python tools/reference_posterior.py --calibration` writes it")
    names = {"flow": f"flow, T = 1{label}", "ref1": f"reference 1{label}", "ref2": f"reference 2{label}"}
    rows = frame[frame["split"] == split].set_index(["model", "source"])
    lines = []
    for model in dict.fromkeys(frame["model"]):
        if not all((model, n) in rows.index for n in names.values()):
            continue
        flow, ref1, ref2 = (rows.loc[(model, names[k])] for k in ("flow", "ref1", "ref2"))
        what = "hands" if str(model).startswith("hand") else "bodies" if str(model).startswith("body") else model
        status = str(flow.get("status", "") or "")
        note = f"; {status}" if status and status != "nan" else ""
        text = (f"- **{what}** ({int(flow['items'])} {split} items{note}): "
                f"the flow's own hypotheses score {flow['score_occluded']:.2f} (their 90 % region holds "
                f"{flow['inside_90_occluded']:.0%} of the true occluded joints), its target sampled without the flow "
                f"(reference 1) {ref1['score_occluded']:.2f} ({ref1['inside_90_occluded']:.0%}), and with the head's "
                f"rotation and shape sampled too (reference 2) {ref2['score_occluded']:.2f} "
                f"({ref2['inside_90_occluded']:.0%}).")
        gap = flow["score_occluded"] - ref1["score_occluded"]
        if gap > 0.02:
            text += " The flow is narrower than its own target: it misses part of what it was trained to cover."
        elif gap < -0.02:
            text += " The flow scores better than its own target: its extra spread is not the target's."
        else:
            text += " The flow comes as close to the truth as its own target does."
        if ref1["score_occluded"] > 0.1:
            text += (" The target itself is over-confident too" if ref1["inside_90_occluded"] < 0.9 else
                     " The target itself is too wide")
            text += (", so a perfect flow of this model would not be calibrated either"
                     + ("; sampling the head's outputs brings it closer." if ref2["score_occluded"]
                        < ref1["score_occluded"] - 0.02 else "."))
        lines.append(text)
    if not lines:
        raise ValueError(f"the reference calibration table has no {split} rows with the flow and both references "
                         f"(sources {list(names.values())})")
    return "\n".join(lines)
