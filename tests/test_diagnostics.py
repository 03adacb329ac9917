"""Posterior diagnostics (mhe.diagnostics) against closed forms: the ESS of Gaussian importance weights,
calibration of samples drawn from the truth's own distribution, and a too-narrow q."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch.utils.data import default_collate

from mhe import diagnostics as dg

warnings.filterwarnings("ignore", category=UserWarning)


def test_ess_of_exact_and_degenerate_weights():
    log_q = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(dg.importance_ess(log_q + 7.0, log_q), torch.ones(3, dtype=torch.float64))
    one = torch.full((2, 50), -1e4)
    one[:, 0] = 0.0  # one sample carries all the weight
    assert torch.allclose(dg.importance_ess(one, torch.zeros(2, 50)), torch.full((2,), 1 / 50, dtype=torch.float64))
    with pytest.raises(ValueError, match="both be"):
        dg.importance_ess(torch.zeros(2, 3), torch.zeros(2, 4))


def test_ess_of_a_shifted_gaussian_matches_the_closed_form():
    # q = N(0, 1), p = N(mu, 1): E_q[w^2] / E_q[w]^2 = exp(mu^2), so ESS / S -> exp(-mu^2)
    g = torch.Generator().manual_seed(1)
    mu = torch.tensor([0.0, 0.3, 0.6])[:, None]
    x = torch.randn(3, 40000, generator=g, dtype=torch.float64)
    log_q = -0.5 * x**2
    log_p = -0.5 * (x - mu) ** 2 + 3.0  # any constant
    ess = dg.importance_ess(log_p, log_q)
    torch.testing.assert_close(ess, torch.exp(-mu[:, 0].double() ** 2), atol=0.03, rtol=0)


def test_calibration_of_samples_from_the_truths_distribution_is_the_diagonal():
    g = torch.Generator().manual_seed(2)
    hyp = torch.randn(500, 200, 3, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5])
    truth = torch.randn(500, 3, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5])
    curve = dg.calibration_curve(hyp, truth)
    alphas = torch.tensor(dg.DEFAULT_ALPHAS, dtype=torch.float64)
    assert (curve - alphas).abs().max() < 0.05
    assert dg.calibration_gap(curve) < 0.03
    # a q half as wide as the truth's spread puts too few truths inside every region
    narrow = dg.calibration_curve(0.5 * hyp, truth)
    assert (narrow < alphas - 0.05).all() and dg.calibration_gap(narrow) > 0.2
    # and a mask keeps only the pairs asked for
    mask = torch.zeros(500, 3, dtype=torch.bool)
    mask[:, 1] = True
    torch.testing.assert_close(dg.calibration_curve(hyp, truth, mask), dg.calibration_curve(hyp[:, :, 1:2], truth[:, 1:2]))


def test_calibration_by_hand():
    # one item, one joint in 1D: hypotheses at -2, -1, 1, 2 (mean 0); radii 1, 1, 2, 2 after sorting
    hyp = torch.tensor([-2.0, -1.0, 1.0, 2.0]).reshape(1, 4, 1, 1)
    curve = dg.calibration_curve(hyp, torch.tensor([[[1.5]]]), alphas=[0.25, 0.5, 0.75, 0.99])
    assert curve.tolist() == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="alphas"):
        dg.calibration_curve(hyp, torch.tensor([[[1.5]]]), alphas=[0.0, 0.5])


def test_model_diagnostics_run_on_a_hand_model(tmp_path):
    from mhe.config import ModelConfig
    from mhe.data import SyntheticHands
    from mhe.models.hand import MultiHypothesisHand

    ds = SyntheticHands("val", size=4, seed=1, cache_dir=tmp_path)
    batch = default_collate([ds[i] for i in range(4)])
    torch.manual_seed(0)
    model = MultiHypothesisHand(ModelConfig(context_dim=32, encoder_hidden=(32,), flow_transforms=2,
                                            flow_hidden=(32,), head_hidden=32)).eval()
    ess = dg.hypotheses_ess(model, batch, num_samples=16)
    assert ess.shape == (4,) and ((ess >= 1 / 16 - 1e-9) & (ess <= 1 + 1e-9)).all()
    ll = dg.ground_truth_log_likelihood(model, batch)
    with torch.no_grad():
        expected = model.log_prob(batch, batch["params"]) / 45
    torch.testing.assert_close(ll, expected)
    assert math.isfinite(float(ll.mean()))
