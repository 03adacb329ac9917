"""Does the toy arm's MHEntropy posterior match the exact posterior? Prints the numbers and the
training time; exits 1 when a target fails.

Run: ``.venv/bin/python benchmarks/bench_toy_posterior.py [--observations N] [--seeds K]``.

Targets (``fit_arm(objective, seed=0)`` with its default options; held-out observations from
:func:`mhe.toy.held_out_arm_observations`; S = 200 samples per observation; statistics from
:func:`mhe.toy.posterior_match`, radius 0.3 rad):

1. MHEntropy: ``coverage`` (fraction of samples within 0.3 rad of their nearest exact solution) >= 0.75;
2. MHEntropy: each solution's mass (fraction of all samples within 0.3 rad of it, nearest) within
   ± 0.05 of the exact posterior's mass on the same observations (``max_mass_gap`` <= 0.05);
3. no entropy term: ``solutions_hit`` (solutions with at least one of the 200 samples within
   0.3 rad, averaged over observations) <= 1.5: the flow still collapses.

``--seeds K`` also trains MHEntropy with seeds 1..K-1 and reports them (information only: the
targets are on seed 0).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from mhe.toy import fit_arm, held_out_arm_observations, posterior_match

COVERAGE_MIN = 0.75
MASS_GAP_MAX = 0.05
COLLAPSED_HITS_MAX = 1.5


def _row(name: str, row: dict) -> str:
    masses = " ".join(f"{row[f'mass_{k}']:.3f}" for k in range(4))
    seconds = "" if row["train_seconds"] != row["train_seconds"] else f"  fit {row['train_seconds']:.1f} s"
    return (f"  {name:16s} coverage {row['coverage']:.3f}  masses {masses}  gap {row['max_mass_gap']:.3f}  "
            f"solutions hit {row['solutions_hit']:.2f}{seconds}")


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--observations", type=int, default=100, help="held-out observations (default 100)")
    parser.add_argument("--seeds", type=int, default=1, help="MHEntropy training seeds to report (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread of {os.cpu_count()} CPU cores, load average "
          f"{os.getloadavg()[0]:.2f} (other processes slow the times below)", flush=True)
    heights, modes = held_out_arm_observations(args.observations, seed=1234)
    start = time.perf_counter()
    models = {"mhentropy": fit_arm("mhentropy", seed=0), "no_entropy": fit_arm("no_entropy", seed=0)}
    rows = posterior_match(models, heights, modes, num_samples=200, radius=0.3)
    print(f"{args.observations} held-out observations, 200 samples each, radius 0.3 rad "
          f"(masses of solutions 0..3; gap = max |mass - exact mass|):")
    for name, row in rows.items():
        print(_row(name, row))
    full, collapsed = rows["mhentropy"], rows["no_entropy"]
    checks = [
        (f"MHEntropy coverage {full['coverage']:.3f} >= {COVERAGE_MIN}", full["coverage"] >= COVERAGE_MIN),
        (f"MHEntropy max |mass - exact mass| {full['max_mass_gap']:.3f} <= {MASS_GAP_MAX}",
         full["max_mass_gap"] <= MASS_GAP_MAX),
        (f"no entropy: solutions hit {collapsed['solutions_hit']:.2f} <= {COLLAPSED_HITS_MAX}",
         collapsed["solutions_hit"] <= COLLAPSED_HITS_MAX),
    ]
    for seed in range(1, args.seeds):
        row = posterior_match({f"mhentropy s{seed}": fit_arm("mhentropy", seed=seed)}, heights, modes)
        print(_row(f"mhentropy s{seed}", row[f"mhentropy s{seed}"]) + "  (information only)", flush=True)
    print(f"total {time.perf_counter() - start:.0f} s")
    for text, ok in checks:
        print(f"  [{'ok' if ok else 'FAIL'}] {text}")
    failed = [text for text, ok in checks if not ok]
    print("all targets met" if not failed else f"{len(failed)} target(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
