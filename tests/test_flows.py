"""ConditionalFlow: densities against brute-force change of variables and grid integration,
sample / log-prob consistency, temperature, gradients, shapes and every error path."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from mhe.flows import ConditionalFlow, fit_nll

KINDS = ["realnvp", "nsf_coupling"]


def _perturb(flow: ConditionalFlow, scale: float = 0.3) -> ConditionalFlow:
    """Random non-trivial weights, so the flow is far from the identity it starts near."""
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn_like(p))
    return flow


def _small(features: int, context: int, kind: str) -> ConditionalFlow:
    return _perturb(ConditionalFlow(features, context, transforms=4, hidden=(16, 16), kind=kind))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("features", [2, 3])
def test_log_prob_matches_numerical_jacobian(kind, features):
    """log q(x) = log N(f(x); 0, I) + log|det ∂f/∂x|, with the Jacobian taken by autograd on the
    forward map alone (no log-det bookkeeping of the flow involved)."""
    flow = _small(features, 2, kind).double()
    context = torch.randn(3, 2, dtype=torch.float64)
    x = flow.sample(context, 2)  # (3, 2, D)
    got = flow.log_prob(x, context)
    for b in range(3):
        transform = flow.flow(context[b]).transform
        for s in range(2):
            point = x[b, s]
            z = transform(point)
            jac = jacobian(transform, point)
            base = -0.5 * (z @ z) - 0.5 * features * math.log(2 * math.pi)
            expected = base + torch.linalg.slogdet(jac).logabsdet
            assert got[b, s].item() == pytest.approx(expected.item(), abs=1e-8)


@pytest.mark.parametrize("kind", KINDS)
def test_unconditional_density_integrates_to_one(kind):
    flow = _small(2, 0, kind)
    lim, n = 9.0, 361
    axis = torch.linspace(-lim, lim, n)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        mass = flow.log_prob(grid).exp().sum() * (axis[1] - axis[0]) ** 2
    assert mass.item() == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("kind", KINDS)
def test_conditional_density_mass_in_a_box_matches_the_sample_fraction(kind):
    """∫_box q(x | c) dx by grid quadrature equals P(x ∈ box) estimated from samples, per context
    (the perturbed flows have heavy tails, so the box holds visibly less than all the mass)."""
    flow = _small(2, 3, kind)
    lim, n = 9.0, 241
    axis = torch.linspace(-lim, lim, n)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(1, -1, 2)
    context = torch.randn(2, 3)
    with torch.no_grad():
        dens = flow.log_prob(grid.expand(2, -1, -1), context).exp()
    mass = dens.sum(-1) * (axis[1] - axis[0]) ** 2
    inside = (flow.sample(context, 20000).abs() < lim).all(-1).float().mean(-1)
    assert torch.allclose(mass, inside, atol=0.02)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_rsample_log_q_equals_log_prob_of_the_samples(kind, temperature):
    """The one-pass log q (inverse direction) agrees with log_prob (forward direction), and is
    the density of the *untempered* flow whatever the temperature."""
    flow = _small(3, 4, kind).double()  # float64: spline inversion is exact to ~1e-12, not 1e-3
    context = torch.randn(5, 4, dtype=torch.float64)
    x, log_q = flow.rsample_and_log_prob(context, 7, temperature=temperature)
    assert x.shape == (5, 7, 3) and log_q.shape == (5, 7)
    assert torch.allclose(log_q, flow.log_prob(x, context), atol=1e-8)


def test_temperature_scales_the_base_noise():
    """z = f(x) of tempered samples has standard deviation T in every dimension."""
    flow = _small(2, 1, "realnvp")
    context = torch.zeros(1, 1)
    transform = flow.flow(context[0]).transform
    for temperature in (0.5, 1.0):
        x = flow.sample(context, 4000, temperature=temperature)[0]
        with torch.no_grad():
            z = transform(x)
        assert torch.allclose(z.std(0), torch.full((2,), temperature), rtol=0.06)


def test_zero_temperature_and_mode_give_the_zero_noise_point():
    flow = _small(2, 2, "nsf_coupling").double()
    context = torch.randn(4, 2, dtype=torch.float64)
    x, _ = flow.rsample_and_log_prob(context, 3, temperature=0.0)
    mode = flow.mode(context)
    assert mode.shape == (4, 2)
    assert torch.allclose(x, mode.unsqueeze(1).expand(-1, 3, -1), atol=1e-12)
    with torch.no_grad():
        z = torch.stack([flow.flow(context[b]).transform(mode[b]) for b in range(4)])
    assert torch.allclose(z, torch.zeros_like(z), atol=1e-9)


def test_unconditional_sampling_needs_batch_size_and_returns_batch_first():
    flow = _small(2, 0, "realnvp")
    x, log_q = flow.rsample_and_log_prob(None, 5, batch_size=3)
    assert x.shape == (3, 5, 2) and log_q.shape == (3, 5)
    assert torch.allclose(log_q, flow.log_prob(x), atol=1e-4)
    assert flow.mode(None, batch_size=2).shape == (2, 2)


def test_one_dimensional_flow():
    flow = _perturb(ConditionalFlow(1, 2, transforms=2, hidden=(8,)))
    context = torch.randn(3, 2)
    x, log_q = flow.rsample_and_log_prob(context, 4)
    assert x.shape == (3, 4, 1)
    assert torch.allclose(log_q, flow.log_prob(x, context), atol=1e-4)


def test_log_prob_accepts_extra_sample_dims_like_a_loop():
    flow = _small(2, 3, "realnvp")
    context = torch.randn(2, 3)
    x = torch.randn(2, 4, 5, 2)
    got = flow.log_prob(x, context)
    assert got.shape == (2, 4, 5)
    for b in range(2):
        row = flow.log_prob(x[b].reshape(1, -1, 2), context[b : b + 1]).reshape(4, 5)
        assert torch.allclose(got[b], row, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_every_parameter_and_the_context(kind):
    flow = _small(3, 4, kind)
    context = torch.randn(6, 4, requires_grad=True)
    x, log_q = flow.rsample_and_log_prob(context, 5)
    (x.square().sum() + log_q.sum()).backward()
    for name, p in flow.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reached {name}"
    assert context.grad is not None and context.grad.abs().sum() > 0

    flow.zero_grad()
    context2 = torch.randn(6, 4, requires_grad=True)
    flow.log_prob(torch.randn(6, 3), context2).sum().backward()
    assert all(p.grad is not None for p in flow.parameters())
    assert context2.grad.abs().sum() > 0


def test_sample_carries_no_graph_and_state_dict_round_trips():
    flow = _small(2, 2, "nsf_coupling")
    context = torch.randn(3, 2)
    assert not flow.sample(context, 2).requires_grad
    clone = ConditionalFlow(2, 2, transforms=4, hidden=(16, 16), kind="nsf_coupling")
    clone.load_state_dict(flow.state_dict())
    x = torch.randn(3, 2)
    assert torch.allclose(clone.log_prob(x, context), flow.log_prob(x, context))


def test_default_mirrors_the_official_hand_flow():
    flow = ConditionalFlow(45, 512)
    couplings = list(flow.flow.transform.transforms)
    assert len(couplings) == 12
    first = couplings[0].hyper
    widths = [m.out_features for m in first if hasattr(m, "out_features")]
    assert widths == [512, 512, 22 * 2]  # 22 transformed features × (shift, scale)
    # zuko concatenates the context to the coupling's input: 23 kept features + 512 context.
    assert first[0].in_features == 23 + 512
    # Alternating masks: consecutive layers transform complementary halves.
    assert torch.equal(couplings[0].mask, ~couplings[1].mask)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(features=0), "features"),
        (dict(features=2, context=-1), "context"),
        (dict(features=2, transforms=0), "transforms"),
        (dict(features=2, kind="maf"), "unknown flow kind"),
        (dict(features=2, kind="nsf_coupling", bins=1), "bins"),
    ],
)
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConditionalFlow(**kwargs)


def test_call_errors():
    cond = ConditionalFlow(2, 3, transforms=2, hidden=(8,))
    uncond = ConditionalFlow(2, 0, transforms=2, hidden=(8,))
    with pytest.raises(ValueError, match="conditional"):
        cond.rsample_and_log_prob(None, 2)
    with pytest.raises(ValueError, match=r"shape \(B, 3\)"):
        cond.rsample_and_log_prob(torch.randn(4, 2), 2)
    with pytest.raises(ValueError, match="batch_size"):
        cond.rsample_and_log_prob(torch.randn(4, 3), 2, batch_size=5)
    with pytest.raises(ValueError, match="num_samples"):
        cond.rsample_and_log_prob(torch.randn(4, 3), 0)
    with pytest.raises(ValueError, match="temperature"):
        cond.rsample_and_log_prob(torch.randn(4, 3), 2, temperature=-1.0)
    with pytest.raises(ValueError, match="end in D=2"):
        cond.log_prob(torch.randn(4, 3), torch.randn(4, 3))
    with pytest.raises(ValueError, match="matching the context"):
        cond.log_prob(torch.randn(5, 2), torch.randn(4, 3))
    with pytest.raises(ValueError, match="unconditional"):
        uncond.rsample_and_log_prob(torch.randn(4, 3), 2)
    with pytest.raises(ValueError, match="batch_size"):
        uncond.rsample_and_log_prob(None, 2)


@pytest.mark.parametrize("kind", KINDS)
def test_identity_init_starts_at_the_standard_normal(kind):
    flow = ConditionalFlow(3, 2, transforms=4, hidden=(16, 16), kind=kind)
    x, context = torch.randn(6, 3), torch.randn(6, 2)
    standard = -0.5 * x.square().sum(-1) - 1.5 * math.log(2 * math.pi)
    assert torch.allclose(flow.log_prob(x, context), standard, atol=1e-2)
    far = ConditionalFlow(3, 2, transforms=4, hidden=(16, 16), kind=kind, identity_init=False)
    assert not torch.allclose(far.log_prob(x, context), standard, atol=1e-2)


@pytest.mark.parametrize("num_samples", [6, 7])
def test_antithetic_samples_come_in_mirrored_pairs(num_samples):
    flow = _small(2, 3, "nsf_coupling").double()
    context = torch.randn(4, 3, dtype=torch.float64)
    x, log_q = flow.rsample_and_log_prob(context, num_samples, antithetic=True)
    assert x.shape == (4, num_samples, 2)
    assert torch.allclose(log_q, flow.log_prob(x, context), atol=1e-8)
    with torch.no_grad():
        z = torch.stack([flow.flow(context[b]).transform(x[b]) for b in range(4)])
    half = (num_samples + 1) // 2
    pairs = num_samples - half
    assert torch.allclose(z[:, half:], -z[:, :pairs], atol=1e-6)


def test_fit_nll_recovers_the_gaussian_maximum_likelihood_estimate():
    generator = torch.Generator().manual_seed(0)
    data = torch.randn(4000, 2, generator=generator) * torch.tensor([0.5, 2.0]) + torch.tensor([1.0, -3.0])
    flow = ConditionalFlow(2, 0, transforms=2, hidden=(16,), kind="realnvp")
    history = fit_nll(flow, data, steps=400, batch_size=512, lr=1e-2, generator=generator)
    assert len(history) == 400 and history[-1] < history[0]
    x = flow.sample(None, 8000, batch_size=1)[0]
    # the MLE of a Gaussian family is the sample mean and std (the flow contains it)
    assert torch.allclose(x.mean(0), data.mean(0), atol=0.1)
    assert torch.allclose(x.std(0), data.std(0), rtol=0.1)


def test_fit_nll_errors():
    flow = ConditionalFlow(2, 1, transforms=2, hidden=(8,))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        fit_nll(flow, torch.randn(10, 3), torch.randn(10, 1))
    with pytest.raises(ValueError, match="context has 9 rows"):
        fit_nll(flow, torch.randn(10, 2), torch.randn(9, 1))
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        fit_nll(flow, torch.randn(10, 2), torch.randn(10, 1), steps=0)


def test_fit_nll_is_the_plain_adam_loop_bit_for_bit():
    """fit_nll steps through mhe.training.fit; its result is that of the loop it replaced (Adam, torch's cosine
    scheduler, one minibatch per step from the generator)."""
    x, c = torch.randn(50, 2), torch.randn(50, 1)
    torch.manual_seed(3)
    mine = ConditionalFlow(2, 1, transforms=2, hidden=(8,))
    history = fit_nll(mine, x, c, steps=12, batch_size=16, lr=1e-2, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(3)
    ref = ConditionalFlow(2, 1, transforms=2, hidden=(8,))
    optimiser = torch.optim.Adam(ref.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, 12)
    generator, expected = torch.Generator().manual_seed(4), []
    for _ in range(12):
        idx = torch.randint(50, (16,), generator=generator)
        loss = -ref.log_prob(x[idx], c[idx]).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        expected.append(loss.item())
    assert history == expected
    assert all(torch.equal(a, b) for a, b in zip(mine.parameters(), ref.parameters(), strict=True))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("features, context", [(7, 5), (6, 0), (2, 3)])
def test_coupling_pass_equals_zukos_own_pass(kind, features, context):
    # the flow's own coupling pass (one hyper-network run per coupling, the context's product once per item)
    # against zuko's transform on the same modules: values, log-densities and gradients
    # in float64, so that only the order of the sums differs (float32 rounding grows through the couplings)
    flow = _small(features, context, kind).double()
    assert flow._fast
    g = torch.Generator().manual_seed(3)
    c = torch.randn(4, context, generator=g, dtype=torch.float64) if context else None
    z = torch.randn(5, 4, features, generator=g, dtype=torch.float64)
    x = torch.randn(4, 3, features, generator=g, dtype=torch.float64)
    ours = flow._couplings(c, z, inverse=True)
    dist = flow.flow(c)
    theirs = dist.transform.inv.call_and_ladj(z)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    moved = x.movedim(0, -2) if context else x
    torch.testing.assert_close(flow._log_prob(dist, c, moved), dist.log_prob(moved), atol=1e-10, rtol=1e-10)
    (ours[0].sin().sum() + ours[1].sum()).backward()
    mine = [p.grad.clone() for p in flow.parameters()]
    flow.zero_grad()
    (theirs[0].sin().sum() + theirs[1].sum()).backward()
    for a, p in zip(mine, flow.parameters(), strict=True):
        # the gradients sum many terms of both signs (perturbed weights): rounding shows relative to their largest
        torch.testing.assert_close(a, p.grad, atol=1e-6 * float(p.grad.abs().max()), rtol=1e-6)


def test_one_dimensional_flow_keeps_zukos_pass():
    assert not ConditionalFlow(1, 2, transforms=2, hidden=(8,))._fast
