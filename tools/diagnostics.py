"""Posterior diagnostics and selection by extra evidence for the shipped hand and body models.

Writes ``figures/04_hand_diagnostics.csv`` (hands) and ``figures/05_body_diagnostics.csv`` (bodies) with
:func:`mhe.lab.diagnostics_runs.diagnostics_table` (settings:
:data:`mhe.lab.diagnostics_runs.DIAGNOSTICS_SETTINGS`): per model
two rows, ``subset`` = ``all`` and the ambiguous subset (hands: ``occluded``, at least one whole finger
hidden, :func:`mhe.data.statistics.occluded_hands`; bodies: ``ambiguous``, the data's flag: truncated or at
least 6 of the 16 non-root keypoints hidden).

- Hands: the 500 fresh test hands of the hand table (data seed 1, occlusion 0.4); selection on S = 200
  hypotheses at T = 0.8 (the official sampling); the depths of the five fingertips; 5 mm of noise per
  coordinate on the noisy second view.
- Bodies: the 500 fresh test bodies of the body table (data seed 1); selection on S = 25 at T = 0.8 (the
  body protocol, hypothesis 0 the mode); the depths of the ankles, head and wrists; 25 mm of noise on the
  noisy second view.
- Both: the ESS / S of the model's own target (Laplace likelihood on the visible keypoints with the
  MHEntropy objective's scale b × the model's prior) and the calibration curves of the occluded and the
  visible joints from 200 hypotheses at T = 1; the second view is orthographic, turned 90° about the
  camera's y axis (a side view).

    python tools/diagnostics.py                 # both CSVs (several minutes on one CPU core)
    python tools/diagnostics.py --body hand     # figures/04_hand_diagnostics.csv only
    python tools/diagnostics.py --body body --models mhentropy nll --items 200 --out /tmp/b.csv
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--body", choices=("hand", "body", "both"), default="both")
    parser.add_argument("--items", type=int, default=None, help="the first test items (default: all 500)")
    parser.add_argument("--models", nargs="+", default=None, help="default: every shipped model")
    parser.add_argument("--out", default=None, help="the CSV, with --body hand or body (default: figures/<its file>)")
    parser.add_argument("--smoke", action="store_true", help="tiny freshly trained models (a check of the tool)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    import torch

    from mhe.lab.diagnostics_runs import DIAGNOSTICS_SETTINGS, diagnostics_table
    from mhe.lab.experiments import load_model, load_or_train

    torch.set_num_threads(1)
    for body in ("hand", "body") if args.body == "both" else (args.body,):
        out = (Path(args.out) if args.out and args.body != "both"
               else ROOT / "figures" / DIAGNOSTICS_SETTINGS[body]["csv"])
        names = args.models or DIAGNOSTICS_SETTINGS[body]["models"]
        # the shipped checkpoints (--smoke: tiny models trained on the spot)
        models = {name: (load_or_train(name, body=body, smoke=True, device="cpu", progress=False) if args.smoke
                         else load_model(f"{body}_{name}", device="cpu"))[0] for name in names}
        frame = diagnostics_table(body, models, args.items, cached=not args.smoke,
                                  calibration_samples=20 if args.smoke else 200)
        frame.to_csv(out, index=False, float_format="%.4f")
        print(f"written {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
