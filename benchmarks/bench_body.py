"""Forward and forward+backward timings of the body models at B = 512 (stand-ins unless real files exist).

Run: ``python benchmarks/bench_body.py [--batch 512] [--device cpu|cuda] [--threads N]``. Prints the
median over repeats, in milliseconds, for MANO with 45 PCA coefficients, MANO in axis-angle, and SMPL.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from mhe.body import load_mano, load_smpl
from mhe.utils import default_device, seed_everything


def median_ms(fn, repeats: int, device: torch.device, warmup: int = 2) -> float:
    """Median wall time of ``fn`` in milliseconds after ``warmup`` calls (allocator, lazy init), CUDA
    synchronised around each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = default_device(args.device)
    seed_everything(0)
    B = args.batch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stand-in notice
        models = {
            "MANO PCA-45": load_mano().to(device),
            "MANO axis-angle": load_mano(use_pca=False).to(device),
            "SMPL": load_smpl().to(device),
        }
    print(f"device {device}, threads {torch.get_num_threads()}, B = {B}, "
          f"stand-in: {all(m.is_standin for m in models.values())}")
    for name, model in models.items():
        width = 69 if name == "SMPL" else model.num_pose_params
        go = (0.5 * torch.randn(B, 3, device=device)).requires_grad_(True)
        pose = (0.5 * torch.randn(B, width, device=device)).requires_grad_(True)
        betas = (0.1 * torch.randn(B, 10, device=device)).requires_grad_(True)

        def forward(model=model, go=go, pose=pose, betas=betas):
            with torch.no_grad():
                model(go, pose, betas)

        def forward_backward(model=model, go=go, pose=pose, betas=betas):
            out = model(go, pose, betas)
            (out.joints.square().sum() + out.vertices.square().sum()).backward()

        reps = max(2, args.repeats // 2) if name == "SMPL" else args.repeats
        fwd = median_ms(forward, reps, device)
        fb = median_ms(forward_backward, reps, device)
        print(f"{name:16s} forward {fwd:8.1f} ms   forward+backward {fb:8.1f} ms")
        if hasattr(model, "keypoints"):
            # the keypoints-only path the hand model trains with (no 778-vertex mesh)

            def kp_forward(model=model, go=go, pose=pose, betas=betas):
                with torch.no_grad():
                    model.keypoints(go, pose, betas)

            def kp_forward_backward(model=model, go=go, pose=pose, betas=betas):
                model.keypoints(go, pose, betas).square().sum().backward()

            kfwd = median_ms(kp_forward, reps, device)
            kfb = median_ms(kp_forward_backward, reps, device)
            print(f"{name + ' kp':16s} forward {kfwd:8.1f} ms   forward+backward {kfb:8.1f} ms   "
                  f"(keypoints only: {fb / kfb:.1f}x faster with backward)")


if __name__ == "__main__":
    main()
