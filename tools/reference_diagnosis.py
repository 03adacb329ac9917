"""Why the body reference's chains do not agree (issue 29): slow mixing within a mode, or discrete modes?

Runs plain batched HMC (:func:`mhe.reference.hmc`, 8 chains: half started at the flow's T = 1 draws, half
at T = 2) on reference 1 of the first N validation bodies, once per trajectory length, and writes per item
``figures/29_reference_mode_diagnosis.csv``:

* ``rhat_max``: the worst joint coordinate's rank-normalised split R-hat over all chains;
* ``rhat_within_mode``: the same within groups of chains that share the limbs' depth pattern (each chain's
  majority sign of every bone whose sign the chains disagree on), the worst group of at least 2 chains;
* ``rhat_within_chain``: each chain cut into 4 pieces, R-hat across them (the worst chain): > 1 when a
  chain does not agree with itself;
* ``limbs_split``: limbs (hip → knee → ankle, shoulder → elbow → wrist) whose depth sign one chain holds in
  over 95 % of its draws and another in under 5 % (chains in different discrete modes);
* ``log_p_chain_min`` / ``log_p_chain_max``: the lowest and highest mean log p̃ of a chain.

    OMP_NUM_THREADS=1 python tools/reference_diagnosis.py [--items 8] [--steps 10 30]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_posterior import LIMB_BONES, _joints, flow_starts, load  # noqa: E402

from mhe.body import BODY_PARENTS  # noqa: E402
from mhe.reference import ModelTarget, hmc, split_rhat  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def diagnose(joints: torch.Tensor, log_p: torch.Tensor) -> dict[str, float]:
    """The columns above for one item's chains: ``joints (C, n, J, 3)``, ``log_p (C, n)``."""
    C, n, J, _ = joints.shape
    q = joints.permute(2, 3, 0, 1).reshape(J * 3, C, n)
    moving = q.flatten(-2).std(-1) > 1e-3

    def worst(x: torch.Tensor) -> float:
        return float(torch.where(moving, split_rhat(x), torch.nan).nan_to_num(-1.0).max())

    parents = torch.as_tensor(BODY_PARENTS)
    deeper = joints[..., 1:, 2] > joints[..., parents[1:], 2]  # (C, n, J - 1)
    majority = deeper.float().mean(1) > 0.5  # (C, J - 1)
    differ = majority.any(0) & ~majority.all(0)
    groups: dict[tuple, list[int]] = {}
    for c in range(C):
        groups.setdefault(tuple(majority[c, differ].tolist()), []).append(c)
    within_mode = [worst(q[:, cs]) for cs in groups.values() if len(cs) >= 2]
    pieces = q[..., : n // 4 * 4].reshape(J * 3, C, 4, -1)
    share = torch.stack([(joints[..., c, 2] > joints[..., p, 2]).float().mean(1) for p, c in LIMB_BONES], -1)
    chain_lp = log_p.mean(1)
    return {"rhat_max": worst(q), "rhat_within_mode": max(within_mode) if within_mode else float("nan"),
            "mode_groups": len(groups), "rhat_within_chain": max(worst(pieces[:, c]) for c in range(C)),
            "limbs_split": int(((share < 0.05).any(0) & (share > 0.95).any(0)).sum()),
            "log_p_chain_min": float(chain_lp.min()), "log_p_chain_max": float(chain_lp.max())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="body_mhentropy")
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 30], help="leapfrog steps per transition")
    parser.add_argument("--warmup", type=int, nargs="+", default=[500, 200], help="per --steps value")
    parser.add_argument("--samples", type=int, nargs="+", default=[200, 80], help="per --steps value")
    parser.add_argument("--csv", default="figures/29_reference_mode_diagnosis.csv")
    args = parser.parse_args(argv)
    if not len(args.steps) == len(args.warmup) == len(args.samples):
        parser.error("--steps, --warmup and --samples need one value each per run")
    torch.set_num_threads(1)
    model, cfg, exp = load(args.model)
    data = exp.split("val")
    batch = default_collate([data[i] for i in range(args.items)])
    B, C = args.items, args.chains
    rows = []
    for steps, warmup, samples in zip(args.steps, args.warmup, args.samples, strict=True):
        target = ModelTarget(model, batch, C, b=cfg.objective.b, w_rec=cfg.objective.w_rec,
                             w_prior=cfg.objective.w_prior)
        theta, _ = flow_starts(model, batch, C, seed=1)
        start = time.perf_counter()
        res = hmc(target, target.initial(theta).view(B, C, -1), num_warmup=warmup, num_samples=samples,
                  num_steps=steps, scale=target.scales(theta), generator=torch.Generator().manual_seed(1))
        seconds = time.perf_counter() - start
        with torch.no_grad():
            joints = _joints(target, res.samples, batch)
        for i in range(B):
            row = {"model": args.model, "item": i, "steps": steps, "warmup": warmup, "samples": samples,
                   **diagnose(joints[i], res.log_density[i]), "step_size": float(res.step_size[i]),
                   "seconds": seconds / B}
            rows.append(row)
            print(row, flush=True)
        print(f"{steps} steps: median worst R-hat {np.median([r['rhat_max'] for r in rows[-B:]]):.3f}", flush=True)
    path = ROOT / args.csv
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
