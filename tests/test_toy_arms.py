"""fit_arms trains the arms fit_arm trains, bit for bit, on any number of processes."""

from __future__ import annotations

import pytest
import torch

from mhe.toy import fit_arm, fit_arms


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
