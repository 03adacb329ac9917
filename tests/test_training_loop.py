"""The one training loop (mhe.training): schedules, tempering, the finite-loss check, the callback's stop, the
resumable step count, and the objectives' declared weights that the trainer calls them with."""

from __future__ import annotations

import inspect
import itertools
import math

import pytest
import torch

from mhe import objectives, training


def quadratic(target: float = 3.0):
    """A one-parameter problem: loss (w - target)², whose gradient is known in closed form."""
    w = torch.nn.Parameter(torch.zeros(()))

    def loss_fn(batch, beta):
        loss = (w - target) ** 2
        return loss, {"w": float(w.detach()), "beta": beta, "batch": float(batch)}

    return w, loss_fn


def test_cosine_and_constant_learning_rates_at_known_steps():
    cosine = training.cosine_lr(0.1, 10)
    assert cosine(0) == 0.1 and cosine(5) == pytest.approx(0.05, abs=1e-15) and cosine(10) == 0.0
    assert cosine(25) == 0.0  # past the end it stays at 0
    assert cosine(2) == pytest.approx(0.1 * (1 + math.cos(math.pi / 5)) / 2, rel=1e-15)
    assert training.lr_schedule(0.3)(7) == 0.3
    assert training.lr_schedule(0.3, "cosine", 10)(5) == pytest.approx(0.15)
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'linear'; choose one of constant, cosine"):
        training.lr_schedule(0.3, "linear", 10)
    with pytest.raises(ValueError, match="needs the run's total number of steps"):
        training.lr_schedule(0.3, "cosine")


def test_recursive_cosine_equals_torchs_scheduler_bit_for_bit():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=5e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 37)
    torch_values = []
    for _ in range(37):
        torch_values.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ours = training.recursive_cosine_lr(5e-3, 37)
    assert [ours(k) for k in range(37)] == torch_values
    closed = training.cosine_lr(5e-3, 37)
    assert max(abs(ours(k) - closed(k)) for k in range(37)) < 1e-16  # the same curve up to rounding


