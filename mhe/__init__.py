"""mhe: multi-hypothesis 3D hand and body pose with MHEntropy (Chen, Yang, Yao, ICCV 2023).

Topic modules (imported on demand, so ``import mhe`` stays fast):

- :mod:`mhe.body`       MANO / SMPL through smplx, real files or license-free stand-ins
- :mod:`mhe.geometry`   rotations, projection, normalisation, Procrustes
- :mod:`mhe.flows`      conditional normalizing flows (zuko)
- :mod:`mhe.objectives` MHEntropy, NLL, min-of-N, deterministic
- :mod:`mhe.toy`        2D targets and the two-link arm
- :mod:`mhe.data`       synthetic occluded hands, HO3D v3
- :mod:`mhe.metrics`    BH/MPJPE, PA-MPJPE, AH, PJD, RD
- :mod:`mhe.models`     encoders + flow + deterministic head + body model
- :mod:`mhe.experiments` which model and data a config names; train / evaluate / load runs
- :mod:`mhe.evaluation`  the one evaluation path and its official defaults
- :mod:`mhe.train`      the trainer (checkpoints, resume, interrupts, DDP)
- :mod:`mhe.viz`        figures and explorers

Shape letters used in every docstring: B batch, S hypotheses (samples), J joints,
V vertices, D dimension, K observed keypoints, C context features.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "default_device", "seed_everything"]


def __getattr__(name: str) -> Any:
    # torch loads only when these are used, so `import mhe` (and `mhe --help`) stays fast
    if name in ("default_device", "seed_everything"):
        from mhe import utils

        return getattr(utils, name)
    raise AttributeError(f"module 'mhe' has no attribute {name!r}")
