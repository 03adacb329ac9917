"""The calibration tables of the README and the results page, written from ``figures/29_*.csv``.

``calibration_results`` is the README's "calibration" block: every sampled shipped model on the fresh test
split at T = 1 (its own spread) and at the temperature chosen on validation (``tools/calibration_temperature.py``).
``fix_results`` is the results page's "calibration-fixes" block: each attempt to calibrate the spread at T = 1,
on the validation split, beside the shipped model it starts from.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mhe.viz.calibration import BODY_KINDS, TARGET_SCORE, model_label

__all__ = ["calibration_results", "fix_results"]


def calibration_results(test: pd.DataFrame) -> str:
    """Markdown: per model, the occluded joints' score and 90 % coverage at T = 1 and at the chosen T."""
    lines = ["| body | model | score at T = 1 | 90 % region holds | T chosen on validation | score at that T | "
             "90 % region holds | best-of-200 MPJPE, T = 1 → chosen T (mm) |",
             "|---|---|---|---|---|---|---|---|"]
    pivot = test.set_index(["model", "sampling"])
    for model in dict.fromkeys(test["model"]):
        one, chosen = pivot.loc[(model, "T = 1")], pivot.loc[(model, "chosen on validation")]
        lines.append(f"| {BODY_KINDS[one['body']]} | {model_label(model)} | {one['score_occ']:.2f} | "
                     f"{one['inside_90_occ']:.0%} | "
                     f"{chosen['temperature']:g} | {chosen['score_occ']:.2f} | {chosen['inside_90_occ']:.0%} | "
                     f"{one['mpjpe_bh']:.1f} → {chosen['mpjpe_bh']:.1f} |")
    at_one = test[test["sampling"] == "T = 1"]
    n = int(at_one["n_items"].iloc[0])
    good = at_one[at_one["score_occ"] <= TARGET_SCORE]
    names = ", ".join(f"{model_label(m)} ({BODY_KINDS[b]}, {s:.2f})"
                      for m, b, s in zip(good["model"], good["body"], good["score_occ"], strict=True))
    chosen = int((test[test["sampling"] != "T = 1"]["score_occ"] <= TARGET_SCORE).sum())
    lines += ["", f"{n} fresh test items per body kind, S = 200 hypotheses, occluded non-root joints. At T = 1, "
              f"{len(good)} of {len(at_one)} models reach the goal of {TARGET_SCORE:.2f}"
              + (f": {names}" if names else "") + f". At the temperature chosen on validation, {chosen} do."]
    return "\n".join(lines)


def fix_results(val: pd.DataFrame, protocol: pd.DataFrame | None = None) -> str:
    """Markdown: the validation rows at T = 1 of every attempt (a row with a ``note``) and of the shipped MHEntropy
    models they start from, with each model's accuracy of record on the same items where ``protocol`` (the
    ``--protocol`` table of ``tools/calibration_temperature.py``) has it."""
    at_one = val[val["temperature"] == 1.0].copy()
    at_one["note"] = ["" if pd.isna(n) else str(n) for n in at_one["note"]]
    record = {} if protocol is None else dict(zip(protocol["model"], protocol["value_mm"], strict=True))
    lines = ["| model | what it changes | steps | score at T = 1 (occluded) | 90 % region holds | "
             "score (visible) | spread of occluded joints (mm) | best-of-200 MPJPE, T = 1 (mm) | "
             "accuracy of record (mm) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for body in sorted(set(at_one["body"])):  # per body kind: the shipped models by name, then the attempts as run
        rows = at_one[at_one["body"] == body]
        shipped = rows[(rows["note"] == "") & rows["model"].str.endswith(("_mhentropy", "_rot", "_long", "_tempered"))]
        for _, r in pd.concat([shipped.sort_values("model"), rows[rows["note"] != ""]]).iterrows():
            steps = "" if pd.isna(r["steps"]) else f"{int(r['steps'])}"
            kept = f"{record[r['model']]:.1f}" if r["model"] in record else "—"
            lines.append(f"| `{r['model']}` | {r['note'] or 'shipped'} | {steps} | {r['score_occ']:.3f} | "
                         f"{r['inside_90_occ']:.0%} | {r['score_vis']:.3f} | {r['spread_mm_occ']:.1f} | "
                         f"{r['mpjpe_bh']:.1f} | {kept} |")
    if protocol is not None:
        measures = dict(zip(protocol["body"], protocol["measure"], strict=False))
        lines += ["", "Accuracy of record: " + "; ".join(f"{BODY_KINDS[b]}, {m}"
                                                         for b, m in sorted(measures.items(), reverse=True)) + "."]
    return "\n".join(lines)


def calibration_block(figures: Path) -> str:
    return calibration_results(pd.read_csv(figures / "29_calibration_test.csv"))


def fixes_block(figures: Path) -> str:
    protocol = figures / "29_protocol_accuracy_validation.csv"
    return fix_results(pd.read_csv(figures / "29_temperature_validation.csv"),
                       pd.read_csv(protocol) if protocol.exists() else None)
