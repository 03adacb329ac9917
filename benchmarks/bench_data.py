"""Data and metrics speed: synthetic hands per second -- one by one (``generate``, what a DataLoader
without a cache does) and a whole split at once (``cache_dir``: ``generate_many`` plus the save), with
and without 64-px images --, their occlusion per finger, HO3D items per second on the generated fake
folder, and mhe.metrics.evaluate at B = 1000 images, S = 200 hypotheses, J = 21 joints. The image
models' data path: a cached split of 64 / 128 px crops generated and written (``cache_dir``), read
back from disk, and served through a training DataLoader (batch 64, collation included), beside
the training items/s of the image models (``benchmarks/bench_train.py``). Prints measured numbers."""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import torch
from torch.utils.data import DataLoader

from mhe import metrics
from mhe.body import HAND_ROOT, load_mano
from mhe.data import HO3D, SyntheticHands, occlusion_stats, write_fake_ho3d


def rate(dataset, n: int) -> float:
    dataset[0]  # warm-up (allocations, caches)
    start = time.perf_counter()
    for i in range(1, n + 1):
        dataset[i % len(dataset)]
    return n / (time.perf_counter() - start)


def split_rate(mano, size: int, images: bool) -> float:
    """Items per second of a first ``mhe train``: the whole training split generated into a fresh cache."""
    SyntheticHands("train", size=64, images=images, mano=mano).generate_many()  # warm-up
    with tempfile.TemporaryDirectory() as cache:
        ds = SyntheticHands("train", size=size, images=images, image_size=64, mano=mano, cache_dir=cache,
                            progress=False)
        start = time.perf_counter()
        ds[0]
        return size / (time.perf_counter() - start)


def cached_image_path(mano, size: int, image_size: int) -> dict[str, float]:
    """The image models' data path on a fresh cache of ``size`` crops: items/s generating and writing the
    split, seconds reading it back, and items/s of a shuffled training DataLoader (batch 64) over it."""
    with tempfile.TemporaryDirectory() as cache:
        ds = SyntheticHands("train", size=size, images=True, image_size=image_size, mano=mano, cache_dir=cache,
                            progress=False)
        start = time.perf_counter()
        ds[0]
        gen = size / (time.perf_counter() - start)
        ds = SyntheticHands("train", size=size, images=True, image_size=image_size, mano=mano, cache_dir=cache,
                            progress=False)
        start = time.perf_counter()
        ds[0]
        read = time.perf_counter() - start
        loader = DataLoader(ds, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
        start = time.perf_counter()
        n = sum(len(batch["image"]) for batch in loader)
        served = n / (time.perf_counter() - start)
    return {"generate": gen, "read_s": read, "loader": served}


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__)
    parser.add_argument("--items", type=int, default=100, help="items timed per configuration")
    parser.add_argument("--split-items", type=int, default=8192, help="whole split timed without images")
    parser.add_argument("--image-split-items", type=int, default=1024, help="whole split timed with images")
    parser.add_argument("--stats-items", type=int, default=1000, help="items behind the occlusion table")
    # One-by-one items are many small tensor ops (threads barely help; DataLoader workers do); the
    # whole-split path batches them, and its larger ops use both threads of a 2-core machine.
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mano = load_mano()
    print(f"torch threads: {args.threads}; MANO: {'stand-in' if mano.is_standin else 'real'}")

    for images, size in ((False, 64), (True, 64), (True, 128)):
        ds = SyntheticHands("train", size=10_000, images=images, image_size=size, mano=mano)
        label = f"images {size}px" if images else "no images"
        print(f"SyntheticHands one by one ({label}): {rate(ds, args.items):.0f} items/s")
    for images, n in ((False, args.split_items), (True, args.image_split_items)):
        label = "images 64px" if images else "no images"
        print(f"SyntheticHands whole split of {n:,} ({label}): {split_rate(mano, n, images):.0f} items/s")

    for image_size in (64, 128):
        r = cached_image_path(mano, args.image_split_items, image_size)
        print(f"cached {image_size}px crops, split of {args.image_split_items:,}: generated and written "
              f"{r['generate']:.0f} items/s, read back in {r['read_s']:.2f} s, DataLoader (batch 64) "
              f"{r['loader']:.0f} items/s (the CPU image model trains at ~100-200 items/s on one core)")

    from mhe.data import SyntheticBodies

    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as body_cache:
        warnings.simplefilter("ignore")
        SyntheticBodies("train", size=64).generate_many(range(64))  # warm-up (SMPL, joint limits)
        bodies = SyntheticBodies("train", size=args.split_items, cache_dir=body_cache, progress=False)
        start = time.perf_counter()
        bodies[0]
        print(f"SyntheticBodies whole split of {args.split_items:,}: "
              f"{args.split_items / (time.perf_counter() - start):.0f} items/s")

    cache = tempfile.TemporaryDirectory()
    ds = SyntheticHands("test", size=args.stats_items, mano=mano, cache_dir=cache.name, progress=False)
    per_finger = occlusion_stats(ds, by="finger")
    print(f"\nOcclusion over {args.stats_items} test items (occlusion=0.3): fraction of joints hidden")
    print(per_finger[["occluded", "object", "self", "outside"]].round(3).to_string())
    joints = occlusion_stats(ds)
    non_root = joints.drop(index=joints.index[HAND_ROOT])
    print(f"all non-root joints: {non_root['occluded'].mean():.3f} occluded, "
          f"{non_root['object'].mean():.3f} by the object")
    cache.cleanup()

    with tempfile.TemporaryDirectory() as root:
        write_fake_ho3d(root, frames_per_sequence=4)
        for images in (False, True):
            ho3d = HO3D(root, split="all", images=images)
            print(f"HO3D fake 320x240 frames (images={images}): {rate(ho3d, args.items // 4):.0f} items/s")

    B, S, J = 1000, 200, 21
    g = torch.Generator().manual_seed(0)
    pred_xyz, gt_xyz = torch.randn(B, S, J, 3, generator=g) * 20, torch.randn(B, J, 3, generator=g) * 20
    pred_uv, gt_uv = torch.randn(B, S, J, 2, generator=g) * 10, torch.randn(B, J, 2, generator=g) * 10
    visible = torch.rand(B, J, generator=g) < 0.6
    metrics.evaluate(pred_xyz[:10], gt_xyz[:10], pred_uv[:10], gt_uv[:10], visible[:10], HAND_ROOT)
    start = time.perf_counter()
    metrics.evaluate(pred_xyz, gt_xyz, pred_uv, gt_uv, visible, HAND_ROOT)
    total = time.perf_counter() - start
    start = time.perf_counter()
    metrics.pa_mpjpe(pred_xyz.double(), gt_xyz.double())
    pa = time.perf_counter() - start
    print(f"\nmetrics.evaluate B={B} S={S} J={J}: {total:.2f} s (of which PA-MPJPE {pa:.2f} s)")


if __name__ == "__main__":
    main()
