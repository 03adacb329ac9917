"""Posterior diagnostics and selection by extra evidence for the shipped hand models: figures/04_hand_diagnostics.csv.

On the first ``--items`` hands of the fresh test split (data seed 1), per model:
- ``ess``: the mean importance-sampling ESS / S of the model's own target (S = 200, T = 1);
- ``gt_loglik_per_dim``: log q of the true pose, nats per dimension;
- ``calibration_gap_occ``: the occluded joints' 3D calibration gap (S = 200, T = 1);
- ``selected_side_view`` / ``selected_tip_depths``: MPJPE (mm) of the hypothesis chosen by a noiseless
  side view (90° about y) / by the five fingertips' depths, next to ``mode``, ``mean`` and ``oracle``
  (S = 200, T = 0.8, the official sampling).

    python tools/hand_diagnostics.py [--items 200]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("mhentropy", "mhentropy_rot", "mhentropy_aa", "nll", "min_of_n", "deterministic")
TIPS = (16, 17, 18, 19, 20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--out", default=str(ROOT / "figures" / "04_hand_diagnostics.csv"))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    import torch
    from torch.utils.data import DataLoader, Subset, default_collate

    from mhe import diagnostics as dg
    from mhe import selection as sel
    from mhe.body import HAND_ROOT
    from mhe.data import SyntheticHands
    from mhe.evaluation import EVAL_BATCH_SIZE, collect_predictions
    from mhe.experiments import load_model
    from mhe.utils import data_dir

    test = SyntheticHands("test", size=500, seed=1, occlusion=0.4, cache_dir=data_dir() / "cache", progress=False)
    items = Subset(test, range(min(args.items, len(test))))
    loader = DataLoader(items, batch_size=EVAL_BATCH_SIZE)
    rows = []
    for name in args.models:
        model, _ = load_model(f"hand_{name}", device="cpu")
        row: dict = {"model": name}
        if not model.deterministic:
            torch.manual_seed(0)
            ess, ll = [], []
            for batch in loader:
                ess.append(dg.hypotheses_ess(model, batch, num_samples=200))
                ll.append(dg.ground_truth_log_likelihood(model, batch))
            row["ess"] = float(torch.cat(ess).nanmean())
            row["gt_loglik_per_dim"] = float(torch.cat(ll).mean())
            p1 = collect_predictions(model, loader, num_samples=200, temperature=1.0)
            occluded = ~p1["visible"]
            occluded[:, HAND_ROOT] = False
            row["calibration_gap_occ"] = dg.calibration_gap(dg.calibration_curve(p1["pred_xyz"], p1["gt_xyz"], occluded))
        p = collect_predictions(model, loader, num_samples=200, temperature=0.8)
        side = sel.selection_report(p["pred_xyz"], p["gt_xyz"],
                                    sel.second_view_scores(p["pred_xyz"], p["gt_xyz"], sel.view_rotation(90)), p["mode_xyz"])
        tips = sel.selection_report(p["pred_xyz"], p["gt_xyz"], sel.depth_scores(p["pred_xyz"], p["gt_xyz"], TIPS))
        row.update({"selected_side_view": side["mpjpe_selected"], "selected_tip_depths": tips["mpjpe_selected"],
                    "mode": side["mpjpe_mode"], "mean": side["mpjpe_mean"], "oracle": side["mpjpe_bh"]})
        rows.append(row)
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    pd.DataFrame(rows).to_csv(args.out, index=False, float_format="%.4f")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
