"""Results text generated from the committed CSVs: the README's result blocks and notebook takeaways.

Every number the README or a notebook states about a trained model is written here, from the CSVs in
``figures/``, never typed by hand. The README holds generated blocks between the markers
``<!-- generated: NAME -->`` and ``<!-- end: NAME -->`` (:data:`BLOCKS` names them).

``python -m mhe.lab.report`` rewrites them from the CSVs (README and the book's ``docs/results.md``); ``--check``
(and a test) fails when they disagree with the CSVs. Notebook 04 shows :func:`hand_takeaways` of its own table.

The ``gallery`` block lists every PNG in ``figures/`` with its notebook's caption (:func:`mhe.lab.gallery.gallery`).
Notebook 07 shows :func:`diagnostics_summary`, :func:`selection_summary` and :func:`mhe.lab.paper.beside_the_paper`.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pandas as pd

from mhe.lab.calibration_report import calibration_block, fixes_block
from mhe.lab.gallery import gallery

__all__ = ["BLOCKS", "body_results", "body_takeaways", "diagnostics_summary", "diagnostics_takeaways",
           "flip_calibration_results", "hand_results", "hand_takeaways", "model_label", "render_readme", "seed_summary",
           "selection_summary", "selection_takeaways", "setting_results", "toy_results", "validation_results"]

# Display names of the hand models (rows of figures/04_hand_metrics.csv), in table order.
HAND_LABELS = {
    "mhentropy": "MHEntropy (PCA flow)",
    "mhentropy_rot": "MHEntropy, rotation in the flow",
    "mhentropy_aa": "MHEntropy (axis-angle flow)",
    "mhentropy_tempered": "MHEntropy, rotation in the flow, tempered target",
    "no_entropy": "no entropy",
    "nll": "NLL (ProHMR-style, 3D labels)",
    "min_of_n": "min-of-N",
    "deterministic": "deterministic",
    "mhentropy_image": "MHEntropy, from the image",
    "nll_image": "NLL, from the image",
    "deterministic_image": "deterministic, from the image",
}
SETTING = "2D→3D lifting from the visible ground-truth keypoints"


def _num(value: float, digits: int = 1) -> str:
    return "—" if value is None or not math.isfinite(float(value)) else f"{float(value):.{digits}f}"


def _pct(value: float) -> str:
    return "—" if value is None or not math.isfinite(float(value)) else f"{100 * float(value):.1f} %"


def _significant(value: float, digits: int = 2) -> str:
    """``value`` rounded to ``digits`` significant digits, without exponent (695.8 -> "700"): for a ratio whose
    denominator is a collapsed, nearly-zero spread, only its first digits survive another CPU or the CSV's
    rounding."""
    if value is None or not math.isfinite(float(value)) or value == 0:
        return _num(value)
    places = digits - 1 - math.floor(math.log10(abs(float(value))))
    rounded = round(float(value), places)
    return f"{rounded:.{max(places, 0)}f}"


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, index_col=0)


def seed_summary(seeds: pd.DataFrame) -> pd.DataFrame:
    """Per objective: the mean and sd (over training seeds) of each metric, columns ``<metric>_mean/_sd``,
    plus ``n_seeds``. ``seeds`` has one row per (objective, seed) with an ``objective`` column."""
    metrics = [c for c in seeds.columns if c not in ("objective", "seed")]
    grouped = seeds.groupby("objective", sort=False)[metrics]
    out = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).add_suffix("_sd"))
    out["n_seeds"] = seeds.groupby("objective", sort=False).size()
    return out


def hand_results(metrics: pd.DataFrame, seeds: pd.DataFrame | None = None) -> str:
    """The README's hand block: the table of ``figures/04_hand_metrics.csv`` and, when given, the seed
    study of ``figures/04_hand_seeds.csv``, followed by :func:`hand_takeaways`."""
    rows = [name for name in HAND_LABELS if name in metrics.index]
    has_input = "input" in metrics.columns
    lines = [
        "| model |" + (" input |" if has_input else "") + " BH-MPJPE | mean MPJPE | mode MPJPE | PA-MPJPE | AH "
        "| PJD 2D-vis px (mm) | PJD 3D-occ | RD | rd_mm | plausible | flip rate | BH flipped / rest |",
        "|---|" + ("---|" if has_input else "") + "---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in rows:
        r = metrics.loc[name]
        lines.append(
            f"| {HAND_LABELS[name]} |" + (f" {r['input']} |" if has_input else "")
            + f" {_num(r.mpjpe_bh)} | {_num(r.mpjpe_mean)} | {_num(r.mpjpe_mode)} "
            f"| {_num(r.pa_mpjpe_bh)} | {_num(r.ah)} | {_num(r.pjd_2d_vis, 2)} ({_num(r.pjd_2d_vis_mm, 2)}) "
            f"| {_num(r.pjd_3d_occ, 2)} | {_num(r.rd, 3)} | {_num(r.rd_mm, 3)} | {_pct(r.plausible)} "
            f"| {_pct(r.flip_rate)} | {_num(r.mpjpe_bh_flip)} / {_num(r.mpjpe_bh_noflip)} |"
        )
    text = "\n".join(lines)
    if "px_per_mm" in metrics.columns and rows:
        text = (f"The test hands' camera gives {_num(metrics.loc[rows[0], 'px_per_mm'], 2)} px per mm at the hand "
                f"(mean over the hands).\n\n" + text)
    if seeds is not None and len(seeds):
        summary = seed_summary(seeds)
        cols = (("mpjpe_bh", 1), ("mpjpe_mean", 1), ("ah", 1), ("pjd_3d_occ", 2), ("rd_mm", 3), ("plausible", 3))
        names = ("BH-MPJPE", "mean MPJPE", "AH", "PJD 3D-occ", "rd_mm", "plausible")
        head = "| model | seeds | " + " | ".join(names) + " |"
        seed_lines = [head, "|---|---|" + "---|" * len(cols)]
        for name, r in summary.iterrows():
            cells = [f"{_num(r[c + '_mean'], d)} ± {_num(r[c + '_sd'], d)}" for c, d in cols]
            seed_lines.append(f"| {HAND_LABELS.get(str(name), name)} | {int(r.n_seeds)} | " + " | ".join(cells) + " |")
        text += ("\n\nThe same evaluation over training seeds (mean ± sd, `figures/04_hand_seeds.csv`; the "
                 "shipped checkpoints are seed 0):\n\n" + "\n".join(seed_lines))
    return text + "\n\n" + hand_takeaways(metrics, seeds)


def hand_takeaways(metrics: pd.DataFrame, seeds: pd.DataFrame | None = None) -> str:
    """What the hand table says, as Markdown bullets whose every number is read from ``metrics``.

    The table is first rounded to the 4 decimals of the committed CSV (``figures/04_hand_metrics.csv`` is
    written with ``%.4f``), so that notebook 04 (its table in memory) and notebook 07 (the CSV) compute every
    ratio from the same numbers and print the same sentences."""
    m = metrics.copy()
    numeric = m.select_dtypes("number").columns
    m[numeric] = m[numeric].round(4)
    has = lambda name: name in m.index  # noqa: E731
    out = []
    if has("mhentropy") and has("no_entropy"):
        ratio = m.loc["mhentropy", "pjd_3d_occ"] / max(m.loc["no_entropy", "pjd_3d_occ"], 1e-12)
        out.append(f"**The entropy term is what makes hypotheses diverse.** Without it the flow collapses: "
                   f"{_num(m.loc['no_entropy', 'pjd_3d_occ'], 2)} mm of occluded-joint diversity against "
                   f"{_num(m.loc['mhentropy', 'pjd_3d_occ'], 2)} mm (about {_significant(ratio)} × less).")
    mhe_rows = [n for n in ("mhentropy", "mhentropy_rot", "mhentropy_aa") if has(n)]
    if mhe_rows and has("nll") and has("min_of_n"):
        nll_rd, mon_rd = m.loc["nll", "rd_mm"], m.loc["min_of_n", "rd_mm"]
        parts = ", ".join(f"{HAND_LABELS[n]} {_num(m.loc[n, 'rd_mm'], 3)} ({m.loc[n, 'rd_mm'] / nll_rd:.2f} × NLL's, "
                          f"{m.loc[n, 'rd_mm'] / mon_rd:.2f} × min-of-N's)" for n in mhe_rows)
        out.append(f"**Diverse where occluded, consistent where visible** (`rd_mm`, lower is better, unitless): "
                   f"NLL {_num(nll_rd, 3)}, min-of-N {_num(mon_rd, 3)}; {parts}. The spread is in the right "
                   f"place but too narrow: on occluded joints the hypotheses are over-confident, their 90 % "
                   f"region holding the truth far less often than 90 % (notebook 07, calibration), unless the "
                   f"flow is trained against a tempered target (the calibration table below).")
    if has("mhentropy") and has("deterministic"):
        det = m.loc["deterministic", "mpjpe_bh"]
        r = m.loc["mhentropy"]
        out.append(f"**Accuracy, fairly compared.** The deterministic model's single answer is {_num(det)} mm off. "
                   f"MHEntropy's best of 200 hypotheses is {_num(r.mpjpe_bh)} mm off, but that is an oracle's choice. "
                   f"Its mode is {_num(r.mpjpe_mode)} mm off and its average hypothesis {_num(r.mpjpe_mean)} mm "
                   f"({r.mpjpe_mean / det:.2f} × the deterministic error): spreading over what is hidden costs "
                   f"little on average.")
        det_ah = m.loc["deterministic", "ah"]
        out.append(f"**Every hypothesis must explain what is seen.** MHEntropy's worst hypothesis misses the visible "
                   f"keypoints by {_num(r.ah)} px (AH), {100 * (r.ah / det_ah - 1):.0f} % more than the deterministic "
                   f"model's {_num(det_ah)} px; NLL's worst misses by {_num(m.loc['nll', 'ah'])} px."
                   if has("nll") else "")
    plaus = [n for n in HAND_LABELS if has(n) and math.isfinite(float(m.loc[n, "plausible"]))]
    if plaus:
        parts = ", ".join(f"{HAND_LABELS[n]} {_pct(m.loc[n, 'plausible'])}" for n in plaus)
        out.append(f"**Plausible hands** (hypotheses whose every finger joint is within its limits): {parts}.")
    if has("mhentropy") and has("mhentropy_rot"):
        a, b = m.loc["mhentropy"], m.loc["mhentropy_rot"]
        gap_a, gap_b = a.mpjpe_bh_flip - a.mpjpe_bh_noflip, b.mpjpe_bh_flip - b.mpjpe_bh_noflip
        out.append(f"**The palm's depth flip.** With the rotation from the head, {_pct(a.flip_rate)} of the hands get "
                   f"a depth-mirrored palm, and their BH-MPJPE is {_num(a.mpjpe_bh_flip)} mm against "
                   f"{_num(a.mpjpe_bh_noflip)} mm for the rest (a gap of {_num(gap_a)} mm). With the rotation in "
                   f"the flow: {_pct(b.flip_rate)} flipped, {_num(b.mpjpe_bh_flip)} against {_num(b.mpjpe_bh_noflip)} "
                   f"mm (a gap of {_num(gap_b)} mm, {gap_b / gap_a:.2f} × the first).")
    if has("mhentropy_image") and has("deterministic_image") and has("nll_image"):
        a, n, d = m.loc["mhentropy_image"], m.loc["nll_image"], m.loc["deterministic_image"]
        kp = f" (from the keypoints: {_num(m.loc['mhentropy', 'mpjpe_bh'])} mm)" if has("mhentropy") else ""
        out.append(f"**From pixels.** Reading only the rendered crop, MHEntropy's best of 200 hypotheses is "
                   f"{_num(a.mpjpe_bh)} mm off{kp}, against {_num(d.mpjpe_bh)} mm for the deterministic model on the "
                   f"same crops; its mode is {_num(a.mpjpe_mode)} mm off. Its `rd_mm` is {_num(a.rd_mm, 3)} against "
                   f"{_num(n.rd_mm, 3)} for NLL on the same crops ({a.rd_mm / n.rd_mm:.2f} ×), with "
                   f"{_pct(a.plausible)} of its hypotheses plausible (NLL {_pct(n.plausible)}). "
                   f"{_pct(a.flip_rate)} of the "
                   f"hands get a depth-mirrored palm (BH-MPJPE {_num(a.mpjpe_bh_flip)} mm on them, "
                   f"{_num(a.mpjpe_bh_noflip)} mm on the rest)"
                   + (f", against {_pct(m.loc['mhentropy', 'flip_rate'])} from the keypoints." if has("mhentropy")
                      else "."))
    return "\n".join(f"* {line}" for line in out if line)


# Display names and supervision of the body models (rows of figures/05_body_metrics.csv), in table order.
BODY_LABELS = {
    "mhentropy": ("MHEntropy", "2D visible"),
    "prohmr_2d": ("ProHMR's objective + pose prior, no pose labels", "2D visible"),
    "nll": ("NLL (ProHMR's objective)", "2D visible + SMPL pose labels"),
    "min_of_n": ("min-of-N", "2D visible"),
    "deterministic": ("deterministic (HMR-style)", "2D visible"),
    "mhentropy_3d": ("MHEntropy + 3D term", "2D visible + 3D keypoints"),
    "nll_3d": ("NLL + 3D term (ProHMR's objective)", "2D + SMPL pose labels + 3D keypoints"),
    "mhentropy_long": ("MHEntropy, 3 × the steps", "2D visible"),
    "mhentropy_tempered": ("MHEntropy, 3 × the steps, tempered target, Rényi bound", "2D visible"),
}


def body_results(metrics: pd.DataFrame) -> str:
    """The body table in the paper's shape (``figures/05_body_metrics.csv``): PA-MPJPE of the best of 25
    hypotheses on all test bodies and on the ambiguous subset, then the diversity on the ambiguous subset
    (AH, PJD 2D-vis, PJD 3D-occ, RD, ``rd_mm``), the single-answer errors and the plausible fraction."""
    from mhe.data.synthetic_bodies import AMBIGUOUS_MIN_HIDDEN

    rows = [n for n in BODY_LABELS if n in metrics.index]
    lines = ["| model | supervision | PA-MPJPE BH all | PA-MPJPE BH ambiguous | mode MPJPE | mean MPJPE "
             "| AH (amb.) | PJD 2D-vis px (amb.) | PJD 3D-occ mm (amb.) | RD (amb.) | rd_mm (amb.) | plausible |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in rows:
        r = metrics.loc[name]
        label, supervision = BODY_LABELS[name]
        lines.append(f"| {label} | {supervision} | {_num(r.pa_mpjpe_bh)} | {_num(r.pa_mpjpe_bh_ambiguous)} "
                     f"| {_num(r.mpjpe_mode)} | {_num(r.mpjpe_mean)} | {_num(r.ah_ambiguous)} "
                     f"| {_num(r.pjd_2d_vis_ambiguous, 2)} | {_num(r.pjd_3d_occ_ambiguous, 2)} "
                     f"| {_num(r.rd_ambiguous, 3)} | {_num(r.rd_mm_ambiguous, 3)} | {_pct(r.plausible)} |")
    text = "\n".join(lines)
    if rows and "n_ambiguous" in metrics.columns:
        r = metrics.loc[rows[0]]
        text = (f"{int(r.n_images)} test bodies, {int(r.n_ambiguous)} of them ambiguous (truncated by the crop or "
                f"with at least {AMBIGUOUS_MIN_HIDDEN} of the 16 non-root keypoints hidden); "
                f"{_num(r.px_per_mm, 3)} px per mm at the "
                f"body (mean).\n\n" + text)
    return text + "\n\n" + body_takeaways(metrics)


def body_takeaways(metrics: pd.DataFrame) -> str:
    """What the body table says, as Markdown bullets whose every number is read from ``metrics``."""
    m = metrics
    has = lambda name: name in m.index  # noqa: E731
    out = []
    if has("mhentropy") and has("nll"):
        a, b = m.loc["mhentropy"], m.loc["nll"]
        out.append(f"**Diversity where the body is hidden** (ambiguous bodies, `rd_mm`, lower is better): MHEntropy "
                   f"{_num(a.rd_mm_ambiguous, 3)} against NLL's {_num(b.rd_mm_ambiguous, 3)} (ProHMR's objective with "
                   f"pose labels) "
                   f"({a.rd_mm_ambiguous / b.rd_mm_ambiguous:.2f} ×); occluded-joint diversity "
                   f"{_num(a.pjd_3d_occ_ambiguous)} mm against {_num(b.pjd_3d_occ_ambiguous)} mm.")
        out.append(f"**Accuracy of the best of 25** (PA-MPJPE): MHEntropy {_num(a.pa_mpjpe_bh)} mm on all bodies and "
                   f"{_num(a.pa_mpjpe_bh_ambiguous)} mm on the ambiguous ones; NLL {_num(b.pa_mpjpe_bh)} and "
                   f"{_num(b.pa_mpjpe_bh_ambiguous)} mm.")
    if has("mhentropy") and has("prohmr_2d"):
        a, p = m.loc["mhentropy"], m.loc["prohmr_2d"]
        out.append(f"**Without pose labels ProHMR's objective collapses**, as the paper found, even with the pose "
                   f"prior MHEntropy has: its hypotheses spread {_num(p.pjd_3d_occ_ambiguous, 2)} mm on hidden joints "
                   f"and {_num(p.pjd_2d_vis_ambiguous, 2)} px on visible ones (MHEntropy: "
                   f"{_num(a.pjd_3d_occ_ambiguous, 2)} mm and {_num(a.pjd_2d_vis_ambiguous, 2)} px). Its `rd_mm` of "
                   f"{_num(p.rd_mm_ambiguous, 3)} is a ratio of two spreads near zero, not a sign of diversity; "
                   f"its best of "
                   f"25 is {_num(p.pa_mpjpe_bh_ambiguous)} mm PA-MPJPE on the ambiguous bodies against MHEntropy's "
                   f"{_num(a.pa_mpjpe_bh_ambiguous)} mm.")
    if has("mhentropy") and has("deterministic"):
        a, d = m.loc["mhentropy"], m.loc["deterministic"]
        out.append(f"**A single answer, fairly compared.** The deterministic regressor is {_num(d.mpjpe_bh)} mm off; "
                   f"MHEntropy's mode {_num(a.mpjpe_mode)} mm and its average hypothesis {_num(a.mpjpe_mean)} mm.")
    plaus = [n for n in BODY_LABELS if has(n) and math.isfinite(float(m.loc[n, "plausible"]))]
    if plaus:
        parts = ", ".join(f"{BODY_LABELS[n][0]} {_pct(m.loc[n, 'plausible'])}" for n in plaus)
        out.append(f"**Plausible bodies** (hypotheses whose every joint is within its limits): {parts}.")
    return "\n".join(f"* {line}" for line in out if line)


TOY_LABELS = {
    "exact posterior": "exact posterior", "mhentropy": "MHEntropy", "no_entropy": "no entropy",
    "no_reconstruction": "no reconstruction", "no_prior": "no prior", "nll": "NLL, unbiased annotations",
    "nll_elbow_right": "NLL, annotations always elbow-right",
}


def toy_results(table: pd.DataFrame) -> str:
    """The README's toy block from ``figures/01_posterior_match.csv`` (one row per model)."""
    lines = ["| model | within 0.3 rad of a solution | mass per solution | solutions hit (of 4) "
             "| largest mass gap to the exact posterior |", "|---|---|---|---|---|"]
    # Two decimals: the masses move by about 0.005 between CPUs (and between seeds), so a third digit
    # would quote noise.
    for name, r in table.iterrows():
        masses = " / ".join(f"{r[f'mass_{k}']:.2f}" for k in range(4))
        gap = "—" if name == "exact posterior" else _num(r["max_mass_gap"], 2)
        lines.append(f"| {TOY_LABELS.get(str(name), name)} | {100 * r['coverage']:.0f} % | {masses} "
                     f"| {_num(r['solutions_hit'], 1)} | {gap} |")
    return "\n".join(lines)


