"""SMPL keypoints without the mesh: forward+backward of ``BodyModel.keypoints`` vs the full ``forward``.

Run: ``python benchmarks/bench_smpl_keypoints.py [--batch 512] [--device cpu|cuda] [--threads N] [--repeats 7]
[--json PATH]``. Times, after a warm-up, the median over repeats of one forward+backward pass of B random
poses and shapes: the full mesh (``forward``, gradients through its joints) and the keypoints-only path
for the 17 body keypoints (``keypoints(joints=SMPL_TO_BODY)``), and prints both in milliseconds with the
speed-up. ``--json`` also writes them to a file. Uses the stand-in SMPL unless a real file is present
(the cost is the same: the arrays have the real shapes).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch
from bench_body import median_ms  # the benchmarks' one timing helper (same folder)

from mhe.body import SMPL_TO_BODY, load_smpl
from mhe.utils import default_device, seed_everything


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--json", type=Path, default=None, help="also write the timings to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = default_device(args.device)
    dtype = getattr(torch, args.dtype)
    seed_everything(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stand-in notice
        smpl = load_smpl(dtype=dtype).to(device)
    B = args.batch
    go = (0.5 * torch.randn(B, 3, device=device, dtype=dtype)).requires_grad_(True)
    pose = (0.3 * torch.randn(B, 69, device=device, dtype=dtype)).requires_grad_(True)
    betas = (0.5 * torch.randn(B, 10, device=device, dtype=dtype)).requires_grad_(True)
    sel = torch.as_tensor(SMPL_TO_BODY, device=device)

    def full():
        smpl(go, pose, betas).joints[:, sel].square().sum().backward()

    def keypoints():
        smpl.keypoints(go, pose, betas, joints=SMPL_TO_BODY).square().sum().backward()

    def keypoints_all():
        smpl.keypoints(go, pose, betas).square().sum().backward()

    results = {
        "device": str(device), "threads": torch.get_num_threads(), "batch": B, "dtype": args.dtype,
        "standin": smpl.is_standin, "repeats": args.repeats,
        "forward_backward_ms": {
            "forward (mesh)": median_ms(full, args.repeats, device),
            "keypoints (17 body)": median_ms(keypoints, args.repeats, device),
            "keypoints (all 45)": median_ms(keypoints_all, args.repeats, device),
        },
    }
    ms = results["forward_backward_ms"]
    results["speedup_17"] = ms["forward (mesh)"] / ms["keypoints (17 body)"]
    results["speedup_45"] = ms["forward (mesh)"] / ms["keypoints (all 45)"]
    print(f"device {device}, threads {results['threads']}, B = {B}, {args.dtype}, stand-in: {smpl.is_standin}")
    for name, value in ms.items():
        print(f"{name:20s} forward+backward {value:8.2f} ms")
    print(f"keypoints-only speed-up: {results['speedup_17']:.1f}x (17 body keypoints), "
          f"{results['speedup_45']:.1f}x (all 45)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
