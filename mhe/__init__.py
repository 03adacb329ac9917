"""mhe: multi-hypothesis 3D hand and body pose with MHEntropy (Chen, Yang, Yao, ICCV 2023).

Core modules, the method (imported on demand, so ``import mhe`` stays fast):

- :mod:`mhe.body`        MANO / SMPL through smplx, real files or license-free stand-ins
- :mod:`mhe.geometry`    rotations, projection, normalisation, Procrustes
- :mod:`mhe.priors`      the soft box and ball pose priors and the official constants
- :mod:`mhe.flows`       conditional normalizing flows (zuko)
- :mod:`mhe.objectives`  MHEntropy, NLL, min-of-N, deterministic
- :mod:`mhe.training`    the one training loop (toy, flows and the lab's trainer step through it)
- :mod:`mhe.toy`         2D targets and the two-link arm
- :mod:`mhe.data`        synthetic occluded hands and bodies, HO3D v3, 3DPW
- :mod:`mhe.config`      the typed config dataclasses the models read
- :mod:`mhe.models`      encoders + flow + deterministic head + body model
- :mod:`mhe.metrics`     BH/MPJPE, PA-MPJPE, AH, PJD, RD
- :mod:`mhe.evaluation`  the one evaluation path and its official defaults
- :mod:`mhe.selection`   picking a hypothesis by evidence the model never saw
- :mod:`mhe.diagnostics` calibration, selection and failure analyses of a model on data
- :mod:`mhe.viz`         figures and explorers

The lab, :mod:`mhe.lab`, runs the method: experiments (which model and data a config names),
the trainer, checkpoints, distributed training, run logs, config YAML I/O, the ``mhe`` command,
the committed tables, the report and the notebook runner. The lab imports the core; the core never
imports the lab (docs/architecture.md).

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