def setting_results(metrics: pd.DataFrame) -> str:
    """A compact hand table for a second benchmark setting (``figures/04_hand_metrics_<setting>.csv``)."""
    lines = ["| model | BH-MPJPE | mean MPJPE | AH | PJD 3D-occ | rd_mm | plausible | flip rate | BH flipped / rest |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in [n for n in HAND_LABELS if n in metrics.index]:
        r = metrics.loc[name]
        lines.append(f"| {HAND_LABELS[name]} | {_num(r.mpjpe_bh)} | {_num(r.mpjpe_mean)} | {_num(r.ah)} "
                     f"| {_num(r.pjd_3d_occ, 2)} | {_num(r.rd_mm, 3)} | {_pct(r.plausible)} | {_pct(r.flip_rate)} "
                     f"| {_num(r.mpjpe_bh_flip)} / {_num(r.mpjpe_bh_noflip)} |")
    return "\n".join(lines)


def body_validation_results(table: pd.DataFrame) -> str:
    """The README's block of the body settings chosen on validation (``figures/05_body_validation_choices.csv``)."""
    lines = ["| run | objective | b | prior | flow | tempering steps | steps | PA-MPJPE BH | PA-MPJPE BH ambiguous "
             "| mode MPJPE | mean MPJPE | PJD 3D-occ | rd_mm | rd_mm ambiguous | plausible |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(f"| `{r['run']}` | {r['objective']} | {_num(r['b'], 3)} | {r['prior']} | {r.get('flow', '—')} "
                     f"| {int(r.get('temper_steps', 0))} | {int(r['step'])} "
                     f"| {_num(r['pa_mpjpe_bh'])} | {_num(r['pa_mpjpe_bh_ambiguous'])} | {_num(r['mpjpe_mode'])} "
                     f"| {_num(r['mpjpe_mean'])} | {_num(r['pjd_3d_occ'], 2)} | {_num(r['rd_mm'], 3)} "
                     f"| {_num(r['rd_mm_ambiguous'], 3)} | {_pct(r['plausible'])} |")
    return "\n".join(lines)


def validation_results(table: pd.DataFrame) -> str:
    """The README's block of the settings chosen on validation (``figures/04_validation_choices.csv``)."""
    has_b, has_objective = "b" in table.columns, "objective" in table.columns
    has_temper = "temper_steps" in table.columns
    lines = ["| run |" + (" objective |" if has_objective else "") + " pose | prior | rotation |"
             + (" b |" if has_b else "") + (" tempering steps |" if has_temper else "")
             + " steps | BH-MPJPE | mean MPJPE | AH | RD | rd_mm | plausible | flip rate | BH flipped / rest |",
             "|---|" + ("---|" if has_objective else "") + "---|---|---|" + ("---|" if has_b else "")
             + ("---|" if has_temper else "") + "---|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(f"| `{r['run']}` |" + (f" {r['objective']} |" if has_objective else "")
                     + f" {r['pose']} | {r['prior']} | {r['rotation']} |"
                     + (f" {r['b']:g} |" if has_b else "") + (f" {int(r['temper_steps'])} |" if has_temper else "")
                     + f" {int(r['step'])} "
                     f"| {_num(r['mpjpe_bh'])} | {_num(r['mpjpe_mean'])} "
                     f"| {_num(r['ah'])} | {_num(r['rd'], 3)} | {_num(r.get('rd_mm'), 3)} | {_pct(r['plausible'])} "
                     f"| {_pct(r['flip_rate'])} "
                     f"| {_num(r['mpjpe_bh_flip'])} / {_num(r['mpjpe_bh_noflip'])} |")
    return "\n".join(lines)


def flip_calibration_results(table: pd.DataFrame) -> str:
    """The README's block of the depth-flip weight's temperature scaling on validation
    (``figures/04_flip_calibration.csv``, ``tools/flip_calibration.py``): per model and τ, the ground
    truth's log-likelihood (the criterion; the chosen τ, its maximum, in bold), the share of hands whose
    less likely palm tilt keeps at least 1 % of the weight, and what τ does to the hypotheses. A shipped model
    (``hand_...``) shows every τ; a candidate run only its chosen one."""
    lines = ["| model | τ | log q(truth), nats/dim | hands with both tilts | BH-MPJPE | mean MPJPE | AH | rd_mm "
             "| BH flipped / rest |", "|---|---|---|---|---|---|---|---|---|"]
    for model, rows in table.groupby("model", sort=False):
        best = rows["gt_log_lik"].idxmax()
        if not str(model).startswith("hand_"):
            rows = rows.loc[[best]]
        for i, r in rows.sort_values("flip_temperature").iterrows():
            tau = f"**{r['flip_temperature']:g}**" if i == best else f"{r['flip_temperature']:g}"
            lines.append(f"| {model_label(str(model).removeprefix('hand_'))} | {tau} | {r['gt_log_lik']:.4f} "
                         f"| {_pct(r['both_tilts'])} "
                         f"| {_num(r.get('mpjpe_bh'))} | {_num(r.get('mpjpe_mean'))} | {_num(r.get('ah'))} "
                         f"| {_num(r.get('rd_mm'), 3)} "
                         f"| {_num(r.get('mpjpe_bh_flip'))} / {_num(r.get('mpjpe_bh_noflip'))} |")
    return "\n".join(lines)


def _hand_block(figures: Path) -> str:
    seeds = figures / "04_hand_seeds.csv"
    return hand_results(_read(figures / "04_hand_metrics.csv"), pd.read_csv(seeds) if seeds.exists() else None)


def _toy_block(figures: Path) -> str:
    return toy_results(_read(figures / "01_posterior_match.csv"))


# -- notebook 07: the diagnostics and selection tables, and the paper's numbers beside ours ------------

SELECTIONS = ("selected_side_view", "selected_side_view_noisy", "selected_depths")


def diagnostics_summary(frame: pd.DataFrame, subset: str = "all") -> pd.DataFrame:
    """The posterior diagnostics of a diagnostics table (``tools/diagnostics.py``) for one ``subset``, one
    row per model: ``n_items``, ``ess`` (ESS / S), ``gt_loglik_per_dim``, ``calibration_gap_occ`` and
    ``calibration_gap_vis`` (deterministic models: NaN)."""
    rows = frame[frame["subset"] == subset].set_index("model")
    return rows[["n_items", "ess", "gt_loglik_per_dim", "calibration_gap_occ", "calibration_gap_vis"]].copy()


def selection_summary(frame: pd.DataFrame, subset: str = "all") -> pd.DataFrame:
    """Selection by extra evidence from a diagnostics table for one ``subset``, one row per model: the sampling
    ``temperature`` (when the table has it), the MPJPE (mm) of the ``mode``, the ``mean`` hypothesis, each
    selection (:data:`SELECTIONS`) and the ``oracle``,
    and for each of the last four its change against the mode in % (``<column>_vs_mode_pct``, negative:
    better than the mode)."""
    rows = frame[frame["subset"] == subset].set_index("model")
    out = rows[[c for c in ("n_items", "temperature", "mode", "mean") if c in rows]].copy()
    for col in (*SELECTIONS, "oracle"):
        out[col] = rows[col]
        out[f"{col}_vs_mode_pct"] = 100.0 * (rows[col] / rows["mode"] - 1.0)
    return out


def diagnostics_takeaways(hand: pd.DataFrame, body: pd.DataFrame, samples: int = 200) -> str:
    """Markdown bullets on the diagnostics tables (hands' occluded and bodies' ambiguous subsets): which
    model's occluded joints are best calibrated, how far MHEntropy is from it, how many curves lie below the
    diagonal, and where the ESS sits (``samples``: the S it was measured with)."""
    out = []
    for label, frame, subset, unit in (("hands", hand, "occluded", "occluded hands"), ("bodies", body, "ambiguous",
                                                                                         "ambiguous bodies")):
        d = diagnostics_summary(frame, subset).dropna(subset=["calibration_gap_occ"])
        if d.empty:
            continue
        best = d["calibration_gap_occ"].idxmin()
        line = (f"**Calibration, {label}** ({unit}, occluded joints; 0 is calibrated): best "
                f"{model_label(best)} {_num(d.loc[best, 'calibration_gap_occ'], 3)}")
        if "mhentropy" in d.index and best != "mhentropy":
            line += (f", MHEntropy {_num(d.loc['mhentropy', 'calibration_gap_occ'], 3)} "
                     f"({d.loc['mhentropy', 'calibration_gap_occ'] - d.loc[best, 'calibration_gap_occ']:+.3f})")
        rows = frame[(frame["subset"] == subset) & frame["model"].isin(d.index)]
        curve = [c for c in frame.columns if c.startswith("calib_occ_")]
        alphas = [float(c[len("calib_occ_"):]) for c in curve]
        below = int((rows[curve].to_numpy() < alphas).all(axis=1).sum())
        line += (f"; {below} of the {len(d)} sampled models' curves lie below the diagonal at every α (too few true "
                 f"joints inside: hypotheses narrower than their error). ESS / S: {_num(d['ess'].min(), 4)} to "
                 f"{_num(d['ess'].max(), 4)} (its floor is 1/S = {1 / samples:.3f}).")
        out.append(line)
    return "\n".join(f"* {line}" for line in out)


def selection_takeaways(hand: pd.DataFrame, body: pd.DataFrame) -> str:
    """Markdown bullets on selection by a second view, from the diagnostics tables: per model on the occluded
    hands and on the ambiguous bodies, the selected hypothesis' MPJPE against the mode's, and the oracle's
    bound on any selection."""
    out = []
    for label, frame, subset in (("occluded hands", hand, "occluded"), ("ambiguous bodies", body, "ambiguous")):
        t = selection_summary(frame, subset)
        t = t[t["oracle"] < t["mode"]]  # models with a choice to make
        at = (lambda r: f"; T = {r.temperature:g}") if "temperature" in t else (lambda r: "")
        parts = [f"{model_label(m)} {_num(r.selected_side_view)} against {_num(r['mode'])} mm "
                 f"({r.selected_side_view_vs_mode_pct:+.1f} %; oracle {r.oracle_vs_mode_pct:+.1f} %{at(r)})"
                 for m, r in t.iterrows()]
        how = ("S as in the protocol; T: each model's sampling temperature, chosen on the validation split where a "
               "selection table exists, else the official 0.8" if "temperature" in t else "S as in the protocol")
        out.append(f"**A side view picks a hypothesis, {label}** ({how}; selected against the mode, "
                   f"the oracle's change bounding any selection): " + "; ".join(parts) + ".")
    return "\n".join(f"* {line}" for line in out)


def model_label(model: str) -> str:
    """The display name of a model (``mhentropy`` → "MHEntropy"); unknown names are returned as they are."""
    from mhe.viz.hands import LABELS

    return LABELS.get(model, HAND_LABELS.get(model, model))


# README block name -> what writes it from the figures folder.
BLOCKS: dict[str, Callable[[Path], str]] = {
    "hand-results": _hand_block,
    "hand-results-ho3d-rotation": lambda figures: setting_results(_read(figures / "04_hand_metrics_ho3d_rotation.csv")),
    "hand-validation": lambda figures: validation_results(pd.read_csv(figures / "04_validation_choices.csv")),
    "hand-flip-calibration": lambda figures: flip_calibration_results(pd.read_csv(figures / "04_flip_calibration.csv")),
    "toy-results": _toy_block,
    "body-results": lambda figures: body_results(_read(figures / "05_body_metrics.csv")),
    "body-validation": lambda figures: body_validation_results(pd.read_csv(figures / "05_body_validation_choices.csv")),
    "gallery": lambda figures: gallery(figures, figures.resolve().parent / "notebooks"),
    "calibration": calibration_block, "calibration-fixes": fixes_block,
}


def _fill(match: re.Match[str], body: str) -> str:
    """A generated block's markers around its new ``body``."""
    return match.group(1) + body + "\n" + match.group(2)


def render_readme(text: str, figures: Path) -> str:
    """``text`` with every generated block (:data:`BLOCKS`) rewritten from the CSVs in ``figures``."""
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- generated: {name} -->\n)(?:.*?\n)?(<!-- end: {name} -->)", re.S)
        if pattern.search(text):
            text = pattern.sub(partial(_fill, body=make(figures)), text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m mhe.lab.report",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--pages", nargs="*", default=None,
                        help="other Markdown files with generated blocks (default: docs/results.md beside the README, "
                             "the book's results page)")
    parser.add_argument("--figures", default="figures")
    parser.add_argument("--check", action="store_true", help="fail when the README is not what the CSVs give")
    args = parser.parse_args(argv)
    readme = Path(args.readme)
    pages = [Path(p) for p in args.pages] if args.pages is not None else [readme.parent / "docs" / "results.md"]
    stale = []
    for path in [readme, *(p for p in pages if p.is_file() or args.pages is not None)]:
        text = path.read_text()
        new = render_readme(text, Path(args.figures))
        if new != text and args.check:
            stale.append(str(path))
        elif new != text:
            path.write_text(new)
            print(f"rewrote the generated blocks of {path}")
    if stale:
        print(f"{', '.join(stale)} out of date with the CSVs in {args.figures}; run `python -m mhe.lab.report`",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
