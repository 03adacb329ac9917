"""Training step, side by side: today's code against a frozen copy of the previous one, and the official flow's size.

    python benchmarks/bench_step.py [--threads 2] [--repeats 15] [--only hand,body,official]

One run prints one table, with the machine and the thread count:

* **hand / body at the shipped sizes** (``hand_mhentropy`` / ``body_mhentropy``: batch 64, S = 10): a whole
  ``Trainer.train_step`` (encoder, flow, keypoints, prior, objective, backward, clipping, Adam) of today's model
  against the same model run on the frozen code (``benchmarks/frozen``: the flow's sampling pass, MANO's and the
  body's keypoints and the optimiser as they were at commit 2ced0cb; everything else shared), on the same batches.
* **the official flow size** (RealNVP, 12 couplings, 512×512 hidden, context 512, D = 45, N = 10 hypotheses,
  B = 64): one step of the flow alone (samples and log-density, the loss ``mean log q + mean x²``, backward,
  Adam as the trainer builds it) from a context that takes gradients, as the encoder's would: today's flow,
  the frozen one, and a re-implementation of the official flow's architecture (context added at both hidden
  layers, tanh on the log-scale, masks as multiplications, the context's products computed for every
  hypothesis row). Each row
  gives its matrix-product FLOPs per step (counted from the shapes: forward, weight gradients, and the input
  gradients autograd needs) and their rate against this CPU's matrix-product rate, measured here as the best
  FLOP/s of a 2048³ float32 GEMM on the same threads. Beside it, **today's matrix products alone**: the very
  ``mm`` / ``addmm`` / ``bmm`` calls of one of today's steps (captured with their shapes and strides) replayed
  back to back on fresh tensors, the time the step would take if everything but its matrix products were free:
  the ceiling of its rate at this size.

Timings on a shared machine are noisy: the variants run alternately (A, B, A, B, ...) in one process, each
figure is the minimum over ``--repeats`` steps, and the median is printed beside it.
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import frozen  # noqa: E402

from mhe.flows import ConditionalFlow  # noqa: E402

ALONE = "today's matrix products alone"  # the row of captured_gemms
OFFICIAL = dict(features=45, context=512, transforms=12, hidden=512, batch=64, samples=10)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


GEMM_N = 2048


def gemm_step() -> Callable[[int], None]:
    """One (n × n) @ (n × n) float32 product (n = GEMM_N, 2 n³ FLOPs) on torch's current threads."""
    a, b = torch.randn(GEMM_N, GEMM_N), torch.randn(GEMM_N, GEMM_N)
    return lambda i: a @ b


