"""fit_arms trains the arms fit_arm trains, bit for bit, on any number of processes and with the arms that differ
only in their term weights batched into one model (fit_arm_group); in_processes runs closures on forked workers."""

from __future__ import annotations

import pytest
import torch

from mhe.toy import fit_arm, fit_arm_group, fit_arms, fit_target, in_processes


def _same_arm(model, alone) -> None:
    assert model.history == alone.history
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), alone.state_dict().values(),
                                                 strict=True))
    assert not model.training and model.options == alone.options


def test_fit_arms_gives_fit_arms_models_bit_for_bit_on_two_processes():
    runs = {"mhentropy": {"objective": "mhentropy", "steps": 6},
            "no_prior": {"objective": "no_prior", "steps": 6},  # batched with mhentropy
            "nll": {"objective": "nll", "steps": 4, "bias": 1.0}}
    parallel = fit_arms(runs, seed=1, workers=2)
    assert list(parallel) == list(runs)
    for name, kwargs in runs.items():
        _same_arm(parallel[name], fit_arm(seed=1, **kwargs))
    with pytest.raises(ValueError, match="workers"):
        fit_arms(runs, workers=0)


def test_a_batched_group_gives_each_arm_of_fit_arm_bit_for_bit_through_both_phases():
    """Pathwise steps (tempered and not, clipped) and score-function polish steps: every weight and loss the same."""
    objectives = ["mhentropy", "no_reconstruction", "no_prior"]
    group = fit_arm_group(objectives, steps=8, seed=2, anneal=0.25, polish=0.5)
    for objective, model in zip(objectives, group, strict=True):
        _same_arm(model, fit_arm(objective, steps=8, seed=2, anneal=0.25, polish=0.5))
    with pytest.raises(ValueError, match="no_entropy"):
        fit_arm_group(["mhentropy", "no_entropy"], steps=2)  # no polish phase: it cannot share the group's steps
    with pytest.raises(ValueError, match="distinct"):
        fit_arm_group(["mhentropy", "mhentropy"], steps=2)


def test_in_processes_runs_closures_on_forked_workers_with_the_results_of_a_call_here():
    jobs = {seed: (lambda seed=seed: fit_target("ring", "reverse_kl", steps=3, seed=seed)) for seed in (0, 1, 2)}
    done = in_processes(jobs, workers=2, cost=lambda seed: -seed)
    assert list(done) == [0, 1, 2]
    for seed, flow in done.items():
        alone = fit_target("ring", "reverse_kl", steps=3, seed=seed)
        assert all(torch.equal(a, b) for a, b in zip(flow.state_dict().values(), alone.state_dict().values(),
                                                     strict=True))
    with pytest.raises(ValueError, match="workers"):
        in_processes(jobs, workers=0)
