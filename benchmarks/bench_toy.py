"""Time notebook 01 end to end (SMOKE=False and SMOKE=True) and measure the arm's coverage targets.

Run: ``.venv/bin/python benchmarks/bench_toy.py [--seeds N]``. Figures of the timed runs go to a
temporary folder, so the committed figures/ stay untouched.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mhe.lab.notebooks import NOTEBOOK_DIR, run_notebook
from mhe.toy import ArmOptions, arm_coverage, fit_arm, held_out_arm_observations

NOTEBOOK = NOTEBOOK_DIR / "01_toy_nll_vs_entropy.ipynb"


def time_notebook(smoke: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MHE_FIGURES_DIR"] = str(Path(tmp) / "figures")
        start = time.perf_counter()
        run_notebook(NOTEBOOK, {"SMOKE": smoke, "SEED": 0}, out_dir=tmp)
        return time.perf_counter() - start


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
    print(f"notebook 01, SMOKE=False: {time_notebook(False):.1f} s end to end (target <= 240 s: every ablation trains the full {ArmOptions().steps} steps)", flush=True)
    print(f"notebook 01, SMOKE=True:  {time_notebook(True):.1f} s end to end (target <= 15 s)", flush=True)
    torch.set_num_threads(1)
    print("two-link arm coverage on 100 held-out observations (radius 0.5 rad, hit = mass >= 0.05):")
    coverage(args.seeds)


if __name__ == "__main__":
    main()
