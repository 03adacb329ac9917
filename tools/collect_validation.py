"""Collect the validation results that chose the shipped settings into figures/04_validation_choices.csv (hands)
or, with ``--out figures/05_body_validation_choices.csv``, the body runs' (objective, b, prior).

Each candidate is a training run (``runs/<name>``) whose ``val_log.csv`` the trainer wrote; the last
validation of each (S = 50 at T = 0.8 on the first 256 validation hands, the trainer's setting) goes into
one row with the candidate's objective, pose parameterisation, prior, rotation and Laplace scale b. Test splits
play no part in these choices.

    python tools/collect_validation.py runs/jl_pca runs/jl_pca_w1000 ...
    python tools/collect_validation.py --append --out figures/05_body_validation_choices.csv runs/p2d_prior_0.0005

``--append`` keeps the rows already in ``--out`` (a run's new row replaces its old one), for candidates whose
run folders are no longer at hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
KEEP = ("step", "mpjpe_bh", "mpjpe_mean", "mpjpe_mode", "ah", "pjd_2d_vis", "pjd_3d_occ", "rd", "rd_mm", "plausible",
        "flip_rate", "mpjpe_bh_flip", "mpjpe_bh_noflip")
# bodies: the body protocol's accuracy and the ambiguous subset's diversity
KEEP_BODY = ("step", "pa_mpjpe_bh", "pa_mpjpe_bh_ambiguous", "mpjpe_mode", "mpjpe_mean", "pjd_2d_vis", "pjd_3d_occ",
             "rd_mm", "rd_mm_ambiguous", "plausible")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--out", default=str(ROOT / "figures" / "04_validation_choices.csv"))
    parser.add_argument("--append", action="store_true", help="keep the rows already in --out")
    args = parser.parse_args(argv)
    from mhe.lab.config_io import load_config

    rows = []
    for run in map(Path, args.runs):
        last = pd.read_csv(run / "val_log.csv").iloc[-1]  # the run's final validation
        cfg = load_config(run / "config.yaml")
        m = cfg.model
        if m.body == "body":
            prior = f"{m.pose_prior} (limits weight {m.joint_limit_weight:g})"
            if cfg.objective.name == "prohmr":
                w_prior = float(cfg.objective.w_prior or 0.0)
                prior = f"{prior} × {w_prior:g} (ProHMR's objective)" if w_prior > 0 else "none (ProHMR's objective)"
            row = {"run": run.name, "objective": cfg.objective.name, "b": cfg.objective.b, "prior": prior,
                   "flow": f"{m.flow_transforms} × {m.flow_kind}", "temper_steps": cfg.train.temper_steps}
            row.update({k: last[k] for k in KEEP_BODY if k in last})
            rows.append(row)
            continue
        # the mixture's branches have their own contexts ("conditional"); the variants not adopted (shared
        # branches, one tilt per branch, each branch's KL) were removed: docs/variants.md, their CSV rows stay
        rotation = ("flow + flip mixture (conditional)" if m.flip_mixture
                    else ("flow" if m.rotation_in_flow else "head"))
        prior = m.pose_prior + (f" (weight {m.joint_limit_weight:g})" if m.pose_prior == "joint_limits" else "")
        if cfg.objective.name == "nll":
            prior = "none (NLL)"
        row = {"run": run.name, "objective": cfg.objective.name, "pose": m.pose_repr, "prior": prior,
               "rotation": rotation, "b": cfg.objective.b, "temper_steps": cfg.train.temper_steps}
        row.update({k: last[k] for k in KEEP if k in last})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if args.append and Path(args.out).is_file():
        old = pd.read_csv(args.out)
        frame = pd.concat([old[~old["run"].isin(frame["run"])], frame], ignore_index=True)
        # rows of runs from before a column existed ran with its default (6 RealNVP couplings, no tempering)
        if "flow" in frame.columns:
            frame["flow"] = frame["flow"].fillna("6 × realnvp")
        frame["temper_steps"] = frame["temper_steps"].fillna(0).astype(int)
    frame.to_csv(args.out, index=False, float_format="%.4f")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
