"""Toy problems: the arm's geometry (hand cases, exact inverse as a property test), the model
protocol's densities (grid quadrature), mode coverage on constructed samples, target samplers
against closed-form moments, and the trained objectives' behaviour (slow)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from shared_fits import ARM_GROUP, default_arm_fit

from mhe.objectives import OBJECTIVES
from mhe.toy import (
    ArmModel,
    ExactArmPosterior,
    TwoLinkArm,
    arm_batch,
    arm_coverage,
    count_modes,
    count_ring_modes,
    density_grid,
    fit_arm,
    fit_target,
    held_out_arm_observations,
    mode_coverage,
    ring_centres,
    ring_log_density,
    sample_target,
    target_log_density,
)

ARM = TwoLinkArm()
PI = math.pi


# -- arm geometry ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "angles, elbow, tip",
    [
        ((0.0, 0.0), (0.0, 1.0), (0.0, 2.0)),  # straight up
        ((PI / 2, 0.0), (1.0, 0.0), (2.0, 0.0)),  # straight along +x
        ((0.0, PI / 2), (0.0, 1.0), (1.0, 1.0)),  # elbow bent towards +x
        ((-PI / 2, -PI / 2), (-1.0, 0.0), (-1.0, -1.0)),
        ((0.0, PI), (0.0, 1.0), (0.0, 0.0)),  # folded back onto the root
    ],
)
def test_keypoints_and_heights_hand_cases(angles, elbow, tip):
    kp = ARM.keypoints(torch.tensor(angles))
    assert torch.allclose(kp, torch.tensor([elbow, tip]), atol=1e-6)
    assert torch.allclose(ARM.heights(torch.tensor(angles)), torch.tensor([elbow[1], tip[1]]), atol=1e-6)


angle_pairs = st.tuples(
    st.floats(-PI / 2, PI / 2, allow_nan=False), st.floats(-PI + 1e-3, PI - 1e-3, allow_nan=False)
)


@settings(max_examples=200, deadline=None)
@given(angle_pairs)
def test_solutions_round_trip_through_heights(pair):
    angles = torch.tensor(pair, dtype=torch.float64)
    heights = ARM.heights(angles)
    sols = ARM.solutions(heights)
    assert sols.shape == (4, 2)
    # every solution reproduces the observation and lies in the prior box ...
    assert torch.allclose(ARM.heights(sols), heights.expand(4, 2), atol=1e-6)
    assert (sols[:, 0].abs() <= PI / 2 + 1e-9).all() and (sols[:, 1].abs() <= PI + 1e-9).all()
    # ... and the pose we started from is one of them (α2 compared on the circle)
    d1 = (sols[:, 0] - angles[0]).abs()
    d2 = torch.remainder(sols[:, 1] - angles[1] + PI, 2 * PI) - PI
    # acos loses precision near ±1 (d acos/dh is unbounded), so compare via positions there
    close = (d1 < 1e-4) & (d2.abs() < 1e-4)
    kp_close = (ARM.keypoints(sols) - ARM.keypoints(angles)).norm(dim=-1).amax(-1) < 1e-3
    assert (close | kp_close).any()


def test_solutions_order_and_batch_shape():
    heights = ARM.heights(torch.tensor([[0.6, 0.5], [-0.3, -1.2]]))
    sols = ARM.solutions(heights)
    assert sols.shape == (2, 4, 2)
    assert (sols[:, :2, 0] >= 0).all() and (sols[:, 2:, 0] <= 0).all()
    tip = sols[..., 0] + sols[..., 1]
    tip = torch.remainder(tip + PI, 2 * PI) - PI
    assert (tip[:, [0, 2]] >= 0).all() and (tip[:, [1, 3]] <= 0).all()


def test_unreachable_heights_are_clamped():
    sols = ARM.solutions(torch.tensor([1.2, 2.5]))  # above reach: clamp to straight up
    assert torch.allclose(sols, torch.zeros(4, 2), atol=1e-6)


def test_arm_shape_errors():
    with pytest.raises(ValueError, match=r"angles must have shape \(\.\.\., 2\)"):
        ARM.keypoints(torch.zeros(3))
    with pytest.raises(ValueError, match="heights must have shape"):
        ARM.solutions(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"heights must have shape \(B, 2\)"):
        arm_batch(torch.zeros(2))


def test_log_prior_is_flat_inside_and_quadratic_outside():
    inside = ARM.log_prior(torch.tensor([[1.5, -3.0], [0.0, 0.0]]))
    assert torch.equal(inside, torch.zeros(2))
    # α1 = π: (π / (π/2) - 1)² = 1 -> -weight
    assert ARM.log_prior(torch.tensor([PI, 0.0]), weight=7.0).item() == pytest.approx(-7.0)


# -- the arm model ------------------------------------------------------------------------------


def _perturbed_model(**kwargs) -> ArmModel:
    model = ArmModel(transforms=2, hidden=(16,), **kwargs)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("absolute", [True, False])
def test_arm_model_density_in_angle_space_integrates_to_one(absolute):
    """The linear map from flow coordinates to angles is accounted for: ∫ q(α | h) dα = 1."""
    model = _perturbed_model(absolute=absolute, scale=(0.7, 1.3))
    heights = torch.tensor([[0.5, 0.2]])
    a1 = torch.linspace(-8, 8, 321)
    a2 = torch.linspace(-16, 16, 641)
    grid = torch.stack(torch.meshgrid(a1, a2, indexing="ij"), -1).reshape(1, -1, 2)
    with torch.no_grad():
        dens = model.log_prob(arm_batch(heights), grid).exp()
    mass = dens.sum() * (a1[1] - a1[0]) * (a2[1] - a2[0])
    assert mass.item() == pytest.approx(1.0, abs=0.02)


def test_arm_model_protocol_shapes_and_consistency():
    model = _perturbed_model()
    batch = arm_batch(torch.tensor([[0.5, 0.2], [0.9, 1.5], [0.1, -0.7]]))
    hyp = model.hypotheses(batch, num_samples=6)
    assert hyp.params.shape == (3, 6, 2) and hyp.log_q.shape == (3, 6)
    assert hyp.pred_obs.shape == (3, 6, 2, 1) and hyp.keypoints.shape == (3, 6, 2, 2)
    assert torch.allclose(hyp.pred_obs[..., 0], ARM.heights(hyp.params))
    # log q computed while sampling (via the map) equals log_prob of the angles (via its inverse)
    per_sample = torch.stack([model.log_prob(batch, hyp.params[:, s]) for s in range(6)], 1)
    assert torch.allclose(hyp.log_q, per_sample, atol=1e-4)
    mode = model.mode(batch)
    assert mode.params.shape == (3, 1, 2)
    assert model.sample(batch["obs"][..., 0], 4).shape == (3, 4, 2)
    with pytest.raises(ValueError, match=r"arm obs must have shape \(B, 2, 1\)"):
        model.hypotheses({"obs": torch.zeros(3, 2), "visible": torch.ones(3, 2, dtype=bool)}, 2)


def test_objectives_accept_the_arm_model_and_reach_all_parameters():
    model = _perturbed_model()
    heights = ARM.heights(ARM.sample_prior(8))
    batch = arm_batch(heights, ARM.solutions(heights)[:, 0])
    for name in ("mhentropy", "nll", "min_of_n", "deterministic"):
        model.zero_grad()
        loss, terms = OBJECTIVES[name](model, batch)
        loss.backward()
        assert math.isfinite(terms["loss"])
        assert all(p.grad is not None for p in model.parameters()), name


# -- coverage -----------------------------------------------------------------------------------


def test_mode_coverage_on_constructed_samples():
    modes = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]]])
    samples = torch.tensor([[[0.1, 0.0], [0.0, -0.2], [0.05, 0.05],  # 3 at mode 0
                             [1.9, 2.1],  # 1 at mode 3
                             [1.0, 1.0],  # between all modes, beyond the radius
                             [0.0, 1.2],  # within 1.0 of modes 0 and 2: nearest is mode 2
                             [5.0, 5.0], [0.7, 0.0]]])  # far; 0.7 from mode 0 > radius 0.5
    mass = mode_coverage(samples, modes, radius=0.5)
    assert torch.allclose(mass, torch.tensor([[3 / 8, 0.0, 0.0, 1 / 8]]))
    wide = mode_coverage(samples, modes, radius=1.0)
    assert torch.allclose(wide, torch.tensor([[4 / 8, 0.0, 1 / 8, 1 / 8]]))


def test_mode_coverage_errors():
    with pytest.raises(ValueError, match="samples must be"):
        mode_coverage(torch.zeros(2, 5, 2), torch.zeros(3, 4, 2), 0.5)
    with pytest.raises(ValueError, match="radius"):
        mode_coverage(torch.zeros(2, 5, 2), torch.zeros(2, 4, 2), 0.0)
    with pytest.raises(ValueError, match="heights must be"):
        arm_coverage(ExactArmPosterior(), torch.zeros(2, 2), torch.zeros(3, 4, 2))


def test_count_modes_on_constructed_samples():
    centres = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    # 6 samples at centre 0, 3 at centre 1, 1 at centre 2, 2 near no centre (of 12)
    samples = torch.tensor([[0.1, 0.0]] * 6 + [[2.0, 0.1]] * 3 + [[0.0, 1.9]] + [[5.0, 5.0]] * 2)
    assert count_modes(samples, centres, radius=0.5) == 3  # 1/12 >= 0.02
    assert count_modes(samples, centres, radius=0.5, min_fraction=0.1) == 2  # 1/12 < 0.1
    assert count_modes(samples, centres, radius=0.05) == 0
    with pytest.raises(ValueError, match="samples must be"):
        count_modes(samples[None], centres, 0.5)
    with pytest.raises(ValueError, match="min_fraction"):
        count_modes(samples, centres, 0.5, min_fraction=0.0)


def test_count_ring_modes_counts_the_ring_gaussians():
    centres = ring_centres()
    assert centres.shape == (8, 2) and torch.allclose(centres.norm(dim=-1), torch.full((8,), 2.0))
    assert ring_log_density(centres).min() > -1e-3  # the density's maxima are at the centres
    exact = sample_target("ring", 4000, torch.Generator().manual_seed(0))
    assert count_ring_modes(exact) == 8
    assert count_ring_modes(centres[[0, 0, 3]] + 0.01) == 2
    # a Gaussian with under 2 % of the samples is lost: 10 of 1000 samples on centre 5
    lopsided = torch.cat([centres[0].expand(990, 2), centres[5].expand(10, 2)])
    assert count_ring_modes(lopsided) == 1 and count_ring_modes(lopsided, min_fraction=0.01) == 2


def test_held_out_observations_have_four_separated_modes():
    heights, modes = held_out_arm_observations(50, min_separation=1.0, margin=0.3)
    assert heights.shape == (50, 2) and modes.shape == (50, 4, 2)
    assert torch.allclose(ARM.heights(modes), heights.unsqueeze(1).expand(-1, 4, -1), atol=1e-5)
    pair = torch.cdist(modes, modes) + 1e9 * torch.eye(4)
    assert (pair.amin((-1, -2)) >= 1.0).all()
    assert (modes[..., 0].abs() <= PI / 2 - 0.3).all() and (modes[..., 1].abs() <= PI - 0.3).all()


def test_exact_posterior_puts_equal_mass_on_the_four_modes():
    """|det ∂heights/∂α| = |sin α1 · sin(α1 + α2)| is the same at all four solutions, so the exact
    posterior gives each mode a quarter of the mass (small b)."""
    heights, modes = held_out_arm_observations(20)
    torch.manual_seed(0)
    result = arm_coverage(ExactArmPosterior(b=0.02), heights, modes, num_samples=2000, radius=0.5)
    assert result["modes_hit"] == 4.0
    for k in range(4):
        assert result[f"mass_{k}"] == pytest.approx(0.25, abs=0.02)
    assert result["height_error"] < 0.03  # mean |error| of a Laplace(b = 0.02) is 0.02


# -- 2D targets -----------------------------------------------------------------------------------


def test_banana_samples_match_closed_form_moments():
    x = sample_target("banana", 20000, torch.Generator().manual_seed(0))
    # x1 ~ N(0, 1); x2 = 0.5·x1² - 1 + N(0, 0.2²): E[x2] = -0.5, Var[x2] = 0.25·2 + 0.04
    assert x[:, 0].mean().item() == pytest.approx(0.0, abs=0.03)
    assert x[:, 0].var().item() == pytest.approx(1.0, abs=0.05)
    assert x[:, 1].mean().item() == pytest.approx(-0.5, abs=0.03)
    assert x[:, 1].var().item() == pytest.approx(0.54, abs=0.06)


def test_ring_samples_sit_on_the_ring_with_equal_mode_weights():
    x = sample_target("ring", 8000, torch.Generator().manual_seed(1))
    assert x.norm(dim=-1).mean().item() == pytest.approx(2.0, abs=0.05)
    sector = torch.remainder(torch.round(torch.atan2(x[:, 1], x[:, 0]) / (2 * PI / 8)), 8)
    counts = torch.bincount(sector.long(), minlength=8).float() / len(x)
    assert torch.allclose(counts, torch.full((8,), 1 / 8), atol=0.02)


def test_density_grid_and_target_errors():
    grid = density_grid(target_log_density("moons"), extent=2.0, n=11)
    assert grid.shape == (11, 11) and grid.max() <= 0.7
    with pytest.raises(ValueError, match="unknown target"):
        target_log_density("spiral")
    with pytest.raises(ValueError, match="n must be"):
        sample_target("ring", 0)
    with pytest.raises(ValueError, match="objective must be"):
        fit_target("ring", "elbo")


def test_fit_target_records_its_terms_and_tempers_only_when_asked():
    tempered = fit_target("ring", "reverse_kl", steps=6, anneal=0.5)
    plain = fit_target("ring", "reverse_kl", steps=6, anneal=0.0)
    assert [round(h["beta"], 4) for h in tempered.history] == [0.05, 0.3667, 0.6833, 1.0, 1.0, 1.0]
    assert all(h["beta"] == 1.0 for h in plain.history)
    for h in tempered.history:  # loss = β·target − entropy
        assert h["loss"] == pytest.approx(h["beta"] * h["target"] - h["entropy"], rel=1e-5, abs=1e-5)
    collapsed = fit_target("ring", "no_entropy", steps=3)
    assert all(h["loss"] == pytest.approx(h["beta"] * h["target"], rel=1e-5) for h in collapsed.history)
    assert fit_target("ring", "nll", steps=3, num_data=8).history == []
    with pytest.raises(ValueError, match="anneal"):
        fit_target("ring", anneal=1.5)


def test_fit_target_is_the_loop_notebook_01_writes_bit_for_bit():
    """fit_target steps through mhe.training.fit; its flow is the one of the plain loop (Adam, torch's cosine
    scheduler, tempered β) that notebook 01 writes out with a ConditionalFlow, to the last bit."""
    from mhe.flows import ConditionalFlow
    from mhe.toy import target_log_density
    from mhe.utils import seed_everything

    steps, anneal = 8, 0.5
    package = fit_target("ring", "reverse_kl", steps=steps, seed=3, anneal=anneal)
    seed_everything(3)
    flow = ConditionalFlow(2, 0, transforms=4, hidden=(32, 32), kind="nsf_coupling", bins=16)
    optimiser = torch.optim.Adam(flow.parameters(), lr=5e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    log_p, losses = target_log_density("ring"), []
    for step in range(steps):
        beta = min(0.05 + 0.95 * step / (anneal * steps), 1.0)
        x, log_q = flow.rsample_and_log_prob(None, 128, batch_size=1, antithetic=True)
        loss = beta * -log_p(x).mean() + log_q.mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
    assert [h["loss"] for h in package.history] == losses
    assert all(torch.equal(a, b) for a, b in zip(package.parameters(), flow.parameters(), strict=True))


def test_fit_target_entropy_spreads_and_no_entropy_collapses():
    spread = fit_target("ring", "reverse_kl", steps=150)
    point = fit_target("ring", "no_entropy", steps=150)
    xs = spread.sample(None, 2000, batch_size=1)[0]
    xp = point.sample(None, 2000, batch_size=1)[0]
    # the collapsed flow piles up on (nearly) one point; the entropy keeps several modes
    centre = xp.median(0).values
    assert ((xp - centre).norm(dim=-1) < 0.2).float().mean() > 0.9
    sectors = torch.remainder(torch.round(torch.atan2(xs[:, 1], xs[:, 0]) / (2 * PI / 8)), 8)
    assert len(torch.unique(sectors)) >= 6
    assert count_ring_modes(xp) <= 2 and count_ring_modes(xs) >= 5


# -- fit_arm --------------------------------------------------------------------------------------


def test_fit_arm_errors():
    with pytest.raises(ValueError, match="unknown arm objective"):
        fit_arm("min_of_n")
    with pytest.raises(TypeError, match="unknown fit_arm options"):
        fit_arm("mhentropy", learning_rate=1.0)
    with pytest.raises(ValueError, match="steps"):
        fit_arm("mhentropy", steps=0)
    with pytest.raises(ValueError, match="bias"):
        fit_arm("nll", bias=1.5)


def test_fit_arm_records_history_and_is_seeded():
    a = fit_arm("nll", steps=5, seed=3)
    b = fit_arm("nll", steps=5, seed=3)
    assert len(a.history) == 5 and a.history == b.history
    assert a.options.steps == 5 and a.train_seconds > 0


@pytest.mark.slow
@pytest.mark.xdist_group(ARM_GROUP)  # its MHEntropy fit is test_toy_posterior's too (tests/shared_fits.py)
def test_fit_arm_separates_entropy_from_no_entropy():
    """Qualitative behaviour with margins that hold on any machine and thread count (the coverage
    *targets* of the trained arm, 4 modes at ~0.25 each, are measured over seeds by
    ``benchmarks/bench_toy.py``): with the entropy term every one of the four solutions keeps a clear
    share of the samples; without it the flow collapses onto at most two; NLL with annotations that
    always pick one elbow side covers only that side. The two ablations train 150 steps (300 before): over
    seeds 0-4 no entropy hits at most 1.0 modes and the biased NLL puts at most 0.0014 on the elbow-left
    solutions and at least 0.39 on each elbow-right one, against the bounds 2, 0.02 and 0.3 checked here."""
    heights, modes = held_out_arm_observations(100)
    full = arm_coverage(default_arm_fit("mhentropy"), heights, modes, radius=0.5)  # fit_arm("mhentropy")
    assert full["modes_hit"] >= 3.0
    for k in range(4):
        assert 0.05 <= full[f"mass_{k}"] <= 0.45
    collapsed = arm_coverage(fit_arm("no_entropy", steps=150), heights, modes, radius=0.5)
    assert collapsed["modes_hit"] <= 2.0
    assert full["modes_hit"] >= collapsed["modes_hit"] + 1.0
    biased = arm_coverage(fit_arm("nll", steps=150, bias=1.0), heights, modes, radius=0.5)
    assert biased["mass_2"] + biased["mass_3"] < 0.02  # no elbow-left hypotheses
    assert biased["mass_0"] > 0.3 and biased["mass_1"] > 0.3


# -- figures --------------------------------------------------------------------------------------------


def test_collapsed_samples_are_ringed_and_labelled():
    import matplotlib.pyplot as plt

    from mhe.viz import OBJECTIVE_COLORS
    from mhe.viz.toy import MODE_COLORS, mark_collapse, plot_arm_ablation, plot_sample_panels

    assert not set(MODE_COLORS) & set(OBJECTIVE_COLORS.values()), "solutions and objectives share a colour"
    heights = ARM.heights(torch.tensor([0.55, 1.6]))
    modes = ARM.solutions(heights)
    point = modes[3].expand(300, 2).clone()
    spread = modes[torch.arange(300) % 4] + 0.1 * torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    samples = {"mhentropy": spread, "no_entropy": point}
    fig = plot_arm_ablation(samples, {n: ARM.keypoints(s) for n, s in samples.items()}, modes, heights)
    texts = [" ".join(t.get_text() for t in ax.texts) for ax in fig.axes]  # top row, then bottom row
    assert "all 300 arms' tips" in texts[2] and "all 300 hypotheses" in texts[5]  # no entropy: ringed
    assert not any("all 300" in texts[k] for k in (1, 4))  # MHEntropy: spread, not ringed
    plt.close(fig)
    fig = plot_sample_panels({"T = 0": torch.zeros(50, 2), "T = 1": torch.randn(50, 2)}, lim=2.0)
    assert "all 50 samples" in " ".join(t.get_text() for t in fig.axes[0].texts) and not fig.axes[1].texts
    plt.close(fig)
    fig, ax = plt.subplots()
    assert not mark_collapse(ax, torch.randn(10, 2).numpy(), "k") and mark_collapse(ax, torch.ones(10, 2).numpy(), "k")
    plt.close(fig)


def test_arm_ablation_figure_has_readable_titles_and_a_legend_of_its_marks():
    import matplotlib.pyplot as plt

    from mhe.viz.toy import plot_arm_ablation, plot_mode_masses

    heights = ARM.heights(torch.tensor([0.55, 1.6]))
    modes = ARM.solutions(heights)
    gen = torch.Generator().manual_seed(0)
    names = ["mhentropy", "no_entropy", "nll_elbow_right", "my_variant"]
    samples = {n: modes[torch.randint(0, 4, (40,), generator=gen)] + 0.05 * torch.randn(40, 2, generator=gen)
               for n in names}
    fig = plot_arm_ablation(samples, {n: ARM.keypoints(s) for n, s in samples.items()}, modes, heights)
    top, bottom = fig.axes[: len(names) + 1], fig.axes[len(names) + 1:]
    assert [ax.get_title() for ax in top] == ["the 4 exact solutions", "MHEntropy", "no entropy term",
                                              "NLL, labels always elbow-right", "my variant"]
    assert all("(rad)" in ax.get_xlabel() for ax in bottom) and "(rad)" in bottom[0].get_ylabel()
    (legend,) = fig.legends
    texts = " | ".join(t.get_text() for t in legend.get_texts())
    for mark in ("exact solutions", "sampled hypotheses", "sampled arms", "shoulder", "elbow height", "tip height",
                 "prior support: |α1| ≤ π/2, |α2| ≤ π"):
        assert mark in texts
    plt.close(fig)
    import pandas as pd

    table = pd.DataFrame({f"mass_{k}": [0.25, 0.9 * (k == 0)] for k in range(4)}, index=["mhentropy", "no_prior"])
    fig = plot_mode_masses(table)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["MHEntropy", "no prior term"]
    plt.close(fig)
