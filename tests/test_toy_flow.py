"""ToyFlow (mhe.toy.flow): the lean spline pass computes zuko's flow (mhe.flows.ConditionalFlow) up to float
rounding, and fit_arms trains the arms fit_arm trains, bit for bit, on any number of processes."""

from __future__ import annotations

import pytest
import torch

from mhe.flows import ConditionalFlow
from mhe.toy import ToyFlow, fit_arm, fit_arms


def _pair(context: int, kind: str = "nsf_coupling", features: int = 2) -> tuple[ConditionalFlow, ToyFlow]:
    torch.manual_seed(0)
    reference = ConditionalFlow(features, context, transforms=4, hidden=(32, 32), kind=kind, bins=8)
    torch.manual_seed(0)
    lean = ToyFlow(features, context, transforms=4, hidden=(32, 32), kind=kind, bins=8)
    # the same seed gives the same weights; move them off the identity start so that the splines bend
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), lean.state_dict().values(),
                                                 strict=True))
    with torch.no_grad():
        generator = torch.Generator().manual_seed(1)
        for p in reference.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator))
    lean.load_state_dict(reference.state_dict())
    return reference, lean


@pytest.mark.parametrize("context", [2, 0])
def test_samples_log_q_and_gradients_match_zuko(context):
    reference, lean = _pair(context)
    c = torch.randn(6, 2, generator=torch.Generator().manual_seed(2)) if context else None
    kwargs = {} if context else {"batch_size": 6}
    out = []
    for flow in (reference, lean):
        torch.manual_seed(3)  # the same base noise: ToyFlow draws it as ConditionalFlow does
        x, log_q = flow.rsample_and_log_prob(c, 10, antithetic=True, **kwargs)
        loss = log_q.mean() + x.square().mean()
        out.append((x, log_q, torch.autograd.grad(loss, list(flow.parameters()))))
    (x_ref, lq_ref, g_ref), (x, lq, g) = out
    assert x.shape == x_ref.shape == (6, 10, 2) and lq.shape == (6, 10)
    assert (x - x_ref).abs().max() < 1e-4
    assert (lq - lq_ref).abs().max() < 1e-3
    assert lq.std() > 0.1  # the splines bend: the check is not trivially passed by identities
    for a, b in zip(g_ref, g, strict=True):
        assert (a - b).abs().max() <= 1e-3 * (1 + a.abs().max())


@pytest.mark.parametrize("context", [2, 0])
def test_log_prob_matches_zuko_and_inverts_the_sampling_pass(context):
    reference, lean = _pair(context)
    generator = torch.Generator().manual_seed(4)
    c = torch.randn(5, 2, generator=generator) if context else None
    points = 3 * torch.randn(5, 7, 2, generator=generator)  # some beyond the splines' bound (identity there)
    points[0, 0] = torch.tensor([9.0, -8.0])
    assert (lean.log_prob(points, c) - reference.log_prob(points, c)).abs().max() < 1e-3
    if context:
        assert (lean.log_prob(points[:, 0], c) - reference.log_prob(points[:, 0], c)).abs().max() < 1e-3
    x, log_q = lean.rsample_and_log_prob(c, 4, batch_size=None if context else 5)
    assert (lean.log_prob(x, c) - log_q).abs().max() < 1e-3
    x0 = lean.mode(c, batch_size=None if context else 5)
    torch.manual_seed(0)
    assert (x0 - reference.mode(c, batch_size=None if context else 5)).abs().max() < 1e-4


def test_other_flows_take_the_generic_route():
    reference, lean = _pair(2, kind="realnvp")
    c = torch.randn(3, 2)
    torch.manual_seed(5)
    a = reference.rsample_and_log_prob(c, 4)
    torch.manual_seed(5)
    b = lean.rsample_and_log_prob(c, 4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="num_samples"):
        _pair(2)[1].rsample_and_log_prob(c, 0)


def test_fit_arms_gives_fit_arms_models_bit_for_bit_on_two_processes():
    runs = {"mhentropy": {"objective": "mhentropy", "steps": 6},
            "nll": {"objective": "nll", "steps": 4, "bias": 1.0}}
    parallel = fit_arms(runs, seed=1, workers=2)
    assert list(parallel) == list(runs)
    for name, kwargs in runs.items():
        alone = fit_arm(seed=1, **kwargs)
        assert parallel[name].history == alone.history
        assert all(torch.equal(a, b) for a, b in zip(parallel[name].state_dict().values(),
                                                     alone.state_dict().values(), strict=True))
        assert not parallel[name].training and parallel[name].options == alone.options
    with pytest.raises(ValueError, match="workers"):
        fit_arms(runs, workers=0)
