"""Temperature scaling of the depth-flip mixture's branch weight, chosen on the validation split.

Reverse KL makes the flip mixture's weight overconfident: for most hands P(flipped) ends at 0 or 1, also
for hands whose 2D keypoints hardly tell the two palm tilts apart, so the wrong tilt gets no hypothesis at
all. ``model.flip_temperature`` τ divides the weight's logit at evaluation. For each checkpoint (a shipped
name such as ``hand_mhentropy_rot``, or a run folder / ``last.pt``) this tool scores each τ on the model's
validation split (data seed 0; the test split is never read): the ground truth's log-likelihood under the
model (the criterion), and, for the record, the official sampling's metrics and depth-flip split. Rows go
to ``figures/04_flip_calibration.csv``; :func:`mhe.lab.diagnostics_runs.flip_temperature_choice` reads the choice.

    python tools/flip_calibration.py                                   # hand_mhentropy_rot, the default grid
    python tools/flip_calibration.py runs/rot_18k --out /tmp/flip.csv --write
                                     # and store the chosen τ in runs/rot_18k/last.pt's config

``--write`` sets ``model.flip_temperature`` in each checkpoint file given (atomically; the weights are
untouched); for a shipped model, also set it in its packaged YAML (the shipped-checkpoint test checks both).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from mhe.lab.cli import validation_sweep_parser

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = ("hand_mhentropy_rot",)
DEFAULT_TEMPERATURES = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0)


def flip_calibration(models, temperatures, items: int | None = None, num_samples: int = 200, metrics: bool = True,
                     log=print):
    """A DataFrame with one row per (model, τ) of :func:`mhe.diagnostics.flip_calibration_sweep` on the
    validation split of each model's own config."""
    import pandas as pd
    from torch.utils.data import DataLoader, Subset

    from mhe.diagnostics import flip_calibration_sweep
    from mhe.evaluation import EVAL_BATCH_SIZE, EVAL_SEED, EVAL_TEMPERATURE
    from mhe.lab.builders import build_experiment
    from mhe.lab.experiments import load_model

    rows = []
    for name in models:
        model, cfg = load_model(name, device="cpu")
        if not cfg.model.flip_mixture:
            raise SystemExit(f"flip_calibration: {name} has no depth-flip mixture (model.flip_mixture: false)")
        val = build_experiment(cfg).val_set
        if items is not None:
            val = Subset(val, range(min(items, len(val))))
        loader = DataLoader(val, batch_size=EVAL_BATCH_SIZE)
        for row in flip_calibration_sweep(model, loader, temperatures, num_samples=num_samples,
                                          temperature=EVAL_TEMPERATURE, seed=EVAL_SEED, metrics=metrics):
            rows.append({"model": name, "run": cfg.name, "steps": cfg.train.steps, "samples": num_samples, **row})
            if log is not None:
                extra = (f", BH {row['mpjpe_bh']:.2f}, mean {row['mpjpe_mean']:.2f}, flipped/rest "
                         f"{row['mpjpe_bh_flip']:.1f}/{row['mpjpe_bh_noflip']:.1f} mm" if metrics else "")
                log(f"{name} τ={row['flip_temperature']:g}: log-lik {row['gt_log_lik']:.4f}, "
                    f"P(flipped) {row['flipped_weight']:.3f}{extra}")
    return pd.DataFrame(rows)


def write_flip_temperature(checkpoint: str | Path, tau: float) -> Path:
    """Set ``model.flip_temperature`` in a checkpoint file's config (atomically; weights untouched)."""
    from mhe.lab.checkpoint import load_checkpoint, resolve_checkpoint_path
    from mhe.utils import atomic_torch_save

    path = resolve_checkpoint_path(checkpoint)
    state = load_checkpoint(path)
    state["config"]["model"]["flip_temperature"] = float(tau)
    return atomic_torch_save(state, path)


def main(argv: list[str] | None = None) -> int:
    parser = validation_sweep_parser(__doc__.splitlines()[0], DEFAULT_MODELS, DEFAULT_TEMPERATURES,
                                     ROOT / "figures" / "04_flip_calibration.csv",
                                     "add the rows to --out, replacing its rows of the same models")
    parser.add_argument("--no-metrics", action="store_true", help="the log-likelihood only (seconds, not minutes)")
    parser.add_argument("--write", action="store_true", help="store each model's chosen τ in its checkpoint file")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    import pandas as pd
    import torch

    from mhe.lab.diagnostics_runs import flip_temperature_choice

    torch.set_num_threads(1)
    frame = flip_calibration(args.models, args.temperatures, args.items, args.samples, not args.no_metrics)
    if args.append and Path(args.out).exists():
        old = pd.read_csv(args.out)
        frame = pd.concat([old[~old["model"].isin(frame["model"])], frame], ignore_index=True)
    frame.to_csv(args.out, index=False, float_format="%.6f")
    print(f"written {args.out}")
    for name in args.models:
        tau = flip_temperature_choice(name, args.out)
        print(f"{name}: chosen model.flip_temperature = {tau:g}")
        if args.write:
            print(f"  stored in {write_flip_temperature(name, tau)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