def test_tempering_reaches_one_at_temper_steps_and_is_off_at_zero():
    ramp = training.tempering_ramp(4)
    assert [ramp(k) for k in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert [training.tempering_ramp(0)(k) for k in range(3)] == [1.0, 1.0, 1.0]
    # the loop hands β to the loss: with an int N it ramps, with a callable it is that function of the step
    w, loss_fn = quadratic()
    seen = []
    training.fit(loss_fn, torch.optim.SGD([w], lr=0.1), itertools.repeat(0.0), steps=5, tempering=4,
                 callback=lambda step, terms: seen.append(terms["beta"]))
    assert seen == [0.25, 0.5, 0.75, 1.0, 1.0]
    seen.clear()
    training.fit(loss_fn, torch.optim.SGD([w], lr=0.1), itertools.repeat(0.0), steps=3, tempering=lambda k: 10.0 * k,
                 callback=lambda step, terms: seen.append(terms["beta"]))
    assert seen == [0.0, 10.0, 20.0]


def test_steps_follow_gradient_descent_with_the_scheduled_rate_and_clipping():
    w, loss_fn = quadratic(target=3.0)
    opt = torch.optim.SGD([w], lr=123.0)  # the loop sets the rate of every step
    lrs = [0.1, 0.2, 0.05]
    history = []
    done = training.fit(loss_fn, opt, itertools.repeat(0.0), steps=3, lr=lambda k: lrs[k],
                        callback=lambda step, terms: history.append((step, terms)))
    assert done == 3 and [s for s, _ in history] == [1, 2, 3]
    expected = 0.0
    for k, lr in enumerate(lrs):
        grad = 2 * (expected - 3.0)
        assert history[k][1]["grad_norm"] == pytest.approx(abs(grad))
        assert history[k][1]["loss"] == pytest.approx((expected - 3.0) ** 2)
        expected -= lr * grad
    assert float(w.detach()) == pytest.approx(expected)
    # clipped to norm 1: each step moves w by exactly lr, and the measured norm is the unclipped one
    w2, loss2 = quadratic(target=3.0)
    terms = training.train_step(loss2, torch.optim.SGD([w2], lr=0.5), 0.0, grad_clip=1.0)
    assert float(w2.detach()) == pytest.approx(0.5) and terms["grad_norm"] == pytest.approx(6.0)


def test_a_non_finite_loss_names_the_step_and_the_terms():
    w = torch.nn.Parameter(torch.ones(()))

    def loss_fn(batch, beta):
        value = w * batch  # batch 2 is NaN
        return value, {"value": float(value.detach())}

    opt = torch.optim.SGD([w], lr=0.1)
    with pytest.raises(FloatingPointError, match=r"non-finite loss \(nan\) at step 3 \(terms: value=nan\); lower the"):
        training.fit(loss_fn, opt, iter([1.0, 1.0, float("nan"), 1.0]), steps=4)
    before = float(w.detach())
    with pytest.raises(FloatingPointError, match="at step 8 .*check the batch"):
        training.train_step(loss_fn, opt, float("inf"), step=7)
    assert float(w.detach()) == before  # no update from a bad loss
    with pytest.raises(TypeError, match=r"scalar loss tensor.*shape \(2,\)"):
        training.train_step(lambda b, beta: (torch.ones(2, requires_grad=True), {}), opt, 0.0)
    # every process agrees: a finite loss elsewhere-flagged as bad stops this one too
    with pytest.raises(FloatingPointError, match="custom hint"):
        training.train_step(lambda b, beta: (w * 1.0, {}), opt, 0.0, any_rank=lambda bad: True, hint="custom hint")


def test_the_callback_stops_the_loop_and_a_restart_continues_the_count():
    w, loss_fn = quadratic()
    stops_at_3 = training.fit(loss_fn, torch.optim.SGD([w], lr=0.01), itertools.repeat(0.0), steps=10,
                              callback=lambda step, terms: step == 3)
    assert stops_at_3 == 3
    # resuming at start_step with the same optimizer equals one uninterrupted run
    a, fa = quadratic()
    opt_a = torch.optim.Adam([a], lr=0.1)
    training.fit(fa, opt_a, itertools.repeat(0.0), steps=6, lr=0.1, schedule="cosine")
    b, fb = quadratic()
    opt_b = torch.optim.Adam([b], lr=0.1)
    seen = []
    training.fit(fb, opt_b, itertools.repeat(0.0), steps=6, lr=0.1, schedule="cosine",
                 callback=lambda step, terms: step == 2)
    training.fit(fb, opt_b, itertools.repeat(0.0), steps=6, lr=0.1, schedule="cosine", start_step=2,
                 callback=lambda step, terms: seen.append(step))
    assert seen == [3, 4, 5, 6] and torch.equal(a.detach(), b.detach())
    # the loop ends when the batches run out; a start at or past the end does nothing
    c, fc = quadratic()
    assert training.fit(fc, torch.optim.SGD([c], lr=0.1), [1.0, 2.0], steps=5) == 2
    assert training.fit(fc, torch.optim.SGD([c], lr=0.1), [1.0], steps=5, start_step=5) == 5


def test_every_objective_declares_exactly_its_keyword_parameters():
    """The library never reads signatures; this test does, so the declarations cannot drift from the code."""
    assert set(objectives.OBJECTIVE_WEIGHTS) == set(objectives.OBJECTIVES)
    for name, fn in objectives.OBJECTIVES.items():
        params = list(inspect.signature(fn).parameters.values())
        assert [p.name for p in params[:3]] == ["model", "batch", "num_samples"], name
        actual = {p.name: p.default for p in params[3:]}
        assert objectives.OBJECTIVE_WEIGHTS[name] == actual, name
    for name in ("mhentropy", "no_entropy", "no_reconstruction", "no_prior", "min_of_n", "deterministic"):
        assert set(objectives.TEMPERED_WEIGHTS) <= set(objectives.OBJECTIVE_WEIGHTS[name])
    assert "w_rec" not in objectives.OBJECTIVE_WEIGHTS["nll"]


def test_register_objective_declares_its_weights():
    def custom(model, batch, num_samples=1, w_rec=1.0):
        return torch.zeros(()), {}

    objectives.register_objective("custom-test", custom, {"w_rec": 1.0})
    try:
        assert objectives.get_objective("custom-test") is custom
        assert objectives.objective_weights("custom-test") == {"w_rec": 1.0}
        with pytest.raises(ValueError, match="'custom-test' is already registered; pass overwrite=True"):
            objectives.register_objective("custom-test", custom, {})
    finally:
        del objectives.OBJECTIVES["custom-test"], objectives.OBJECTIVE_WEIGHTS["custom-test"]
    objectives.OBJECTIVES["undeclared-test"] = custom
    try:
        with pytest.raises(ValueError, match="'undeclared-test' declares no weights: register it with"):
            objectives.objective_weights("undeclared-test")
    finally:
        del objectives.OBJECTIVES["undeclared-test"]
