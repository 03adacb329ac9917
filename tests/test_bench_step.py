"""benchmarks/bench_step.py: the matrix products it captures from a step and the FLOPs it counts for them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def _bench():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_step", REPO / "benchmarks" / "bench_step.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_captured_gemms_finds_every_product_with_its_flops_and_replays_them():
    bench = _bench()
    torch.manual_seed(0)
    a, w, b = torch.randn(7, 5), torch.randn(3, 5), torch.randn(3)
    batch = torch.randn(4, 2, 6)
    seen: list[int] = []

    def step(i: int) -> None:
        x = a.clone().requires_grad_()
        y = torch.nn.functional.linear(x, w, b)  # addmm (7x5 by 5x3, the bias broadcast)
        z = (y.T @ y).sum() + (batch @ batch.transpose(1, 2)).sum()  # mm 3x7 by 7x3; bmm 4 of 2x6 by 6x2
        z.backward()  # addmm's input gradient: mm 7x3 by 3x5 (w needs none); mm's: two of 7x3 by 3x3
        seen.append(i)

    replay, flops = bench.captured_gemms(step)
    forward = 2 * 7 * 5 * 3 + 2 * 3 * 7 * 3 + 4 * 2 * 2 * 6 * 2
    backward = 2 * 7 * 3 * 5 + 2 * (2 * 7 * 3 * 3)
    assert flops == forward + backward
    assert seen == [0]
    replay(1)  # the captured products alone: the step itself does not run again
    assert seen == [0]


def test_official_flops_count_what_the_flow_step_multiplies():
    # the analytic count of today's flow at a small size equals the FLOPs of the products its step runs
    bench = _bench()
    from mhe.flows import ConditionalFlow

    sizes = dict(features=7, context=6, transforms=3, hidden=8, batch=5, samples=4)
    torch.manual_seed(0)
    flow = ConditionalFlow(7, 6, transforms=3, hidden=(8, 8))
    ctx = torch.randn(5, 6)

    def step(i: int) -> None:
        x, log_q = flow.rsample_and_log_prob(ctx.clone().requires_grad_(), 4)
        (log_q.mean() + x.square().mean()).backward()

    _, flops = bench.captured_gemms(step)
    assert flops == bench.flow_flops("today", **sizes)
