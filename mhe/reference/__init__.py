"""A reference posterior: samples of the very target a model's flow is trained against (issue 29).

* :mod:`mhe.reference.target`: ``ModelTarget``, the model's own unnormalised target ``log p̃(θ | obs)``
  (reference 1: the head's outputs held; reference 2: sampled under ``HeadPrior``).
* :mod:`mhe.reference.sampler`: ``hmc``, batched HMC with a dense metric adapted in the warm-up, and
  ``tempered_hmc``, replica exchange across likelihood temperatures, which weighs discrete modes (limb
  depth flips) by their mass.
* :mod:`mhe.reference.diagnostics`: ``split_rhat`` and ``ess_bulk`` (Vehtari et al., 2021).
* :mod:`mhe.reference.compare`: the hypotheses against the reference's draws: calibration, energy distance,
  spread ratio, mass per depth-flip mode.

docs/reference_posterior.md describes the method and its validation.
"""

from mhe.reference.compare import calibration_against_draws, depth_signs, energy_distance, flip_mass, spread_ratio
from mhe.reference.diagnostics import ess_bulk, split_rhat
from mhe.reference.sampler import HMCResult, geometric_ladder, hmc, tempered_hmc
from mhe.reference.target import HEAD_PRIORS, HeadPrior, ModelTarget

__all__ = [
    "HeadPrior",
    "HEAD_PRIORS",
    "ModelTarget",
    "HMCResult",
    "hmc",
    "tempered_hmc",
    "geometric_ladder",
    "split_rhat",
    "ess_bulk",
    "calibration_against_draws",
    "energy_distance",
    "spread_ratio",
    "depth_signs",
    "flip_mass",
]
