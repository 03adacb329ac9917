"""Reference metrics of every shipped checkpoint, and the check that each one reproduces its committed CSV row.

Each checkpoint in ``mhe/checkpoints`` is evaluated as in the README's tables (``mhe evaluate --checkpoint <name>
--split test --data-seed 1``: the fresh test split, the body's protocol of S hypotheses at T = 0.8, generators
seeded with 0), on the first ``--items`` test items in one batch. The metrics go to
``tests/data/shipped_reference.json``, which ``tests/test_shipped_checkpoints.py`` compares a fresh evaluation
against (a few seconds per checkpoint, where the full test split takes minutes).

``--check-csv`` instead evaluates the whole test split (500 items, batches of 50, exactly the tables' protocol)
and compares each checkpoint with its row of ``figures/04_hand_metrics.csv`` / ``figures/05_body_metrics.csv`` to
the CSV's 4 decimals; it prints each difference and exits with status 1 if there is one (minutes per model on a
CPU: run it after a change that could move the numbers, e.g. ``--check-csv hand_mhentropy_rot``).

Usage:
    python tools/shipped_reference.py [--items 8] [--out tests/data/shipped_reference.json] [NAME ...]
    python tools/shipped_reference.py --check-csv [NAME ...]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "shipped_reference.json"
ITEMS = 8
DATA_SEED = 1  # the tables' fresh test split
CSV = {"hand": ROOT / "figures" / "04_hand_metrics.csv", "body": ROOT / "figures" / "05_body_metrics.csv"}


def shipped_names() -> list[str]:
    """The names of the shipped checkpoints (``hand_mhentropy``, ...), sorted."""
    from mhe.lab.checkpoint import checkpoint_dir

    return sorted(p.stem for p in checkpoint_dir().glob("*.pt"))


def evaluate(name: str, items: int | None) -> dict[str, Any]:
    """``mhe.lab.experiments.evaluate_checkpoint`` of shipped checkpoint ``name`` on the test split (data seed 1):
    the first ``items`` items in one batch, or the whole split in batches of 50 (``items=None``, the tables)."""
    from mhe.lab.experiments import evaluate_checkpoint

    if items is None:
        return evaluate_checkpoint(name, split="test", data_seed=DATA_SEED, device="cpu")
    # only the first items of each split are generated (item i depends on split, seed and i alone)
    sizes = [f"data.train_size={items}", f"data.val_size={items}", f"data.test_size={items}"]
    return evaluate_checkpoint(name, split="test", data_seed=DATA_SEED, batch_size=items, device="cpu",
                               data_overrides=sizes)


def reference(names: list[str], items: int) -> dict[str, Any]:
    """``{"items": n, "data_seed": 1, "checkpoints": {name: {"num_samples", "temperature", "metrics"}}}``."""
    out: dict[str, Any] = {"items": items, "data_seed": DATA_SEED, "checkpoints": {}}
    for name in names:
        result = evaluate(name, items)
        out["checkpoints"][name] = {k: result[k] for k in ("num_samples", "temperature", "metrics")}
        print(f"{name}: {result['num_samples']} hypotheses, mpjpe_bh {result['metrics'].get('mpjpe_bh')}", flush=True)
    return out


def csv_differences(name: str, metrics: dict[str, float | None]) -> list[str]:
    """The columns of ``name``'s committed CSV row that ``metrics`` does not reproduce to the CSV's 4 decimals."""
    import pandas as pd

    body, objective = name.split("_", 1)
    table = pd.read_csv(CSV[body]).set_index("objective")
    if objective not in table.index:
        return [f"{CSV[body].name} has no row {objective!r}"]
    row, out = table.loc[objective], []
    for column, value in row.items():
        if column not in metrics or isinstance(value, str):
            continue
        got = metrics[column]
        same = (got is None and (value != value)) or (got is not None and math.isclose(round(got, 4), float(value),
                                                                                       abs_tol=1.5e-4))
        if not same:
            out.append(f"{name}.{column}: CSV {value} vs now {got}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="shipped checkpoints (default: all of mhe/checkpoints)")
    parser.add_argument("--items", type=int, default=ITEMS, help="test items of the reference (default 8)")
    parser.add_argument("--out", default=str(REFERENCE), help="where the reference is written")
    parser.add_argument("--check-csv", action="store_true",
                        help="evaluate the whole test split and compare with the committed CSV rows instead")
    args = parser.parse_args(argv)
    names = args.names or shipped_names()
    if args.check_csv:
        differences = []
        for name in names:
            found = csv_differences(name, evaluate(name, None)["metrics"])
            print(f"{name}: " + ("reproduces its CSV row" if not found else "; ".join(found)), flush=True)
            differences += found
        return 1 if differences else 0
    data = reference(names, args.items)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
