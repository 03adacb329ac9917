"""Trainings that more than one test checks, run once per pytest process and handed out again.

The tests that use one of these carry the same ``xdist_group`` mark, so that ``make test``'s two workers
give them to one worker and the fit runs once for all of them. A fit handed out again leaves the random
number generators (Python, NumPy, torch) as the fit itself left them, so a test sees exactly what it would
see had it trained the model itself; the model is in eval mode and the tests only sample from it.
"""

from __future__ import annotations

import functools
import random

import numpy as np
import torch

from mhe.toy import ArmModel, fit_arm

# the xdist group of the tests that use default_arm_fit
ARM_GROUP = "arm_default_fit"


@functools.cache
def _fit_and_state(objective: str, seed: int) -> tuple[ArmModel, tuple]:
    model = fit_arm(objective, seed=seed)
    return model, (random.getstate(), np.random.get_state(), torch.get_rng_state())


def default_arm_fit(objective: str = "mhentropy", seed: int = 0) -> ArmModel:
    """``fit_arm(objective, seed=seed)`` with fit_arm's default options (trained on the first call only); the
    generators are left in the state that fit leaves them in, every time."""
    model, (python_state, numpy_state, torch_state) = _fit_and_state(objective, seed)
    random.setstate(python_state)
    np.random.set_state(numpy_state)
    torch.set_rng_state(torch_state)
    return model