def captured_gemms(step: Callable[[int], None]) -> tuple[Callable[[int], None], int]:
    """The matrix products (``mm``, ``addmm``, ``bmm``) of one call of ``step``, captured with their shapes and
    strides: a function that replays them alone on fresh tensors of the same layouts, and their FLOPs."""
    from torch.utils._python_dispatch import TorchDispatchMode

    def like(a: Tensor) -> Tensor:  # random numbers in a's layout (broadcast strides included)
        span = 1 + sum((n - 1) * st for n, st in zip(a.shape, a.stride(), strict=True))
        return torch.randn(span, dtype=a.dtype).as_strided(a.shape, a.stride())

    ops = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default}
    calls: list[tuple] = []

    class Capture(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if func in ops:
                calls.append((func, [like(a) if isinstance(a, Tensor) else a for a in args], dict(kwargs or {})))
            return func(*args, **(kwargs or {}))

    with Capture():
        step(0)
    flops = 0
    for _, args, _ in calls:
        a, b = args[-2], args[-1]  # addmm(bias, a, b): the product's operands are the last two
        flops += 2 * a.shape[-2] * a.shape[-1] * b.shape[-1] * (a.shape[0] if a.dim() == 3 else 1)

    def replay(i: int) -> None:
        for func, args, kwargs in calls:
            func(*args, **kwargs)

    return replay, flops


def alternate(steps: dict[str, Callable[[int], None]], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds of every call of each step, the steps called in turn (A, B, ..., A, B, ...) ``repeats`` times."""
    for i in range(warmup):
        for step in steps.values():
            step(i)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step(warmup + i)
            times[name].append(time.perf_counter() - start)
    return times


# -- the shipped hand and body steps ------------------------------------------------------------------


def shipped_steps(config: str, batches: int) -> dict[str, Callable[[int], None]]:
    """Today's and the frozen ``Trainer.train_step`` of ``config`` at batch 64, S = 10, on the same batches."""
    from mhe.lab.builders import build_experiment
    from mhe.lab.config_io import load_config
    from mhe.lab.train import Trainer
    from mhe.utils import seed_everything

    cfg = load_config(config, ["train.batch_size=64", "train.num_samples=10", "train.progress=false", "device=cpu"])
    cfg.data.train_size = 64 * batches
    seed_everything(cfg.seed)
    exp = build_experiment(cfg)
    cfg.train.out_dir = tempfile.mkdtemp(prefix="mhe-bench-")
    new = Trainer.from_config(exp.model, exp.train_set, cfg)
    old = Trainer.from_config(frozen.install(copy.deepcopy(exp.model)), exp.train_set, cfg)
    old.optimizer = frozen.adam(old.params, cfg.train.lr, cfg.train.weight_decay)
    data: list[dict] = []
    while len(data) < batches:
        data.extend(new.train_loader(len(data)))
    return {
        "today": lambda i: new.train_step(data[i % len(data)]),
        "frozen 2ced0cb": lambda i: old.train_step(data[i % len(data)]),
    }


# -- the official flow size ---------------------------------------------------------------------------


class OfficialRealNVP(nn.Module):
    """A re-implementation of the official MHEntropy flow's architecture for timing (not trained here): affine
    couplings with alternating masks applied by multiplication, an MLP on the masked input with the context
    projected and added at both hidden layers (for every hypothesis row), tanh on the log-scale."""

    def __init__(self, features: int, context: int, transforms: int, hidden: int) -> None:
        super().__init__()
        masks = torch.stack([(torch.arange(features) + i) % 2 for i in range(transforms)])
        self.register_buffer("masks", masks.float())
        self.inp = nn.ModuleList(nn.Linear(features, hidden) for _ in range(transforms))
        self.ctx1 = nn.ModuleList(nn.Linear(context, hidden) for _ in range(transforms))
        self.mid = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(transforms))
        self.ctx2 = nn.ModuleList(nn.Linear(context, hidden) for _ in range(transforms))
        self.out = nn.ModuleList(nn.Linear(hidden, 2 * features) for _ in range(transforms))
        for layer in self.out:
            layer.weight.data.mul_(1e-3)
            layer.bias.data.mul_(1e-3)

    def rsample_and_log_prob(self, context: Tensor, num_samples: int) -> tuple[Tensor, Tensor]:
        b, d = context.shape[0], self.masks.shape[1]
        c = context.repeat_interleave(num_samples, 0)  # one context row per hypothesis
        z = torch.randn(b * num_samples, d)
        x, log_det = z, z.new_zeros(z.shape[0])
        for i, m in enumerate(self.masks):
            h = torch.relu(self.inp[i](x * m) + self.ctx1[i](c))
            h = torch.relu(self.mid[i](h) + self.ctx2[i](c))
            s, t = self.out[i](h).chunk(2, -1)
            s = torch.tanh(s) * (1 - m)
            x = x * m + (1 - m) * (x * s.exp() + t * (1 - m))
            log_det = log_det + s.sum(-1)
        log_q = (-0.5 * z.square() - 0.5 * math.log(2 * math.pi)).sum(-1) - log_det
        return x.view(b, num_samples, d), log_q.view(b, num_samples)


def linear_flops(rows: int, fan_in: int, fan_out: int, input_grad: bool = True) -> int:
    """Matrix-product FLOPs of one linear layer in a training step: forward, weight gradient, input gradient."""
    return 2 * rows * fan_in * fan_out * (3 if input_grad else 2)


def flow_flops(kind: str, features: int, context: int, transforms: int, hidden: int, batch: int, samples: int) -> int:
    """Matrix-product FLOPs of one training step of a flow at these sizes (see the module docstring)."""
    rows, total = batch * samples, 0
    for i in range(transforms):
        if kind == "official":  # masked full input, context at both hidden layers on every row
            total += linear_flops(rows, features, hidden, input_grad=i > 0)
            total += 2 * linear_flops(rows, context, hidden) + linear_flops(rows, hidden, hidden)
            total += linear_flops(rows, hidden, 2 * features)
            continue
        kept = (features + 1) // 2 if i % 2 == 0 else features // 2  # layer i keeps the features i % 2 of two
        changed = features - kept
        first = i == transforms - 1  # sampling runs the couplings last to first: its kept half is the noise
        ctx_rows = batch if kind == "today" else rows
        # the zuko pass (frozen) runs every hyper-network twice forward (values, then log-determinant)
        passes = 1 if kind == "today" else 2
        fwd = 2 * (rows * kept * hidden + ctx_rows * context * hidden + rows * hidden * hidden
                   + rows * hidden * 2 * changed)
        grads = 2 * (rows * kept * hidden + ctx_rows * context * hidden + rows * hidden * hidden
                     + rows * hidden * 2 * changed)  # weight gradients
        inputs = 2 * (ctx_rows * context * hidden + rows * hidden * hidden + rows * hidden * 2 * changed)
        inputs += 0 if first else 2 * rows * kept * hidden
        total += passes * (fwd + grads + inputs)
    return total


def official_steps() -> tuple[dict[str, Callable[[int], None]], dict[str, int]]:
    """Steps of today's flow, the frozen flow and the official re-implementation at the official size."""
    o = OFFICIAL
    torch.manual_seed(0)
    today = ConditionalFlow(o["features"], o["context"], transforms=o["transforms"], hidden=(o["hidden"],) * 2)
    old = frozen.install(copy.deepcopy(today))
    official = OfficialRealNVP(o["features"], o["context"], o["transforms"], o["hidden"])
    ctx = torch.randn(o["batch"], o["context"])

    def step_of(flow: nn.Module, old_adam: bool = False) -> Callable[[int], None]:
        # Adam as the trainer builds it: today's fused kernel, the frozen code's per-tensor loop
        opt = frozen.adam(list(flow.parameters()), 1e-4, 0.0) if old_adam else torch.optim.Adam(
            flow.parameters(), lr=1e-4, fused=True)

        def step(i: int) -> None:
            c = ctx.clone().requires_grad_()  # the encoder's output: the flow's gradients reach it
            x, log_q = flow.rsample_and_log_prob(c, o["samples"])
            loss = log_q.mean() + x.square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    sizes = {k: o[k] for k in ("features", "context", "transforms", "hidden", "batch", "samples")}
    flops = {"today": flow_flops("today", **sizes), "frozen 2ced0cb": flow_flops("frozen", **sizes),
             "official re-impl.": flow_flops("official", **sizes)}
    return {"today": step_of(today), "frozen 2ced0cb": step_of(old, old_adam=True),
            "official re-impl.": step_of(official)}, flops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=15, help="timed steps of each variant")
    parser.add_argument("--only", default="hand,body,official", help="comma-separated: hand, body, official")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    parts = args.only.split(",")

    print(f"[bench_step] {cpu_name()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}, "
          f"Python {platform.python_version()}")
    rows: list[tuple[str, str, list[float], int | None]] = []
    for config, name in (("hand_mhentropy", "hand"), ("body_mhentropy", "body")):
        if name in parts:
            steps = shipped_steps(config, batches=8)
            alone, alone_flops = captured_gemms(steps["today"])
            times = alternate({**steps, ALONE: alone}, args.repeats)
            rows += [(f"{name} (batch 64, S = 10)", k, v, alone_flops if k == ALONE else None)
                     for k, v in times.items()]
    rate = math.nan
    if "official" not in parts:  # the rates of the hand and body rows' matrix products need it too
        rate = 2 * GEMM_N**3 / min(alternate({"gemm": gemm_step()}, args.repeats)["gemm"])
        print(f"[bench_step] matrix-product rate: {rate / 1e9:.1f} GFLOP/s (best {GEMM_N}³ float32 GEMM)")
    if "official" in parts:
        steps, flops = official_steps()
        steps[ALONE], flops[ALONE] = captured_gemms(steps["today"])
        times = alternate({**steps, "gemm": gemm_step()}, args.repeats)  # the rate measured between the steps
        rate = 2 * GEMM_N**3 / min(times.pop("gemm"))
        print(f"[bench_step] matrix-product rate: {rate / 1e9:.1f} GFLOP/s (best {GEMM_N}³ float32 GEMM, "
              "timed in turn with the flow steps)")
        rows += [("official flow size", k, v, flops[k]) for k, v in times.items()]

    print("| step | code | ms/step (min) | median | × vs frozen | GFLOP/step | GFLOP/s | % of GEMM rate |")
    print("|---|---|---|---|---|---|---|---|")
    frozen_ms = {what: min(t) for what, code, t, _ in rows if code == "frozen 2ced0cb"}
    for what, code, t, fl in rows:
        best = min(t)
        ratio = f"{frozen_ms[what] / best:.2f}" if what in frozen_ms and code != ALONE else "–"
        extra = f"{fl / 1e9:.2f} | {fl / best / 1e9:.1f} | {100 * fl / best / rate:.0f} %" if fl else "– | – | –"
        print(f"| {what} | {code} | {1000 * best:.1f} | {1000 * statistics.median(t):.1f} | {ratio} | {extra} |")
    today_ms = {what: min(t) for what, code, t, _ in rows if code == "today"}
    for what, code, t, _ in rows:
        if code == ALONE:
            print(f"[bench_step] {what}: today's matrix products alone take {100 * min(t) / today_ms[what]:.0f} % "
                  "of today's step; the rest is everything else (elementwise work, copies, autograd, Adam)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
