"""The GPU check: one short step on a CUDA machine that writes ONE JSON of numbers.

    benchmarks/gpu_check.sh                      # on the GPU machine (CUDA torch; torchvision for ResNet)
    benchmarks/gpu_check.sh --device cpu --dry-run --out /tmp/gpu_check.json   # the CPU dry run (~30 s)

Stages, each timed and recorded even when another fails (the exit status is 1 when any failed):

1. ``environment``: torch / CUDA / torchvision versions, the GPUs.
2. ``cuda_tests``: the CUDA-marked tests (``pytest -m cuda`` on the test files that use the marker; on a
   machine without CUDA they are skipped, which the dry run checks is all they do).
3. ``throughput``: ``benchmarks/bench_train.py``'s measurement (training items/s, hypotheses/s, peak
   memory, the data path's items/s) for the keypoint model (``hand_mhentropy``), the CPU image model
   (``hand_mhentropy_image``) and the GPU image config (``hand_mhentropy_image_gpu``).
4. ``ddp``: ``torchrun --nproc_per_node N -m mhe.lab.cli train`` of the GPU image config for a few steps on
   the N visible GPUs (NCCL); with fewer than two GPUs (or ``--device cpu``) two Gloo processes on the CPU
   instead, so DistributedDataParallel itself is still exercised; steps/s and the world size.
5. ``gpu_config``: a few hundred steps (``--gpu-steps``) of ``hand_mhentropy_image_gpu``, then its
   validation metrics (the first ``--val-items`` validation crops): loss at start and end, steps/s,
   images/s, peak memory.

Without torchvision (the ResNet encoder's dependency) the GPU config's stages run with the CNN encoder
instead and the JSON says so (``encoder_substituted``). ``--dry-run`` shrinks every size so the whole
check runs in well under a minute on a CPU (tests/test_image_models.py runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402

KEYPOINT_CONFIG = "hand_mhentropy"
IMAGE_CONFIG = "hand_mhentropy_image"
GPU_CONFIG = "hand_mhentropy_image_gpu"

# what --dry-run changes: tiny splits, models and runs (the configs' structure stays)
TINY_DATA = ["data.train_size=32", "data.val_size=8", "data.test_size=8"]
TINY_MODEL = ["model.context_dim=16", "model.flow_transforms=2", "model.flow_hidden=[16]", "model.head_hidden=16"]


def torchvision_status() -> tuple[bool, str]:
    """Whether ``torchvision.models`` imports here, and its version or the error."""
    try:
        import torchvision
        import torchvision.models  # noqa: F401
    except Exception as e:  # noqa: BLE001 - a wheel built against another torch raises more than ImportError
        return False, f"{type(e).__name__}: {e}".splitlines()[0][:300]
    return True, str(torchvision.__version__)


def gpu_overrides(args: argparse.Namespace, have_torchvision: bool) -> list[str]:
    """Overrides for the GPU config: the CNN in place of the ResNet without torchvision; tiny in a dry run."""
    out: list[str] = []
    if not have_torchvision:
        out.append("model.encoder=cnn")
    if args.dry_run:
        out += ["model.image_size=32", "model.cnn_channels=[8,8]", *TINY_MODEL, *TINY_DATA]
    return out


def stage_environment(args: argparse.Namespace) -> dict[str, Any]:
    ok, tv = torchvision_status()
    out: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "device": args.device,
        "gpus": [],
        "torchvision": tv if ok else None,
        "torchvision_error": None if ok else tv,
        "cpu_threads": torch.get_num_threads(),
        "dry_run": bool(args.dry_run),
    }
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out["gpus"].append({"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                                "capability": f"{p.major}.{p.minor}"})
    return out


def cuda_test_files() -> list[str]:
    """The test files that use the ``cuda`` marker."""
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py")
                  if "pytest.mark.cuda" in p.read_text())


def stage_cuda_tests(args: argparse.Namespace) -> dict[str, Any]:
    files = cuda_test_files()
    if not files:
        return {"files": [], "passed": 0, "failed": 0, "skipped": 0, "note": "no test uses the cuda marker"}
    # without hypothesis's plugin, which imports hypothesis at the end of every run (~1.5 s; no CUDA test uses it)
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-p", "no:xdist", "-p", "no:cacheprovider",
           "-p", "no:hypothesispytest", "-q", "-rs", *files]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=args.stage_timeout)
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    summary = next((line for line in reversed(tail) if re.search(r"\b(passed|failed|skipped|deselected|error)", line)),
                   tail[-1] if tail else "")
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?)", summary)}
    failed = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    out = {"files": files, "command": " ".join(cmd[1:]), "returncode": proc.returncode, "summary": summary,
           "passed": counts.get("passed", 0), "failed": failed, "skipped": counts.get("skipped", 0),
           "deselected": counts.get("deselected", 0)}
    # pytest exits 5 when every collected test was deselected: nothing failed
    if proc.returncode not in (0, 5) or failed:
        out["output_tail"] = "\n".join(tail[-40:])
        raise StageFailed(f"CUDA tests failed: {summary}", out)
    if torch.cuda.is_available() and args.device != "cpu" and out["passed"] == 0:
        raise StageFailed("CUDA is available but no CUDA test ran", out)
    return out


def stage_throughput(args: argparse.Namespace) -> dict[str, Any]:
    import bench_train

    have_tv, _ = torchvision_status()
    if args.dry_run:
        size = dict(steps=2, warmup=1, batch_size=4, samples=2)
        runs = {
            "keypoint": (KEYPOINT_CONFIG, [*TINY_MODEL, "model.encoder_hidden=[16]"]),
            "image_cpu_config": (IMAGE_CONFIG, [*TINY_MODEL, "model.image_size=32", "model.cnn_channels=[8,8]"]),
            "image_gpu_config": (GPU_CONFIG, gpu_overrides(args, have_tv)),
        }
    else:
        size = dict(steps=args.bench_steps, warmup=5, batch_size=64, samples=10)
        runs = {
            "keypoint": (KEYPOINT_CONFIG, []),
            "image_cpu_config": (IMAGE_CONFIG, []),
            "image_gpu_config": (GPU_CONFIG, gpu_overrides(args, have_tv)),
        }
    out: dict[str, Any] = {}
    for key, (config, overrides) in runs.items():
        r = bench_train.measure(config, overrides, device=args.device, **size)
        r["overrides"] = overrides
        if key == "image_gpu_config" and not have_tv:
            r["encoder_substituted"] = "cnn (torchvision missing)"
        out[key] = r
        if args.device != "cpu" and torch.cuda.is_available():
            torch.cuda.empty_cache()
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stage_ddp(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    have_tv, _ = torchvision_status()
    gpus = torch.cuda.device_count() if (torch.cuda.is_available() and args.device != "cpu") else 0
    if gpus >= 2:
        nproc, device, backend = gpus, "cuda", "nccl"
    else:
        nproc, device, backend = 2, "cpu", "gloo"
    steps = 4 if args.dry_run else args.ddp_steps
    if device == "cuda":
        overrides = gpu_overrides(args, have_tv)
    else:  # Gloo on the CPU: the GPU config with the CNN on small crops, so that it stays short
        overrides = gpu_overrides(args, False) + ([] if args.dry_run else ["model.image_size=64",
                                                                          "data.train_size=1024"])
    out_dir = work / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
           str(_free_port()), "-m", "mhe.lab.cli", "train", "--config", GPU_CONFIG, "--overwrite", "--no-progress",
           f"device={device}", f"train.steps={steps}", "train.eval_every=0", f"train.out_dir={out_dir}",
           "train.checkpoint_minutes=0", *overrides]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=args.stage_timeout, env=env)
    wall = time.perf_counter() - start
    text = proc.stdout + proc.stderr
    m = re.search(r"(\d+) steps \((\d+) epochs\) in ([\d.]+) s on (\d+) process", text)
    out: dict[str, Any] = {"backend": backend, "device": device, "world_size": nproc, "steps": steps,
                           "command": " ".join(cmd[1:]), "returncode": proc.returncode, "wall_s": wall,
                           "overrides": overrides}
    if proc.returncode != 0 or m is None:
        out["output_tail"] = "\n".join(text.strip().splitlines()[-40:])
        raise StageFailed(f"DDP run failed (exit {proc.returncode})", out)
    done, seconds, world = int(m.group(1)), float(m.group(3)), int(m.group(4))
    batch = 4 if args.dry_run else 64
    out.update({"steps_done": done, "train_s": seconds, "processes": world, "steps_per_s": done / seconds,
                "images_per_s": done * batch * world / seconds})
    if world != nproc:
        raise StageFailed(f"torchrun started {nproc} processes but training ran on {world}", out)
    return out


def stage_gpu_config(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from mhe.lab.config_io import load_config
    from mhe.lab.experiments import train_experiment

    have_tv, _ = torchvision_status()
    steps = 3 if args.dry_run else args.gpu_steps
    overrides = [*gpu_overrides(args, have_tv), f"train.steps={steps}", "train.eval_every=0",
                 f"train.out_dir={work / 'gpu_config'}", "train.progress=false", "train.checkpoint_minutes=0",
                 f"train.eval_max_items={4 if args.dry_run else args.val_items}"]
    if not args.dry_run:
        overrides.append(f"data.train_size={args.gpu_train_size}")
    if args.device:
        overrides.append(f"device={args.device}")
    cfg = load_config(GPU_CONFIG, overrides)
    cuda = torch.cuda.is_available() and args.device != "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = train_experiment(cfg, overwrite=True)
    wall = time.perf_counter() - start
    # validation once at the end, as the trainer does (eval_every=0 kept it out of the timed loop)
    from mhe.evaluation import evaluate_model
    from mhe.lab.builders import build_experiment
    from mhe.lab.checkpoint import load_checkpoint, load_model_state
    from mhe.lab.train import Trainer

    exp = build_experiment(cfg)
    load_model_state(exp.model, load_checkpoint(result.checkpoint), source=str(result.checkpoint))
    trainer = Trainer.from_config(exp.model, exp.train_set, cfg, val_set=exp.val_set, evaluate_fn=evaluate_model)
    val_start = time.perf_counter()
    metrics = trainer.validate()
    val_s = time.perf_counter() - val_start
    log = [json.loads(line) for line in (work / "gpu_config" / "log.jsonl").read_text().splitlines() if line.strip()]
    losses = [row["loss"] for row in log if row.get("kind") == "train" and "loss" in row]
    out: dict[str, Any] = {
        "config": GPU_CONFIG, "overrides": overrides, "steps": result.step, "train_s": result.seconds,
        "wall_s_including_data": wall, "steps_per_s": result.step / result.seconds,
        "images_per_s": result.step * cfg.train.batch_size / result.seconds,
        "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
        "loss_last_10_mean": sum(losses[-10:]) / len(losses[-10:]) if losses else None,
        "val_items": min(cfg.train.eval_max_items or 0, len(exp.val_set)), "val_s": val_s,
        "val_metrics": {k: (None if v != v else v) for k, v in metrics.items()},
        "encoder": cfg.model.encoder, "image_size": cfg.model.image_size,
    }
    if not have_tv:
        out["encoder_substituted"] = "cnn (torchvision missing)"
    if cuda:
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if out["loss_last"] is None or out["loss_last"] != out["loss_last"]:
        raise StageFailed("the GPU config's training logged no finite loss", out)
    return out


class StageFailed(RuntimeError):
    """A stage that ran but did not pass; ``record`` keeps its numbers."""

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        super().__init__(message)
        self.record = record


def run_stage(name: str, fn: Callable[[], dict[str, Any]], report: dict[str, Any]) -> None:
    print(f"[gpu_check] {name} ...", flush=True)
    start = time.perf_counter()
    try:
        record = fn()
        status, error = "ok", None
    except StageFailed as e:
        record, status, error = e.record, "failed", str(e)
    except Exception as e:  # noqa: BLE001 - every stage is recorded, whatever goes wrong in it
        record, status, error = {}, "failed", f"{type(e).__name__}: {e}"
        record["traceback"] = traceback.format_exc().splitlines()[-12:]
    record = {"status": status, "seconds": time.perf_counter() - start, **record}
    if error:
        record["error"] = error
    report["stages"][name] = record
    print(f"[gpu_check] {name}: {status} in {record['seconds']:.1f} s" + (f" ({error})" if error else ""), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes: checks the script, not the machine")
    parser.add_argument("--out", default="gpu_check.json", help="the JSON written (default ./gpu_check.json)")
    parser.add_argument("--work", help="folder for the runs' checkpoints (default: a temporary one)")
    parser.add_argument("--bench-steps", type=int, default=30, help="timed steps per throughput benchmark")
    parser.add_argument("--ddp-steps", type=int, default=50, help="steps of the DDP run")
    parser.add_argument("--gpu-steps", type=int, default=300, help="steps of the GPU config")
    parser.add_argument("--gpu-train-size", type=int, default=4096, help="training crops of the GPU config run")
    parser.add_argument("--val-items", type=int, default=256, help="validation crops scored after it")
    parser.add_argument("--stage-timeout", type=int, default=900, help="seconds a subprocess stage may take")
    parser.add_argument("--skip", nargs="*", default=[], help="stages to leave out")
    args = parser.parse_args(argv)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("[gpu_check] --device cuda but this torch sees no CUDA device; use --device cpu --dry-run",
              file=sys.stderr)
        return 2

    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "stages": {}}
    tmp = tempfile.TemporaryDirectory(prefix="mhe_gpu_check_") if not args.work else None
    work = Path(args.work) if args.work else Path(tmp.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter()
    stages: dict[str, Callable[[], dict[str, Any]]] = {
        "environment": lambda: stage_environment(args),
        "cuda_tests": lambda: stage_cuda_tests(args),
        "throughput": lambda: stage_throughput(args),
        "ddp": lambda: stage_ddp(args, work),
        "gpu_config": lambda: stage_gpu_config(args, work),
    }
    for name, fn in stages.items():
        if name in args.skip:
            report["stages"][name] = {"status": "skipped"}
            continue
        run_stage(name, fn, report)
    report["seconds"] = time.perf_counter() - total
    report["ok"] = all(s["status"] in ("ok", "skipped") for s in report["stages"].values())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"[gpu_check] {'all stages passed' if report['ok'] else 'some stages FAILED'} in {report['seconds']:.0f} s; "
          f"wrote {out}", flush=True)
    if tmp is not None:
        tmp.cleanup()
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
