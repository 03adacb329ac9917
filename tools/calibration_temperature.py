"""Calibration at T = 1 and post-hoc calibration by a temperature chosen on validation (issue 29).

For each model (shipped names such as ``hand_mhentropy``, or run folders / checkpoints), on the validation split
of its own config (the first ``--items``), :func:`mhe.diagnostics.calibration_sweep` scores S = 200 hypotheses at
each temperature of the grid: cGNF's calibration score (0 = calibrated) and the share of true joints inside the
central 90 % region, of the occluded and of the visible non-root joints, with the spread and the best-of-S MPJPE.
The rows go to ``figures/29_temperature_validation.csv``. The **chosen temperature** of a model is the grid's
lowest occluded score on validation.

Then, on the fresh test split of the metrics tables (:func:`mhe.lab.diagnostics_runs.test_split`, 500 items), each
model is scored at T = 1 (its own spread) and at its chosen temperature: ``figures/29_calibration_test.csv``. The
test split is read only there, after the choice. ``--validation-only`` stops before it (e.g. for a fix attempt,
which is judged on validation; ``--note`` says what it changes).

    python tools/calibration_temperature.py                       # every sampled shipped model, both tables
    python tools/calibration_temperature.py runs/29ft/went2 --validation-only --append --note "w_ent = 2"
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = ("hand_mhentropy", "hand_mhentropy_rot", "hand_mhentropy_aa", "hand_mhentropy_tempered",
                  "hand_no_entropy", "hand_nll", "hand_min_of_n", "body_mhentropy", "body_mhentropy_3d",
                  "body_mhentropy_long", "body_mhentropy_tempered", "body_prohmr_2d", "body_nll", "body_nll_3d",
                  "body_min_of_n", "hand_mhentropy_image", "hand_nll_image")
DEFAULT_TEMPERATURES = (0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
VALIDATION_CSV = ROOT / "figures" / "29_temperature_validation.csv"
PROTOCOL_CSV = ROOT / "figures" / "29_protocol_accuracy_validation.csv"
#: each body kind's accuracy of record (its evaluation protocol, T = 0.8): the key of the experiment's metrics
PROTOCOL_MEASURE = {"hand": ("mpjpe_bh", "BH-MPJPE of 200, T = 0.8, all hands"),
                    "body": ("pa_mpjpe_bh_ambiguous", "PA-MPJPE of the best of 25, T = 0.8, ambiguous bodies")}
TEST_CSV = ROOT / "figures" / "29_calibration_test.csv"


def chosen_temperature(rows) -> float:
    """:func:`mhe.diagnostics.choose_temperature` of a model's validation ``rows`` (a DataFrame): the lowest
    occluded score, ties to the temperature nearest 1."""
    from mhe.diagnostics import choose_temperature

    return choose_temperature(rows["temperature"].tolist(), rows["score_occ"].tolist())


def _test_items(name: str, cfg, items: int | None):
    """The fresh test split of the metrics tables (data seed 1): the keypoint split of
    :func:`mhe.lab.diagnostics_runs.test_split`, or for a model that reads image crops its own experiment's test
    split rebuilt at data seed 1 (as ``mhe evaluate --split test --data-seed 1`` does), rendered crops included."""
    from mhe.lab.diagnostics_runs import test_split

    if not cfg.data.images:
        return test_split(cfg.model.body, items)
    from torch.utils.data import Subset

    from mhe.lab.builders import split_of
    from mhe.lab.experiments import _checkpoint_experiment

    exp, _, cfg1, _ = _checkpoint_experiment(name, None, None, 1, ())
    data = split_of(exp, cfg1, "test")
    return Subset(data, range(min(items or 500, len(data))))


def _merge(path: Path, frame, key: list[str]):
    import pandas as pd

    if not path.exists():
        return frame
    old = pd.read_csv(path)
    stale = old.set_index(key).index.isin(frame.set_index(key).index)
    return pd.concat([old[~stale], frame], ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("models", nargs="*", default=list(DEFAULT_MODELS),
                        help="shipped names or run folders / checkpoints (default: every sampled shipped model)")
    parser.add_argument("--temperatures", type=float, nargs="+", default=list(DEFAULT_TEMPERATURES))
    parser.add_argument("--items", type=int, default=256, help="the first validation items (default: 256)")
    parser.add_argument("--test-items", type=int, default=None, help="the first test items (default: 500)")
    parser.add_argument("--samples", type=int, default=200, help="hypotheses per item (default: 200)")
    parser.add_argument("--validation-only", action="store_true",
                        help="score on validation only, never reading the test split")
    parser.add_argument("--append", action="store_true",
                        help="add the rows to the CSVs, replacing their rows of the same model (and temperature)")
    parser.add_argument("--note", default="", help="what the model changes (the validation table's note column)")
    parser.add_argument("--protocol", action="store_true",
                        help="also each model's accuracy of record on the same validation items (its body's "
                             "evaluation protocol: PROTOCOL_MEASURE), to --protocol-out")
    parser.add_argument("--protocol-out", default=str(PROTOCOL_CSV))
    parser.add_argument("--val-out", default=str(VALIDATION_CSV))
    parser.add_argument("--test-out", default=str(TEST_CSV))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    import pandas as pd
    import torch
    from torch.utils.data import DataLoader, Subset

    from mhe.diagnostics import calibration_sweep
    from mhe.evaluation import EVAL_BATCH_SIZE, EVAL_SEED
    from mhe.lab.builders import build_experiment
    from mhe.lab.experiments import load_model

    torch.set_num_threads(1)
    val_rows, test_rows, protocol_rows = [], [], []
    for name in args.models:
        model, cfg = load_model(name, device="cpu")
        if getattr(model, "deterministic", False):
            print(f"{name}: deterministic (one answer per item, nothing to calibrate): skipped", flush=True)
            continue
        body = cfg.model.body
        exp = build_experiment(cfg)
        val = exp.val_set
        val = Subset(val, range(min(args.items, len(val))))
        sweep = calibration_sweep(model, DataLoader(val, batch_size=EVAL_BATCH_SIZE), args.temperatures,
                                  num_samples=args.samples, seed=EVAL_SEED)
        rows = pd.DataFrame([{"model": name, "body": body, "steps": cfg.train.steps, "note": args.note, **r}
                             for r in sweep])
        for r in sweep:
            print(f"{name} val T={r['temperature']:g}: score occluded {r['score_occ']:.3f} "
                  f"(inside 90 %: {r['inside_90_occ']:.2f}), visible {r['score_vis']:.3f}, "
                  f"best-of-{args.samples} {r['mpjpe_bh']:.1f} mm", flush=True)
        val_rows.append(rows)
        if args.protocol:
            from mhe.evaluation import EVAL_TEMPERATURE

            key, measure = PROTOCOL_MEASURE[body]
            metrics = exp.evaluate_fn(model, DataLoader(val, batch_size=EVAL_BATCH_SIZE),
                                      num_samples=int(model.spec.eval_samples), temperature=EVAL_TEMPERATURE)
            protocol_rows.append({"model": name, "body": body, "note": args.note, "n_items": len(val),
                                  "measure": measure, "value_mm": float(metrics[key])})
            print(f"{name} val {measure}: {metrics[key]:.1f} mm", flush=True)
        if args.validation_only:
            continue
        t_star = chosen_temperature(rows)
        loader = DataLoader(_test_items(name, cfg, args.test_items), batch_size=EVAL_BATCH_SIZE)
        for sampling, t in (("T = 1", 1.0), ("chosen on validation", t_star)):
            r = calibration_sweep(model, loader, (t,), num_samples=args.samples, seed=EVAL_SEED)[0]
            test_rows.append({"model": name, "body": body, "sampling": sampling, **r})
            print(f"{name} test {sampling} (T={t:g}): score occluded {r['score_occ']:.3f} "
                  f"(inside 90 %: {r['inside_90_occ']:.2f}), best-of-{args.samples} {r['mpjpe_bh']:.1f} mm", flush=True)
    frame = pd.concat(val_rows, ignore_index=True)
    if args.append:
        frame = _merge(Path(args.val_out), frame, ["model", "temperature"])
    frame.to_csv(args.val_out, index=False, float_format="%.4f")
    print(f"written {args.val_out}")
    if protocol_rows:
        protocol = pd.DataFrame(protocol_rows)
        if args.append:
            protocol = _merge(Path(args.protocol_out), protocol, ["model"])
        protocol.to_csv(args.protocol_out, index=False, float_format="%.4f")
        print(f"written {args.protocol_out}")
    if test_rows:
        test = pd.DataFrame(test_rows)
        if args.append:
            test = _merge(Path(args.test_out), test, ["model", "sampling"])
        test.to_csv(args.test_out, index=False, float_format="%.4f")
        print(f"written {args.test_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
