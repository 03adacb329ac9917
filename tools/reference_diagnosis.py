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

With ``--compare LABEL=DRAWS.npz:DIAGNOSTICS.csv ...`` it instead compares runs of one reference (e.g. the same
items sampled with more transitions): on the items all of them hold, each run's calibration against the
truth (occluded and visible non-root joints, the cGNF score and the 90 % region's coverage, the mean spread)
beside the medians of its per-item diagnostics, in ``--csv``. How far the scores move between runs is how far
the chains' lack of convergence moves them.
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
from reference_posterior import (  # noqa: E402
    CALIBRATION_LEVELS,
    LIMB_BONES,
    _joints,
    calibration_scores,
    flow_starts,
    load,
    saved_masks,
)

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


def compare_runs(runs: list[str], path: Path) -> None:
    """``--compare``: each ``label=draws.npz:diagnostics.csv`` on the (split, item) pairs every run holds."""
    from mhe.diagnostics import calibration_curve

    parsed = []
    for run in runs:
        label, _, files = run.partition("=")
        draws, _, diag = files.partition(":")
        if not (label and draws and diag):
            raise SystemExit(f"--compare takes LABEL=DRAWS.npz:DIAGNOSTICS.csv, got {run!r}")
        parsed.append((label, np.load(ROOT / draws), ROOT / diag, Path(draws).stem))
    keys = [set(zip(d["split"].tolist(), d["index"].tolist(), strict=True)) for _, d, _, _ in parsed]
    common = sorted(set.intersection(*keys))
    if not common:
        raise SystemExit("the runs hold no item in common")
    rows = []
    for label, d, diag, stem in parsed:
        where = {k: i for i, k in enumerate(zip(d["split"].tolist(), d["index"].tolist(), strict=True))}
        pick = [where[k] for k in common]
        h = torch.from_numpy(d["joints_mm"][pick].astype(np.float32))
        truth = torch.from_numpy(d["truth_mm"][pick].astype(np.float32))
        visible = torch.from_numpy(d["visible"][pick]).bool()
        model, _, ref = stem.rpartition("_ref")
        with open(diag, newline="") as fh:
            per_item = {(r["split"], int(r["item"])): r for r in csv.DictReader(fh)
                        if r["model"] == model and r["reference"] == ref}
        items = [per_item[k] for k in common]
        row: dict = {"run": label, "model": model, "reference": int(ref), "items": len(common),
                     "draws": h.shape[1]}
        for part, mask in saved_masks(truth, visible).items():
            row[f"score_{part}"], row[f"inside_90_{part}"] = calibration_scores(
                calibration_curve(h, truth, mask, CALIBRATION_LEVELS))
            spread = (h - h.mean(1, keepdim=True)).norm(dim=-1).mean(1)
            row[f"spread_mm_{part}"] = float(spread[mask].mean())
        for col in ("rhat_occluded", "rhat_log_p", "ess_occluded", "ess_log_p", "rhat_within_chain", "cpu_seconds"):
            values = np.array([float(r.get(col) or "nan") for r in items])
            row[f"{col}_median"] = float(np.median(values[np.isfinite(values)])) if np.isfinite(values).any() \
                else float("nan")
        row["items_with_jumps"] = sum(float(r.get("jump_accept") or 0) > 0 for r in items)
        row["items_converged"] = sum(r.get("converged") == "yes" for r in items)
        rows.append(row)
        print(row, flush=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="body_mhentropy")
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 30], help="leapfrog steps per transition")
    parser.add_argument("--warmup", type=int, nargs="+", default=[500, 200], help="per --steps value")
    parser.add_argument("--samples", type=int, nargs="+", default=[200, 80], help="per --steps value")
    parser.add_argument("--csv", default=None, help="default: figures/29_reference_mode_diagnosis.csv, with "
                        "--compare figures/29_reference_runs_compared.csv")
    parser.add_argument("--compare", nargs="+", metavar="LABEL=DRAWS.npz:DIAGNOSTICS.csv", default=None,
                        help="only compare runs of one reference on the items they share (paths from the repo root)")
    args = parser.parse_args(argv)
    if args.compare:
        compare_runs(args.compare, ROOT / (args.csv or "figures/29_reference_runs_compared.csv"))
        return 0
    args.csv = args.csv or "figures/29_reference_mode_diagnosis.csv"
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
