"""Selection by extra evidence on the validation split: the sampling temperature to choose, per model.

For each checkpoint (a shipped name such as ``hand_mhentropy``, or a run's ``last.pt`` / folder), the
hand models' validation split (data seed 0, the split training validates on) is sampled with S
hypotheses at each temperature, and the MPJPE of the mode, the oracle and the hypotheses selected by a
second view (side view; noisy side view; the fingertips' depths) is written per temperature, on all hands
and on the occluded ones, to ``figures/07_selection_validation.csv``. The test split is never read.

    python tools/selection_validation.py hand_mhentropy hand_nll hand_min_of_n   # the default set
    python tools/selection_validation.py runs/pca_18k --temperatures 0.8 1.0 --out /tmp/sel.csv
    python tools/selection_validation.py hand_min_of_n --temperatures 2.5 3.0 --append   # extend the grid
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from mhe.lab.cli import validation_sweep_parser

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = ("hand_mhentropy", "hand_mhentropy_rot", "hand_mhentropy_aa", "hand_nll", "hand_min_of_n")
DEFAULT_TEMPERATURES = (0.6, 0.8, 1.0, 1.2, 1.5, 2.0)


def selection_validation(models, temperatures, items: int | None = None, num_samples: int = 200, log=print):
    """A DataFrame with one row per (model, subset, temperature) of
    :func:`mhe.diagnostics.selection_sweep` on the validation split of each model's own config."""
    import pandas as pd
    import torch
    from torch.utils.data import DataLoader, Subset

    from mhe.data.statistics import occluded_hands
    from mhe.diagnostics import selection_sweep
    from mhe.evaluation import EVAL_BATCH_SIZE, EVAL_SEED
    from mhe.lab.builders import build_experiment
    from mhe.lab.diagnostics_runs import DIAGNOSTICS_SETTINGS
    from mhe.lab.experiments import load_model

    s = DIAGNOSTICS_SETTINGS["hand"]
    rows = []
    for name in models:
        model, cfg = load_model(name, device="cpu")
        if cfg.model.body != "hand":
            raise SystemExit(f"selection_validation: {name} is a {cfg.model.body} model; this tool takes hand models")
        val = build_experiment(cfg).val_set
        if items is not None:
            val = Subset(val, range(min(items, len(val))))
        loader = DataLoader(val, batch_size=EVAL_BATCH_SIZE)
        subsets = {"all": lambda v: torch.ones(len(v), dtype=torch.bool), s["subset"]: occluded_hands}
        for row in selection_sweep(model, loader, temperatures, subsets, num_samples=num_samples,
                                   depth_joints=s["depth_joints"], noise_mm=s["noise_mm"], seed=EVAL_SEED):
            gain = 100.0 * (row["selected_side_view"] / row["mode"] - 1.0)
            rows.append({"model": name, "run": cfg.name, "steps": cfg.train.steps, "samples": num_samples, **row,
                         "side_view_vs_mode_pct": gain,
                         "oracle_vs_mode_pct": 100.0 * (row["oracle"] / row["mode"] - 1.0)})
            if log is not None:
                log(f"{name} {row['subset']} T={row['temperature']:g}: mode {row['mode']:.2f}, "
                    f"oracle {row['oracle']:.2f}, side view {row['selected_side_view']:.2f} mm ({gain:+.1f} %)")
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = validation_sweep_parser(__doc__.splitlines()[0], DEFAULT_MODELS, DEFAULT_TEMPERATURES,
                                     ROOT / "figures" / "07_selection_validation.csv",
                                     "add the rows to --out, replacing its rows of the same "
                                     "(model, temperature, subset)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    import torch

    torch.set_num_threads(1)
    frame = selection_validation(args.models, args.temperatures, args.items, args.samples)
    if args.append and Path(args.out).exists():
        import pandas as pd

        old = pd.read_csv(args.out)
        key = ["model", "temperature", "subset"]
        stale = old.set_index(key).index.isin(frame.set_index(key).index)
        frame = pd.concat([old[~stale], frame], ignore_index=True).sort_values(["model", "temperature"], kind="stable")
    frame.to_csv(args.out, index=False, float_format="%.4f")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
