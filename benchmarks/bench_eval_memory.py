"""Peak memory (RSS) and time of the evaluation against the number of hypotheses S, for hands and bodies.

    python benchmarks/bench_eval_memory.py [--models hand_mhentropy body_mhentropy] [--samples 200 1024 4096]
                                           [--items 50] [--chunk 256] [--baseline]

Each setting runs in a fresh Python process (so that one setting's peak cannot hide another's): it loads the
shipped checkpoint, takes the first ``--items`` items of the test split and runs
:func:`mhe.evaluation.evaluate_model` with S hypotheses per item scored ``--chunk`` at a time (the
evaluation's default chunk unless given), in batches of :data:`mhe.evaluation.EVAL_BATCH_SIZE`. The child
reports its peak resident set size (``getrusage``'s ``ru_maxrss``), its RSS after loading the model and the
data (before the evaluation), the evaluation's wall time and BH-MPJPE. ``--baseline`` adds, for the largest
S, a run with the chunk as large as S (every hypothesis of a batch decoded at once: what the evaluation
did before it streamed). The thread count is torch's (set ``OMP_NUM_THREADS``), printed with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mib() -> float:
    """The current resident set size in MiB (Linux: /proc/self/status; elsewhere the peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(model_name: str, samples: int, items: int, chunk: int | None) -> dict:
    """One setting, in this (fresh) process: the measurements as a dict."""
    import warnings

    import torch
    from torch.utils.data import DataLoader, Subset

    from mhe.evaluation import EVAL_BATCH_SIZE, EVAL_SAMPLE_CHUNK, evaluate_model
    from mhe.lab.experiments import build_experiment, load_model

    warnings.simplefilter("ignore")  # the stand-in body models say so once per process
    model, cfg = load_model(model_name, device="cpu")
    data = build_experiment(cfg).split("test")
    loader = DataLoader(Subset(data, range(min(items, len(data)))), batch_size=EVAL_BATCH_SIZE)
    chunk = EVAL_SAMPLE_CHUNK if chunk is None else chunk
    before = rss_mib()
    start = time.perf_counter()
    metrics = evaluate_model(model, loader, num_samples=samples, sample_chunk=chunk)
    seconds = time.perf_counter() - start
    # ru_maxrss is the process's high-water mark, in KiB on Linux
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"model": model_name, "samples": samples, "chunk": chunk, "items": int(metrics["n_images"]),
            "threads": torch.get_num_threads(), "rss_loaded_mib": before, "peak_rss_mib": peak,
            "seconds": seconds, "mpjpe_bh": metrics["mpjpe_bh"]}


def machine() -> str:
    """The CPU model and core count, for the printout."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["hand_mhentropy", "body_mhentropy"])
    parser.add_argument("--samples", nargs="+", type=int, default=[200, 1024, 4096])
    parser.add_argument("--items", type=int, default=50, help="test items per setting (default 50: one batch)")
    parser.add_argument("--chunk", type=int, default=None, help="hypotheses scored at once (default: the evaluation's)")
    parser.add_argument("--baseline", action="store_true", help="also the largest S with every hypothesis at once")
    parser.add_argument("--child", nargs=4, metavar=("MODEL", "S", "ITEMS", "CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, samples, items, chunk = args.child
        print(json.dumps(child(name, int(samples), int(items), None if chunk == "default" else int(chunk))))
        return
    settings = [(m, s, args.chunk) for m in args.models for s in args.samples]
    if args.baseline:
        settings += [(m, max(args.samples), max(args.samples)) for m in args.models]
    print(f"[bench] evaluation memory: {machine()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"{'model':<16} {'S':>5} {'chunk':>5} {'items':>5} {'threads':>7} {'RSS loaded':>11} {'peak RSS':>9} "
          f"{'time':>7}  BH-MPJPE")
    for model_name, samples, chunk in settings:
        cmd = [sys.executable, __file__, "--child", model_name, str(samples), str(args.items),
               "default" if chunk is None else str(chunk)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"{model_name} at S = {samples} failed:\n{done.stderr[-2000:]}")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{r['model']:<16} {r['samples']:>5} {r['chunk']:>5} {r['items']:>5} {r['threads']:>7} "
              f"{r['rss_loaded_mib'] / 1024:>7.2f} GiB {r['peak_rss_mib'] / 1024:>5.2f} GiB {r['seconds']:>6.1f}s  "
              f"{r['mpjpe_bh']:.3f} mm", flush=True)


if __name__ == "__main__":
    main()
