"""Training throughput (items/s) and peak memory for a registered experiment.

    python benchmarks/bench_train.py [--config hand_mhentropy] [key=value ...] [--steps 20] [--device cuda]

Builds the experiment that ``data.dataset`` names (``mhe.lab.builders.build_experiment``), then times
``Trainer.train_step`` (forward with S hypotheses, backward, clipping, Adam) on batches prepared in
advance, so data loading is measured separately: the one-off load (or generation) of the cached split,
then the items/s of the trainer's DataLoader over it (collation included), set beside the training
items/s (``data / train``: above 1 means the data path keeps up). ``--keep-train-size`` times the
config's whole training split (e.g. the cached 8,192 image crops) instead of just enough items. When no
builder for the dataset can be imported, a
stand-in experiment (an MLP Gaussian over D = 45 on 21 keypoints) is timed instead, and the output says
so. Peak memory: ``torch.cuda.max_memory_allocated`` on CUDA, the process's peak RSS on CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mhe.config import ObjectiveConfig  # noqa: E402
from mhe.lab.builders import Experiment, build_experiment  # noqa: E402
from mhe.lab.config_io import load_config  # noqa: E402
from mhe.lab.train import Trainer  # noqa: E402
from mhe.utils import seed_everything  # noqa: E402


class _StandInData(Dataset):
    """Random 2D keypoints with visibility, the shapes of the hand benchmark: obs (21, 2), visible (21,)."""

    def __init__(self, size: int, k: int = 21) -> None:
        g = torch.Generator().manual_seed(0)
        self.obs = torch.rand(size, k, 2, generator=g) * 2 - 1
        self.visible = torch.rand(size, k, generator=g) > 0.4

    def __len__(self) -> int:
        return len(self.obs)

    def __getitem__(self, i: int) -> dict:
        return {"obs": self.obs[i], "visible": self.visible[i]}


class _StandInModel(nn.Module):
    """q(θ | obs) = N(μ, diag σ²) over D = 45 from an MLP on (obs · visible, visible)."""

    def __init__(self, k: int = 21, d: int = 45, hidden: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3 * k, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 2 * d))
        self.readout = nn.Linear(d, 2 * k)

    def forward(self, batch: dict, num_samples: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        vis = batch["visible"].float()
        mu, log_s = self.net(torch.cat([(batch["obs"] * vis[..., None]).flatten(1), vis], 1)).chunk(2, -1)
        eps = torch.randn(mu.shape[0], num_samples, mu.shape[1], device=mu.device)
        theta = mu[:, None] + log_s.exp()[:, None] * eps
        log_q = (-0.5 * eps**2 - log_s[:, None] - 0.5 * math.log(2 * math.pi)).sum(-1)
        return theta, log_q, self.readout(theta).view(*theta.shape[:2], -1, 2)


def _standin_objective(model: _StandInModel, batch: dict, num_samples: int = 10) -> tuple:
    # the MHEntropy shape of loss: Laplace reconstruction on visible keypoints + entropy
    _, log_q, pred = model(batch, num_samples)
    rec = ((pred - batch["obs"][:, None]).abs().sum(-1) * batch["visible"][:, None]).sum(-1).mean() / 0.03
    loss = rec + log_q.mean()
    return loss, {"reconstruction": rec.item()}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure(config: str = "hand_mhentropy", overrides: list[str] | tuple[str, ...] = (), *, steps: int = 20,
            warmup: int = 3, batch_size: int = 64, samples: int = 10, device: str | None = None,
            keep_train_size: bool = False, data_batches: int | None = None) -> dict:
    """Time ``steps`` training steps of ``config`` (after ``warmup``) and its data path; the numbers as a dict.

    ``data_batches``: batches the DataLoader is timed over (default: steps + warmup)."""
    overrides = [*overrides, f"train.batch_size={batch_size}", f"train.num_samples={samples}",
                 "train.progress=false"]
    if device:
        overrides.append(f"device={device}")
    cfg = load_config(config, overrides)
    n_batches = max(steps + warmup, data_batches or 0)
    if not keep_train_size:
        cfg.data.train_size = batch_size * n_batches  # just enough items: generating more would only time the data
    seed_everything(cfg.seed)
    objective = None
    start = time.perf_counter()
    try:
        exp = build_experiment(cfg)  # reads the cached splits (generating and writing them when absent)
        what = f"experiment {cfg.data.dataset!r} ({cfg.model.encoder} encoder, objective {cfg.objective.name})"
        if cfg.data.images:
            what += f", {cfg.model.image_size} px crops"
    except (ImportError, ValueError) as e:  # no builder yet, or one whose dependencies have not landed
        print(f"[bench] cannot build {cfg.data.dataset!r} ({type(e).__name__}: {e}); timing a stand-in instead")
        exp = Experiment(_StandInModel(), _StandInData(batch_size * n_batches))
        objective = _standin_objective
        cfg.objective = ObjectiveConfig(name="stand-in", b=None)
        what = "stand-in MLP Gaussian (D = 45, K = 21)"
    exp.train_set[0]  # a cached split is read (or generated and written) on first access
    build_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        cfg.train.out_dir = tmp
        trainer = Trainer.from_config(exp.model, exp.train_set, cfg, objective=objective)
        device_ = trainer.device
        start = time.perf_counter()
        batches = []
        epoch = 0
        while len(batches) < n_batches:
            for batch in trainer.train_loader(epoch):
                batches.append(batch)
                if len(batches) == n_batches:
                    break
            epoch += 1
        load_s = time.perf_counter() - start

        for batch in batches[:warmup]:
            trainer.train_step(batch)
        if device_.type == "cuda":
            torch.cuda.synchronize(device_)
            torch.cuda.reset_peak_memory_stats(device_)
        rss_before = _rss_mb()
        start = time.perf_counter()
        for batch in batches[warmup:warmup + steps]:
            trainer.train_step(batch)
        if device_.type == "cuda":
            torch.cuda.synchronize(device_)
        step_s = (time.perf_counter() - start) / steps

    items_s = batch_size / step_s
    data_items_s = len(batches) * batch_size / load_s
    result = {
        "what": what,
        "config": config,
        "device": str(device_) + (f" ({torch.cuda.get_device_name(device_)})" if device_.type == "cuda" else ""),
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "num_samples": samples,
        "step_ms": 1000 * step_s,
        "items_per_s": items_s,
        "hypotheses_per_s": items_s * samples,
        "train_items": len(exp.train_set),  # type: ignore[arg-type]
        "build_s": build_s,
        "data_items_per_s": data_items_s,
        "data_over_train": data_items_s / items_s,
        "parameters": sum(p.numel() for p in exp.model.parameters()),
    }
    if device_.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device_) / 2**20
    else:
        # ru_maxrss is the process's high-water mark in KiB on Linux
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["rss_before_timing_mb"] = rss_before
    return result


def report(result: dict) -> None:
    """Print the numbers of :func:`measure`."""
    print(f"[bench] {result['what']} on {result['device']}, {result['threads']} thread(s), "
          f"Python {platform.python_version()}")
    print(f"[bench] batch {result['batch_size']}, S = {result['num_samples']}: {result['step_ms']:.1f} ms/step, "
          f"{result['items_per_s']:.1f} items/s ({result['hypotheses_per_s']:.0f} hypotheses/s)")
    print(f"[bench] data: experiment with {result['train_items']:,} cached training items built in "
          f"{result['build_s']:.1f} s "
          f"(splits read, or generated and written); then "
          f"{result['data_items_per_s']:.0f} items/s through the DataLoader = "
          f"{result['data_over_train']:.1f} x the training items/s")
    if "peak_cuda_mb" in result:
        print(f"[bench] peak CUDA memory {result['peak_cuda_mb']:.1f} MiB")
    else:
        print(f"[bench] peak RSS {result['peak_rss_mb']:.0f} MiB "
              f"(before timing {result['rss_before_timing_mb']:.0f} MiB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="hand_mhentropy", help="YAML or packaged config name")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=10, help="hypotheses S per item")
    parser.add_argument("--device", help="cpu, cuda, ... (default: CUDA when present)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--keep-train-size", action="store_true",
                        help="time the data over the config's whole (cached) training split")
    parser.add_argument("--data-batches", type=int, help="batches the DataLoader is timed over")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    result = measure(args.config, args.overrides, steps=args.steps, warmup=args.warmup, batch_size=args.batch_size,
                     samples=args.samples, device=args.device, keep_train_size=args.keep_train_size,
                     data_batches=args.data_batches)
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
