"""Time notebook 01 end to end (SMOKE=False and SMOKE=True), beside the time before issue 28, and measure the
arm's coverage targets.

Run: ``.venv/bin/python benchmarks/bench_toy.py [--seeds N]``. Figures of the timed runs go to a
temporary folder, so the committed figures/ stay untouched. The slowest cells' times (papermill's record in the
executed copy) are printed beside :data:`BEFORE`, the same cells' times before issue 28's speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mhe.lab.notebooks import NOTEBOOK_DIR, run_notebook
from mhe.toy import ArmOptions, arm_coverage, fit_arm, held_out_arm_observations

NOTEBOOK = NOTEBOOK_DIR / "01_toy_nll_vs_entropy.ipynb"

#: Notebook 01 at SMOKE=False before issue 28's speed-up (2026-12-06, papermill on the shared 2-core machine,
#: zuko's generic flow pass, arms of 1500 steps trained one after another): seconds end to end and per slow cell,
#: keyed by the first line of the cell.
BEFORE = {
    "total": 206.0,
    "runs = {": 158.0,  # the six arm fits
    "ring_runs = {": 15.6,  # the ring fits of section 3 (their cell began "fits, histories = {}, {}")
    "seeds = (0, 1, 2)": 13.0,  # exercise 1: three ring seeds (the cell began "counts = []")
    'wide = fit_arm("mhentropy"': 6.6,  # exercise 3: the arm at b = 0.2
}


def time_notebook(smoke: bool) -> tuple[float, dict[str, float]]:
    """Seconds end to end and papermill's seconds per code cell (keyed by the cell's first line)."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MHE_FIGURES_DIR"] = str(Path(tmp) / "figures")
        start = time.perf_counter()
        out = run_notebook(NOTEBOOK, {"SMOKE": smoke, "SEED": 0}, out_dir=tmp)
        total = time.perf_counter() - start
        cells = {}
        for cell in json.loads(Path(out).read_text())["cells"]:
            duration = cell.get("metadata", {}).get("papermill", {}).get("duration")
            if cell["cell_type"] == "code" and duration is not None:
                cells["".join(cell["source"]).split("\n")[0]] = float(duration)
        return total, cells


def report_notebook() -> None:
    total, cells = time_notebook(False)
    print(f"notebook 01, SMOKE=False: {total:.1f} s end to end (before issue 28: {BEFORE['total']:.0f} s; target "
          f"<= 60 s on 2 free cores; the six arms train {ArmOptions().steps} steps each, two at a time)", flush=True)
    for key, before in BEFORE.items():
        after = next((v for line, v in cells.items() if line.startswith(key)), float("nan"))
        if key != "total":
            print(f"  cell {key!r:32s} {after:6.1f} s (before {before:6.1f} s)")
    smoke, _ = time_notebook(True)
    print(f"notebook 01, SMOKE=True:  {smoke:.1f} s end to end (target <= 15 s)", flush=True)


def coverage(seeds: int) -> None:
    heights, modes = held_out_arm_observations(100, seed=1234)
    rows = []
    for seed in range(seeds):
        model = fit_arm("mhentropy", seed=seed)
        cov = arm_coverage(model, heights, modes, radius=0.5)
        masses = [cov[f"mass_{k}"] for k in range(4)]
        ok = cov["modes_hit"] >= 3.8 and all(0.15 <= m <= 0.35 for m in masses)
        rows.append((cov["modes_hit"], min(masses), max(masses), ok, model.train_seconds))
        print(f"  mhentropy seed {seed}: modes hit {cov['modes_hit']:.2f}/4, mean mass per mode "
              f"{min(masses):.3f}..{max(masses):.3f}, targets met: {ok}, fit {model.train_seconds:.1f} s",
              flush=True)
    hits = [r[0] for r in rows]
    print(f"  mhentropy over {seeds} seeds: modes hit mean {statistics.mean(hits):.2f} "
          f"(min {min(hits):.2f}); all targets met in {sum(r[3] for r in rows)}/{seeds} seeds; "
          f"fit time mean {statistics.mean(r[4] for r in rows):.1f} s")
    collapsed = arm_coverage(fit_arm("no_entropy", steps=400), heights, modes, radius=0.5)
    print(f"  no_entropy (400 steps): modes hit {collapsed['modes_hit']:.2f}/4 (target <= 2)")


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__)
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the coverage measurement")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores, load average "
          f"{os.getloadavg()[0]:.2f} (other processes slow every number below)")
    report_notebook()
    torch.set_num_threads(1)
    print("two-link arm coverage on 100 held-out observations (radius 0.5 rad, hit = mass >= 0.05):")
    coverage(args.seeds)


if __name__ == "__main__":
    main()
