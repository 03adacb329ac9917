"""Reference posteriors of shipped models' own targets (issue 29): samples and diagnostics.

For the first N validation and N test items of each model's benchmark, draws the model's own target
p̃(θ | obs) by batched HMC (:mod:`mhe.reference`) twice: reference 1 with the head's rotation and shape
held at the model's (what the flow is trained against) and reference 2 with them sampled under the
benchmark's prior. Chains start apart: half at the flow's samples (T = 1), half at overdispersed ones
(T = 2) or, where the rotation is sampled, at the palm's depth flip of the rotation (``--flip-jumps``: with
Metropolis jumps across that flip after every transition). Writes

* ``data/reference/<model>_ref<1|2>.npz``: per item ``joints_mm`` (items, keep, J, 3) float16, root-relative
  in mm at the truth's scale (as ``model.predict``), the truth ``truth_mm``, ``visible``, ``split``, ``index``;
* ``figures/29_reference_diagnostics.csv``: per item R-hat (rank-normalised split, the worst joint
  coordinate), bulk ESS (the worst), acceptance, step size, divergences, mean log p̃ of the reference's
  draws and of the flow's own samples, seconds and CPU-seconds per item, and whether the item converged
  (R-hat <= 1.01 and bulk ESS >= 400 on the occluded joints and log p̃);
* with ``--nuts-check K``, ``figures/29_reference_nuts_check.csv``: for K validation hands (reference 1),
  the occluded joints' mean and spread from this HMC against pyro's NUTS (``pip install -e ".[reference]"``).

    OMP_NUM_THREADS=1 python tools/reference_posterior.py [--items 100] [--models hand_mhentropy body_mhentropy]
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

from mhe.diagnostics import CALIBRATION_LEVELS, joint_masks
from mhe.reference import ModelTarget, ess_bulk, geometric_ladder, hmc, split_rhat
from mhe.reference import tempered_hmc as hmc_tempered

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["model", "reference", "split", "item", "rhat_max", "rhat_occluded", "rhat_log_p", "ess_bulk_min",
           "ess_occluded", "ess_log_p", "accept", "step_size", "divergent", "swap_accept", "rhat_within_chain",
           "limbs_split", "jump_accept", "log_p_reference", "log_p_flow", "seconds", "cpu_seconds", "converged",
           "status"]
#: an item's chains count as converged (the ``converged`` column) when the worst occluded joint coordinate (all
#: joints where none is occluded) and log p̃ reach split R-hat <= 1.01 and bulk ESS >= 400 (Vehtari et al., 2021)
RHAT_CONVERGED, ESS_CONVERGED = 1.01, 400.0

#: the limbs' bones (parent, child) in the 17 body keypoints: hip → knee → ankle, shoulder → elbow → wrist
LIMB_BONES = ((1, 2), (2, 3), (4, 5), (5, 6), (11, 12), (12, 13), (14, 15), (15, 16))
#: the hand's depth-flip bones in the 21 hand keypoints: the palm's orientation (wrist → index, middle and pinky
#: MCP, which the palm's depth flip reverses) and each finger from its base to its tip (a finger bent towards or
#: away from the camera)
HAND_DEPTH_BONES = ((0, 1), (0, 4), (0, 7), (13, 16), (1, 17), (4, 18), (10, 19), (7, 20))
#: the depth-flip bones by the number of keypoints (bodies 17, hands 21)
DEPTH_BONES = {17: LIMB_BONES, 21: HAND_DEPTH_BONES}
#: the models compared with each reference model's draws in the decomposition (MHEntropy, NLL, min-of-N)
DECOMPOSITION_MODELS = {"body_mhentropy": ["body_mhentropy", "body_nll", "body_min_of_n"],
                        "hand_mhentropy": ["hand_mhentropy", "hand_nll", "hand_min_of_n"]}


def load(name: str):
    from mhe.lab.builders import build_experiment
    from mhe.lab.experiments import load_model

    model, cfg = load_model(name, device="cpu")
    exp = build_experiment(cfg)
    return model, cfg, exp


def flow_starts(model, batch: dict, chains: int, seed: int,
                prior_share: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, flow_dim) starting flow variables: half at T = 1, half at T = 2, of which ``prior_share`` of
    all C chains (bodies) instead take their pose from the pose prior (the pose mixture, clamped into the
    joint limits; the global rotation of a T = 1 draw); and the T = 1 draws for the flow's mean log p̃."""
    torch.manual_seed(seed)
    with torch.no_grad():
        near = model.hypotheses(batch, chains - chains // 2, 1.0).params
        far = model.hypotheses(batch, chains // 2, 2.0).params
    theta = torch.cat([near, far], 1)
    n_prior = int(round(prior_share * chains))
    spec = model.spec
    if n_prior and getattr(spec, "pose_gmm", None) is not None:
        B = theta.shape[0]
        gen = torch.Generator().manual_seed(seed)
        aa = spec.limits.clamp(spec.pose_gmm.sample(B * n_prior, gen).view(-1, 23, 3)).flatten(-2)
        pose = spec.params_from_gt(aa).to(theta).view(B, n_prior, -1)
        rot = theta.shape[-1] - pose.shape[-1]
        theta[:, chains - n_prior:, rot:] = pose  # the last chains (the T = 2 half)
    return theta, near


def run_chunk(model, cfg, batch: dict, reference: int, args, seed: int) -> dict:
    C, K = args.chains, args.rungs
    kw = dict(b=cfg.objective.b, w_rec=cfg.objective.w_rec, w_prior=cfg.objective.w_prior, sample_head=reference == 2)
    target = ModelTarget(model, batch, C, **kw)
    theta, near = flow_starts(model, batch, C, seed, args.prior_starts)
    B = theta.shape[0]
    flip = None
    if reference == 2 and target.sample_rotation or model.rotation_in_flow and model.spec.name == "hand":
        # the other half starts from the flow's T = 1 draws with the palm flipped in depth
        theta = torch.cat([near, near[:, : C // 2]], 1)
        flip = torch.zeros(B, C, dtype=torch.bool)
        flip[:, C - C // 2:] = True
    x0 = target.initial(theta, flip).view(B, C, -1)
    scale = target.scales(theta).view(B, C, -1)
    gen = torch.Generator().manual_seed(seed)
    start, cpu_start = time.perf_counter(), time.process_time()
    if K > 1:  # replica exchange: every rung starts where β = 1's chains start
        tempered = ModelTarget(model, batch, K * C, **kw)
        res = hmc_tempered(tempered.parts, x0.repeat(1, K, 1), geometric_ladder(K, args.beta_min),
                           num_warmup=args.warmup, num_samples=args.samples, num_steps=args.steps,
                           scale=scale.repeat(1, K, 1), generator=gen)
    else:  # with --flip-jumps, where the rotation is sampled: Metropolis jumps across the palm's depth flip
        jump = target.flip_jump if getattr(args, "flip_jumps", False) and target.sample_rotation else None
        res = hmc(target, x0, num_warmup=args.warmup, num_samples=args.samples, num_steps=args.steps,
                  scale=scale, generator=gen, jump=jump)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    n = res.samples.shape[2]
    with torch.no_grad():
        joints = _joints(target, res.samples, batch)  # (B, C, n, J, 3) mm
        # the flow's own T = 1 samples under the same target (padded to C rows per item, the first ones kept)
        near_x = target.initial(torch.cat([near, near], 1)[:, :C])
        flow_lp = target(near_x).view(B, C)[:, : near.shape[1]].mean(1)
    J = joints.shape[-2]
    q = joints.permute(0, 3, 4, 1, 2).reshape(B, J, 3, C, n)  # quantities × chains × draws
    moving = q.flatten(-2).std(-1) > 1e-3  # joints the sampled variables move (not the root, not fixed ones)
    rhat = torch.where(moving, split_rhat(q), torch.nan)
    ess = torch.where(moving, ess_bulk(q), torch.nan)
    hidden = ~batch["visible"].bool()[:, :, None].expand(B, J, 3)
    keep_every = max(1, (C * n) // args.keep)
    flat = joints.reshape(B, C * n, J, 3)  # chain-major: chain c's draws, then c + 1's
    picks = torch.arange(0, C * n, keep_every)[: args.keep]
    swap = res.swap_accept.amin(-1) if res.swap_accept is not None else torch.full((B,), torch.nan)
    # why R-hat is high: chains that do not agree with themselves (each cut in 4 pieces, R-hat across them)
    # or chains in different discrete modes (a limb's depth sign held by one chain and never by another)
    within = torch.full((B,), torch.nan)
    if n >= 16:  # split R-hat needs 4 draws per half-piece
        pieces = q[..., : n // 4 * 4].reshape(B, J, 3, C, 4, -1).movedim(3, 0)  # (C, B, J, 3, 4, n/4)
        within = torch.stack([_nanmax(torch.where(moving, split_rhat(p), torch.nan).flatten(1))
                              for p in pieces]).amax(0)
    stuck = torch.zeros(B)
    if J == 17:  # bodies: the limbs' depth modes
        share = torch.stack([(joints[..., c, 2] > joints[..., p, 2]).float().mean(2) for p, c in LIMB_BONES], -1)
        stuck = ((share < 0.05).any(1) & (share > 0.95).any(1)).float().sum(-1)  # (B,) limbs split between chains
    return {
        "joints": flat[:, picks].numpy().astype(np.float16),
        "rhat_max": _nanmax(rhat.flatten(1)),
        "rhat_occluded": _nanmax(torch.where(hidden, rhat, torch.nan).flatten(1)),
        "rhat_log_p": split_rhat(res.log_density),
        "ess_bulk_min": _nanmin(ess.flatten(1)),
        "ess_occluded": _nanmin(torch.where(hidden, ess, torch.nan).flatten(1)),
        "ess_log_p": ess_bulk(res.log_density),
        "accept": res.accept, "step_size": res.step_size, "divergent": res.divergent, "swap_accept": swap,
        "rhat_within_chain": within, "limbs_split": stuck,
        "jump_accept": res.jump_accept if res.jump_accept is not None else torch.full((B,), torch.nan),
        "log_p_reference": res.log_density.mean((1, 2)), "log_p_flow": flow_lp, "seconds": seconds / B,
        "cpu_seconds": cpu_seconds / B,
    }


def nuts_check(name: str, items: int, args, path: Path) -> None:
    """Reference 1 of the first ``items`` validation items by this HMC and by pyro's NUTS (one chain each
    item, started at the flow's T = 1 sample): per item and occluded joint, the distance between the two
    samplers' means and the two spreads (RMS distance to the mean), in mm."""
    from pyro.infer import MCMC, NUTS

    model, cfg, exp = load(name)
    data = exp.split("val")
    batch = default_collate([data[i] for i in range(items)])
    res = run_chunk(model, cfg, batch, 1, args, seed=7)
    ours = torch.from_numpy(res["joints"].astype(np.float32))  # (B, keep, J, 3)
    rows = []
    for i in range(items):
        one = {k: v[i: i + 1] for k, v in batch.items()}
        target = ModelTarget(model, one, 1, b=cfg.objective.b, w_rec=cfg.objective.w_rec,
                             w_prior=cfg.objective.w_prior)
        torch.manual_seed(i)
        with torch.no_grad():
            x0 = target.initial(model.hypotheses(one, 1, 1.0).params)[0]
        kernel = NUTS(potential_fn=lambda p, t=target: -t(p["x"][None])[0], target_accept_prob=0.8,
                      max_tree_depth=args.nuts_depth)
        start = time.perf_counter()
        mcmc = MCMC(kernel, num_samples=args.nuts_samples, warmup_steps=args.nuts_warmup,
                    initial_params={"x": x0.clone()}, disable_progbar=True)
        mcmc.run()
        seconds = time.perf_counter() - start
        draws = mcmc.get_samples()["x"].detach()
        with torch.no_grad():
            theirs = _joints(target, draws[None, None], one)[0, 0]  # (n, J, 3)
        hidden = ~batch["visible"][i].bool()
        for j in torch.nonzero(hidden).flatten().tolist():
            a, b = ours[i, :, j], theirs[:, j]
            rows.append({"model": name, "item": i, "joint": j,
                         "mean_distance_mm": float((a.mean(0) - b.mean(0)).norm()),
                         "spread_hmc_mm": float((a - a.mean(0)).norm(dim=-1).square().mean().sqrt()),
                         "spread_nuts_mm": float((b - b.mean(0)).norm(dim=-1).square().mean().sqrt()),
                         "nuts_seconds": seconds})
        print(f"NUTS item {i}: {seconds:.0f} s", flush=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})


def saved_masks(truth: torch.Tensor, visible: torch.Tensor) -> dict[str, torch.Tensor]:
    """The occluded and the visible non-root joints (:func:`mhe.diagnostics.joint_masks`) of saved root-relative
    truths ``(N, J, 3)``, whose root is the joint at 0 in every item."""
    root = int((truth.abs().amax((0, 2)) == 0).nonzero()[0])
    return dict(zip(("occluded", "visible"), joint_masks(visible.bool(), root), strict=True))


def calibration_scores(curve: torch.Tensor) -> tuple[float, float]:
    """A calibration curve at :data:`~mhe.diagnostics.CALIBRATION_LEVELS` → its score (the mean |curve − q|)
    and the share of true joints inside the central 90 % region."""
    from mhe.diagnostics import calibration_gap

    return calibration_gap(curve, CALIBRATION_LEVELS), float(curve[CALIBRATION_LEVELS.index(0.9)])


def calibration_table(names: list[str], out_dir: Path, path: Path, seed: int = 0, status: str = "",
                      label: str = "") -> None:
    """The calibration score (mean |fraction of true joints inside − q| over q = 0.05 … 0.95,
    :func:`mhe.diagnostics.calibration_curve`) of each reference and of the flow's own T = 1 hypotheses
    (as many as the reference keeps) against the truth, on the occluded and the visible non-root joints of
    the items the references hold, per split; with the 90 % region's coverage and the mean spread (mm)."""
    from mhe.diagnostics import calibration_curve

    rows = []
    for name in names:
        model, _, exp = load(name)
        root = model.spec.root
        sources = {f"reference {r}{label}": out_dir / f"{name}_ref{r}.npz" for r in (1, 2)}
        sources = {k: np.load(v) for k, v in sources.items() if v.exists()}
        if not sources:
            continue
        first = next(iter(sources.values()))
        for split in sorted(set(first["split"].tolist())):
            pick = first["split"] == split
            index = first["index"][pick].tolist()
            batch = default_collate([exp.split(split)[i] for i in index])
            torch.manual_seed(seed)
            keep = first["joints_mm"].shape[1]
            flow = model.predict(batch, keep, 1.0)["xyz_mm"]
            drawn = {k: torch.from_numpy(v["joints_mm"][v["split"] == split].astype(np.float32))
                     for k, v in sources.items()}
            hyps = {f"flow, T = 1{label}": flow, **drawn}
            truth = batch["joints_3d_mm"].float()
            parts = dict(zip(("occluded", "visible"), joint_masks(batch["visible"], root), strict=True))
            for source, h in hyps.items():
                row = {"model": name, "split": split, "source": source, "items": len(index), "status": status}
                for part, mask in parts.items():
                    row[f"score_{part}"], row[f"inside_90_{part}"] = calibration_scores(
                        calibration_curve(h, truth, mask, CALIBRATION_LEVELS))
                    spread = (h - h.mean(1, keepdim=True)).norm(dim=-1).mean(1)  # (B, J) mean distance to mean
                    row[f"spread_mm_{part}"] = float(spread[mask].mean())
                rows.append(row)
                print(row, flush=True)
    _merge_rows(path, rows, names)


def load_references(reference_model: str, out_dir: Path, option: str) -> dict[int, dict]:
    """The saved draws of ``reference_model``'s references (1 and 2, those present in ``out_dir``); a SystemExit
    naming ``option`` (the table that needs them) when there are none."""
    refs = {r: np.load(out_dir / f"{reference_model}_ref{r}.npz") for r in (1, 2)
            if (out_dir / f"{reference_model}_ref{r}.npz").exists()}
    if not refs:
        raise SystemExit(f"no references of {reference_model} in {out_dir}: run this tool without {option}")
    return refs


def reference_batch(name: str, exp, split: str, index: list[int], truth: torch.Tensor, reference_model: str) -> dict:
    """Model ``name``'s items ``index`` of ``split`` as one batch, checked against the references' saved ``truth``
    (a SystemExit when they are other items: its data must be the reference model's)."""
    batch = default_collate([exp.split(split)[i] for i in index])
    if not torch.allclose(batch["joints_3d_mm"].float(), truth, atol=0.5, rtol=1e-3):
        raise SystemExit(f"{name}'s {split} items are not the reference's: its data must be {reference_model}'s")
    return batch


def decomposition_table(reference_model: str, models: list[str], out_dir: Path, path: Path, split: str = "val",
                        samples: int = 200, seed: int = 0, max_draws: int = 100, label: str = "") -> None:
    """Issue 29's decomposition on ``split``: (a) each reference of ``reference_model`` against the truth,
    (b) each model's S = ``samples`` hypotheses at T = 1 against each reference (its draws taken as the
    truth), and, beside them, the models against the truth; with the energy distance, the spread ratio
    and the mass per depth-flip mode (:data:`DEPTH_BONES`: a body's limbs, a hand's palm and fingers;
    :mod:`mhe.reference.compare`). Rows carry ``model`` = ``reference_model``; other models' rows stay."""
    from mhe.diagnostics import calibration_curve
    from mhe.reference import calibration_against_draws, energy_distance, flip_mass, spread_ratio

    refs = load_references(reference_model, out_dir, "--decomposition")
    first = next(iter(refs.values()))
    pick = first["split"] == split
    index = first["index"][pick].tolist()
    truth_saved = torch.from_numpy(first["truth_mm"][pick].astype(np.float32))
    visible = torch.from_numpy(first["visible"][pick]).bool()
    bones = DEPTH_BONES[visible.shape[1]]
    masks = saved_masks(truth_saved, visible)
    ref_draws = {r: torch.from_numpy(v["joints_mm"][v["split"] == split].astype(np.float32)) for r, v in refs.items()}

    rows = []
    item_set = f"the items of the references{label}"  # the models against the truth: per set of items
    hyps: dict[str, torch.Tensor] = {}
    for name in models:
        model, _, exp = load(name)
        batch = reference_batch(name, exp, split, index, truth_saved, reference_model)
        torch.manual_seed(seed)
        with torch.no_grad():
            hyps[name] = model.predict(batch, samples, 1.0)["xyz_mm"].float()
    sources = {**{f"reference {r}{label}": d for r, d in ref_draws.items()}, **hyps}
    for source, h in sources.items():  # everything against the truth
        row: dict = {"model": reference_model, "split": split, "items": len(index), "item_set": item_set,
                     "source": source, "against": "truth"}
        for part, mask in masks.items():
            row[f"score_{part}"], row[f"inside_90_{part}"] = calibration_scores(
                calibration_curve(h, truth_saved, mask, CALIBRATION_LEVELS))
        rows.append(row)
        print(row, flush=True)
    for r, ref in ref_draws.items():
        halves = flip_mass(ref[:, 0::2], ref[:, 1::2], bones)["tv"]  # the finite-draw floor of the TV
        for name, h in hyps.items():
            row = {"model": reference_model, "split": split, "items": len(index), "item_set": item_set, "source": name,
                   "against": f"reference {r}{label}"}
            energy = energy_distance(h, ref)  # (B, J) mm
            ratio = spread_ratio(h, ref)
            for part, mask in masks.items():
                curve = calibration_against_draws(h, ref, mask, CALIBRATION_LEVELS, max_draws)
                row[f"score_{part}"], row[f"inside_90_{part}"] = calibration_scores(curve)
                row[f"energy_mm_{part}"] = float(energy[mask].mean())
                row[f"spread_ratio_{part}"] = float(ratio[mask].nanmedian())
            flips = flip_mass(h, ref, bones)
            row["flip_tv"] = float(flips["tv"].mean())
            row["flip_tv_floor"] = float(halves.mean())
            row["flip_share_abs_diff"] = float((flips["p_hyp"] - flips["p_ref"]).abs().mean())
            # the limbs whose lesser depth mode holds >= 10 % of the reference: the share of it the model keeps
            minority = torch.minimum(flips["p_ref"], 1 - flips["p_ref"])
            both = minority >= 0.1
            kept = torch.where(flips["p_ref"] < 0.5, flips["p_hyp"], 1 - flips["p_hyp"])
            row["ambiguous_limbs"] = int(both.sum())
            row["minority_mass_ref"] = float(minority[both].mean()) if both.any() else float("nan")
            row["minority_mass_model"] = float(kept[both].mean()) if both.any() else float("nan")
            rows.append(row)
            print(row, flush=True)
    kept: list[dict] = []
    if path.exists():  # rows against other references (another --label) stay
        with open(path, newline="") as fh:
            done = {(r["model"], r["item_set"], r["source"], r["against"]) for r in rows}
            kept = [r for r in csv.DictReader(fh)
                    if (r.get("model") or "body_mhentropy", r["item_set"], r["source"], r["against"]) not in done]
        for r in kept:  # rows written before the model column are the body's
            r["model"] = r.get("model") or "body_mhentropy"
    columns = list(dict.fromkeys(["model"] + [k for r in kept + rows for k in r]))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns, lineterminator="\n", restval="")
        writer.writeheader()
        for r in kept + rows:
            writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})


#: each body's accuracy of record, as the metrics tables measure it: hypotheses per item, their temperature, whether
#: Procrustes-aligned, whether only the ambiguous items count
ACCURACY_PROTOCOL = {17: {"samples": 25, "temperature": 0.8, "aligned": True, "ambiguous_only": True,
                          "measure": "PA-MPJPE of the best of 25, ambiguous bodies"},
                     21: {"samples": 200, "temperature": 0.8, "aligned": False, "ambiguous_only": False,
                          "measure": "MPJPE of the best of 200, all hands"}}


def best_of_groups(errors: torch.Tensor, group: int) -> torch.Tensor:
    """Per-hypothesis errors ``(B, S)`` → the best of each consecutive group of ``group`` hypotheses ``(B, S //
    group)``: the best-of-``group`` error of S // group independent sets of hypotheses (S a multiple of group)."""
    B, S = errors.shape
    if group < 1 or S % group:
        raise ValueError(f"S = {S} hypotheses do not split into groups of {group}")
    return errors.view(B, S // group, group).amin(-1)


def accuracy_table(reference_model: str, models: list[str], out_dir: Path, path: Path, seed: int = 0) -> None:
    """Best-of-S accuracy beside calibration, for the references and the models on the references' items: is a
    calibrated spread bought with accuracy? Each source's hypotheses are split into consecutive sets of the body's
    protocol size (:data:`ACCURACY_PROTOCOL`: bodies 25, PA-aligned, the ambiguous items; hands 200, all items); the
    value is the mean over sets of the best-of-set error, with its standard error over sets. The references' draws
    are T = 1 draws of the target; the models are drawn as their metrics tables draw them (T = 0.8; a body's mode
    first) and at T = 1. Each row also gives the occluded calibration score of the same hypotheses."""
    from mhe.diagnostics import calibration_curve
    from mhe.metrics import mpjpe, pa_mpjpe

    refs = load_references(reference_model, out_dir, "--accuracy")
    first = next(iter(refs.values()))
    draws = first["joints_mm"].shape[1]
    visible_all = torch.from_numpy(first["visible"]).bool()
    protocol = ACCURACY_PROTOCOL[visible_all.shape[1]]
    group = protocol["samples"]
    if draws % group:
        raise SystemExit(f"the references keep {draws} draws per item, not a multiple of the protocol's {group}")
    loaded = {name: load(name) for name in models}
    rows = []
    for split in sorted(set(first["split"].tolist())):
        pick = first["split"] == split
        index = first["index"][pick].tolist()
        truth_saved = torch.from_numpy(first["truth_mm"][pick].astype(np.float32))
        occluded = saved_masks(truth_saved, visible_all[pick])["occluded"]
        sources: dict[str, tuple[float, torch.Tensor]] = {
            f"reference {r}": (1.0, torch.from_numpy(v["joints_mm"][v["split"] == split].astype(np.float32)))
            for r, v in refs.items()}
        subset = None
        for name, (model, _, exp) in loaded.items():
            batch = reference_batch(name, exp, split, index, truth_saved, reference_model)
            if protocol["ambiguous_only"]:
                subset = batch["ambiguous"].bool()
            for temperature in sorted({protocol["temperature"], 1.0}):
                torch.manual_seed(seed)
                with torch.no_grad():  # sets of the protocol's size, each drawn as predict draws them
                    h = torch.cat([model.predict(batch, group, temperature)["xyz_mm"].float()
                                   for _ in range(draws // group)], 1)
                sources[f"{name}, T = {temperature:g}"] = (temperature, h)
        keep = torch.ones(len(index), dtype=torch.bool) if subset is None else subset
        for source, (temperature, h) in sources.items():
            errors = pa_mpjpe(h.double(), truth_saved.double()) if protocol["aligned"] else mpjpe(h.double(),
                                                                                                  truth_saved.double())
            per_set = best_of_groups(errors, group)[keep].mean(0)  # (sets,)
            score, inside = calibration_scores(calibration_curve(h, truth_saved, occluded, CALIBRATION_LEVELS))
            rows.append({"model": reference_model, "split": split, "items": int(keep.sum()), "source": source,
                         "temperature": temperature, "measure": protocol["measure"], "sets": len(per_set),
                         "value_mm": float(per_set.mean()),
                         "sem_mm": float(per_set.std() / len(per_set) ** 0.5) if len(per_set) > 1 else float("nan"),
                         "score_occluded": score, "inside_90_occluded": inside})
            print(rows[-1], flush=True)
    kept: list[dict] = []
    if path.exists():  # other reference models' rows stay
        with open(path, newline="") as fh:
            kept = [r for r in csv.DictReader(fh) if r["model"] != reference_model]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for r in kept + rows:
            writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})


def _nanmax(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isnan(x), -torch.inf, x).amax(-1)


def _nanmin(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isnan(x), torch.inf, x).amin(-1)


def _joints(target: ModelTarget, samples: torch.Tensor, batch: dict) -> torch.Tensor:
    """Root-relative joints in mm (B, C, n, J, 3) of the draws, at the truth's bone length (``predict``'s)."""
    B, C, n, D = samples.shape
    out = []
    for i in range(n):  # one draw of every chain at a time: the target's rows are (item, chain)
        hyp = target.decode(samples[:, :, i].reshape(B * C, D))
        joints = hyp.joints_3d if hasattr(hyp, "joints_3d") else hyp.extras["joints_3d"]
        out.append(joints[:, 0].view(B, C, -1, 3))
    scale = batch["scale"].to(samples)[:, None, None, None, None] * 1000.0
    return torch.stack(out, 2) * scale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["hand_mhentropy", "body_mhentropy"])
    parser.add_argument("--items", type=int, default=100, help="items per split (validation and test)")
    parser.add_argument("--splits", nargs="+", default=["val", "test"])
    parser.add_argument("--references", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=150)
    parser.add_argument("--samples", type=int, default=50, help="draws kept per chain")
    parser.add_argument("--steps", type=int, default=10, help="leapfrog steps per transition")
    parser.add_argument("--keep", type=int, default=100, help="draws stored per item (of chains × samples)")
    parser.add_argument("--chunk", type=int, default=25, help="items sampled together")
    parser.add_argument("--rungs", type=int, default=4, help="replica-exchange rungs per item (1: plain HMC)")
    parser.add_argument("--beta-min", type=float, default=0.1, help="the hottest rung's likelihood weight")
    parser.add_argument("--prior-starts", type=float, default=0.25,
                        help="share of chains whose pose starts at a pose-prior draw (bodies)")
    parser.add_argument("--flip-jumps", action="store_true", help="plain HMC (--rungs 1) where the rotation is "
                        "sampled (hand reference 2): after every transition, a Metropolis jump across the palm's "
                        "depth flip (ModelTarget.flip_jump)")
    parser.add_argument("--cache", default="runs/reference_cache", help="per-item results (resumable runs)")
    parser.add_argument("--label", default="", help="appended to the reference's name in the calibration and "
                        "decomposition tables (e.g. ' (replica exchange)'): two references of a model side by side")
    parser.add_argument("--table", default=None, help="where --calibration / --decomposition write their table "
                        "(default: figures/29_reference_calibration.csv / figures/29_decomposition_validation.csv)")
    parser.add_argument("--cached-only", action="store_true",
                        help="sample nothing: write the outputs from the items already cached")
    parser.add_argument("--status", default="", help="the status column of the rows written (e.g. "
                        "'not converged'); rows of other models already in the CSV are kept, marked provisional")
    parser.add_argument("--out", default="data/reference")
    parser.add_argument("--csv", default="figures/29_reference_diagnostics.csv")
    parser.add_argument("--nuts-check", type=int, default=0, help="validation hands compared with pyro's NUTS "
                        "(only this check runs)")
    parser.add_argument("--nuts-warmup", type=int, default=200)
    parser.add_argument("--nuts-samples", type=int, default=300)
    parser.add_argument("--nuts-depth", type=int, default=8, help="NUTS's maximum tree depth")
    parser.add_argument("--calibration", action="store_true", help="only the calibration table of the references "
                        "already in --out against the truth, beside the flow's (figures/29_reference_calibration.csv)")
    parser.add_argument("--decomposition", nargs="*", metavar="MODEL", default=None,
                        help="only the decomposition table: these models (default: body MHEntropy, NLL, min-of-N) "
                        "against the references of the first of --models (figures/29_decomposition_validation.csv)")
    parser.add_argument("--accuracy", nargs="*", metavar="MODEL", default=None,
                        help="only the accuracy table: the references of the first of --models and these models "
                        "(default: the decomposition's), best-of-S by each body's protocol beside the calibration "
                        "score (figures/29_reference_accuracy.csv)")
    args = parser.parse_args(argv)
    if args.chains < 2 or args.keep < 2:
        parser.error("--chains and --keep must be at least 2 (R-hat compares chains)")
    if args.nuts_check:
        nuts_check(args.models[0], args.nuts_check, args, ROOT / "figures/29_reference_nuts_check.csv")
        return 0
    out_dir = ROOT / args.out
    if args.decomposition is not None:
        models = args.decomposition or DECOMPOSITION_MODELS.get(args.models[0], [args.models[0]])
        decomposition_table(args.models[0], models, out_dir,
                            ROOT / (args.table or "figures/29_decomposition_validation.csv"), label=args.label)
        return 0
    if args.accuracy is not None:
        models = args.accuracy or DECOMPOSITION_MODELS.get(args.models[0], [args.models[0]])
        accuracy_table(args.models[0], models, out_dir, ROOT / (args.table or "figures/29_reference_accuracy.csv"))
        return 0
    if args.calibration:
        calibration_table(args.models, out_dir, ROOT / (args.table or "figures/29_reference_calibration.csv"),
                          status=args.status, label=args.label)
        return 0
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = ROOT / args.cache / settings_tag(args)
    rows: list[dict] = []
    for name in args.models:
        model, cfg, exp = load(name)
        for reference in args.references:
            saved: dict[str, list] = {"joints_mm": [], "truth_mm": [], "visible": [], "split": [], "index": []}
            for split in args.splits:
                data = exp.split(split)
                count = min(args.items, len(data))
                for lo in range(0, count, args.chunk):
                    idx = list(range(lo, min(count, lo + args.chunk)))
                    files = [cache / f"{name}_ref{reference}_{split}_{i}.npz" for i in idx]
                    if args.cached_only:
                        idx = [i for i, f in zip(idx, files, strict=True) if f.exists()]
                        files = [f for f in files if f.exists()]
                    elif not all(f.exists() for f in files):  # resumable: sampled unless all its items are cached
                        batch = default_collate([data[i] for i in idx])
                        res = run_chunk(model, cfg, batch, reference, args, seed=1000 * reference + lo)
                        cache.mkdir(parents=True, exist_ok=True)
                        for k, f in enumerate(files):
                            np.savez(f, joints=res["joints"][k], visible=batch["visible"][k].numpy(),
                                     truth=batch["joints_3d_mm"][k].numpy().astype(np.float16),
                                     **{c: np.float64(res[c][k] if torch.is_tensor(res[c]) else res[c])
                                        for c in COLUMNS[4:-2]})
                        print(f"{name} ref{reference} {split} items {idx[0]}-{idx[-1]}: R-hat occluded median "
                              f"{float(res['rhat_occluded'].median()):.3f}, accept {float(res['accept'].mean()):.2f}, "
                              f"{res['seconds'] * len(idx):.0f} s", flush=True)
                    for i, f in zip(idx, files, strict=True):
                        item = np.load(f)
                        saved["joints_mm"].append(item["joints"][None])
                        saved["truth_mm"].append(item["truth"][None])
                        saved["visible"].append(item["visible"][None])
                        saved["split"].append(split)
                        saved["index"].append(i)
                        rows.append({"model": name, "reference": reference, "split": split, "item": i,
                                     **{c: float(item[c]) if c in item.files else float("nan")
                                        for c in COLUMNS[4:-2]}, "status": args.status})
            np.savez_compressed(out_dir / f"{name}_ref{reference}.npz",
                                joints_mm=np.concatenate(saved["joints_mm"]),
                                truth_mm=np.concatenate(saved["truth_mm"]), visible=np.concatenate(saved["visible"]),
                                split=np.array(saved["split"]), index=np.array(saved["index"]))
            _merge_csv(ROOT / args.csv, rows, args.models, args.references)
    return 0


def settings_tag(args) -> str:
    """The sampler's settings as a folder name, so that cached items of other settings are never mixed in."""
    return (f"c{args.chains}_k{args.rungs}_b{args.beta_min:g}_w{args.warmup}_s{args.samples}_l{args.steps}"
            f"_p{args.prior_starts:g}_keep{args.keep}_chunk{args.chunk}" + ("_jumps" if args.flip_jumps else ""))


def _merge_rows(path: Path, rows: list[dict], models: list[str]) -> None:
    """Writes ``rows`` over the CSV's rows with the same model, split and source (its columns extended by a
    ``status`` column), keeping the others, marked provisional where they carry no status."""
    key = ("model", "split", "source")
    new_keys = {tuple(str(r[k]) for k in key) for r in rows}
    kept: list[dict] = []
    if path.exists():
        with open(path, newline="") as fh:
            kept = [r for r in csv.DictReader(fh) if tuple(r[k] for k in key) not in new_keys]
    for r in kept:
        r["status"] = r.get("status") or "provisional"
    columns = list(dict.fromkeys([k for r in kept + rows for k in r if k != "status"] + ["status"]))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns, lineterminator="\n", restval="")
        writer.writeheader()
        for r in kept + rows:
            writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})


def converged(row: dict) -> str:
    """"yes" where the item's worst occluded coordinate (all joints where none is occluded) and log p̃ reach
    R-hat <= :data:`RHAT_CONVERGED` and bulk ESS >= :data:`ESS_CONVERGED`, else "no"."""
    def value(key: str, fallback: str) -> float:
        v = float(row.get(key) or "nan")
        return v if np.isfinite(v) else float(row.get(fallback) or "nan")

    rhat = max(value("rhat_occluded", "rhat_max"), value("rhat_log_p", "rhat_log_p"))
    ess = min(value("ess_occluded", "ess_bulk_min"), value("ess_log_p", "ess_log_p"))
    return "yes" if rhat <= RHAT_CONVERGED and ess >= ESS_CONVERGED else "no"


def _merge_csv(path: Path, rows: list[dict], models: list[str], references: list[int]) -> None:
    """Writes ``rows`` over the CSV's rows of ``models`` and ``references`` from the same sampler (``status``),
    keeping the other rows (marked provisional where they carry no status): each reference of a model may come
    from its own run, and runs of another sampler stay beside it."""
    kept: list[dict] = []
    statuses = {r.get("status", "") for r in rows}
    if path.exists():
        with open(path, newline="") as fh:
            for r in csv.DictReader(fh):
                if r["model"] not in models or int(r["reference"]) not in references or r["status"] not in statuses:
                    r["status"] = r.get("status") or "provisional"
                    kept.append(r)
    for r in kept + rows:
        r["converged"] = converged(r)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS, lineterminator="\n", restval="")
        writer.writeheader()
        for r in kept + rows:
            writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items() if k in COLUMNS})


if __name__ == "__main__":
    sys.exit(main())
