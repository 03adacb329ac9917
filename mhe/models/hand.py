"""The multi-hypothesis hand: MANO as a :class:`~mhe.models.multi_hypothesis.BodySpec`.

The flow samples the finger pose θ: 45 MANO PCA coefficients by default (as the official code), or
per-joint axis-angle (45) or 6D (90) as options; the deterministic head gives the global rotation,
the shape β and the camera. MANO (:mod:`mhe.body`) turns each hypothesis into 21 keypoints (MANO's 16
joints and the five fingertips, HO3D's order) through its keypoints-only forward, about 10× cheaper
than the mesh. The priors and their official constants are in :mod:`mhe.priors`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mhe.body import HAND_BONE, HAND_ROOT, load_mano
from mhe.config import ModelConfig
from mhe.geometry import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_rot6d, rot6d_to_matrix
from mhe.models.multi_hypothesis import MultiHypothesisModel, BodySpec
from mhe.priors import hand_log_prior

CROP_PIXELS = 256  # metrics report 2D errors in pixels of a 256 × 256 crop, as the paper
POSE_DIMS = {"axis_angle": 45, "6d": 90}


class HandSpec(BodySpec):
    """MANO hands: 21 keypoints, root = middle MCP, bone = middle MCP → PIP, θ in PCA / axis-angle / 6D.

    Args:
        cfg: the model config (``pose_repr``, ``num_pca_comps``).
        mano: a body model from :func:`mhe.body.load_mano` (built from ``cfg`` when None); it must take
            PCA coefficients when ``cfg.pose_repr == "pca"`` and axis-angle otherwise.
    """

    name = "hand"
    num_keypoints = 21
    root = HAND_ROOT
    bone = HAND_BONE
    crop_pixels = CROP_PIXELS

    def __init__(self, cfg: ModelConfig, mano: nn.Module | None = None) -> None:
        super().__init__()
        if cfg.pose_repr not in ("pca", "axis_angle", "6d"):
            raise ValueError(f"model.pose_repr must be 'pca', 'axis_angle' or '6d', got {cfg.pose_repr!r}")
        self.pose_repr = cfg.pose_repr
        use_pca = cfg.pose_repr == "pca"
        if mano is None:
            mano = load_mano(use_pca=use_pca, num_pca_comps=cfg.num_pca_comps, flat_hand_mean=False)
        if bool(mano.use_pca) != use_pca:
            raise ValueError(
                f"model.pose_repr={cfg.pose_repr!r} needs a MANO built with use_pca={use_pca}; "
                "pass mano=None to build the right one"
            )
        for module in mano.modules():
            for name, buf in list(module._buffers.items()):
                if buf is not None:
                    module.register_buffer(name, buf, persistent=False)
        self.mano = mano
        self.pose_dim = cfg.num_pca_comps if use_pca else POSE_DIMS[cfg.pose_repr]

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "is_standin": bool(self.mano.is_standin), "side": self.mano.side}

    def to_mano(self, theta: Tensor) -> Tensor:
        """Flow variable ``θ (..., D)`` → MANO's ``hand_pose`` input (PCA coefficients or axis-angle)."""
        if self.pose_repr == "6d":
            return matrix_to_axis_angle(rot6d_to_matrix(theta.unflatten(-1, (15, 6)))).flatten(-2)
        return theta

    def mano_inputs(self, theta: Tensor, head: dict[str, Tensor]) -> dict[str, Tensor]:
        """MANO's inputs for ``θ (B, S, D)``: the head's per-item rotation and shape repeated over S."""
        B, S, _ = theta.shape
        return {
            "global_orient": head["global_orient"][:, None].expand(B, S, 3),
            "hand_pose": self.to_mano(theta),
            "betas": head["betas"][:, None].expand(B, S, head["betas"].shape[-1]),
        }

    def keypoints(self, theta: Tensor, head: dict[str, Tensor]) -> Tensor:
        return self.mano.keypoints(**self.mano_inputs(theta, head))

    def vertices(self, theta: Tensor, head: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        out = self.mano(**self.mano_inputs(theta, head))
        return out.vertices, out.joints

    def log_prior(self, theta: Tensor, head: dict[str, Tensor]) -> Tensor:
        axis_angle = None if self.pose_repr == "pca" else self.to_mano(theta)
        return hand_log_prior(theta, axis_angle, self.pose_repr, head["global_orient"], head["betas"])

    def params_from_gt(self, pca: Tensor) -> Tensor:
        """Ground-truth PCA coefficients ``(B, 45)`` → this model's flow variable ``(B, D)``."""
        if self.pose_repr == "pca":
            return pca[..., : self.pose_dim]
        # With flat_hand_mean=False both MANO inputs are offsets from hands_mean: aa = coeffs @ basis.
        basis = torch.as_tensor(self.mano.np_hand_components, dtype=pca.dtype, device=pca.device)
        aa = pca @ basis[: pca.shape[-1]]
        if self.pose_repr == "axis_angle":
            return aa
        return matrix_to_rot6d(axis_angle_to_matrix(aa.unflatten(-1, (15, 3)))).flatten(-2)


class MultiHypothesisHand(MultiHypothesisModel):
    """The hand model: :class:`~mhe.models.multi_hypothesis.MultiHypothesisModel` with a :class:`HandSpec`.

    Args:
        cfg: sizes and the pose parameterisation (:class:`mhe.config.ModelConfig`).
        mano: a body model from :func:`mhe.body.load_mano` (built from ``cfg`` when None).
        init_camera: (log_scale, tx, ty) the head starts from.

    The body model's buffers are not saved in ``state_dict`` (checkpoints carry no licensed data);
    a checkpoint records instead whether a real or a stand-in MANO was used.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        mano: nn.Module | None = None,
        init_camera: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> None:
        super().__init__(cfg, HandSpec(cfg, mano), init_camera)

    @property
    def mano(self) -> nn.Module:
        """The MANO layer hypotheses are decoded with."""
        return self.spec.mano

    def params_from_pca(self, pca: Tensor) -> Tensor:
        """Ground-truth PCA coefficients ``(B, 45)`` → this model's flow variable ``(B, D)`` (for NLL)."""
        return self.spec.params_from_gt(pca)

    def pose_to_mano(self, theta: Tensor) -> Tensor:
        """Flow variable ``θ (..., D)`` → MANO's ``hand_pose`` input."""
        return self.spec.to_mano(theta)
