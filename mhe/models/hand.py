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

from mhe.body import HAND_BONE, HAND_KEYPOINTS, HAND_PARENTS, HAND_ROOT, load_mano
from mhe.body.limits import PLAUSIBLE_TOLERANCE, FingerLimits
from mhe.config import ModelConfig
from mhe.geometry import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_rot6d, rot6d_to_matrix
from mhe.models.multi_hypothesis import BodySpec, MultiHypothesisModel
from mhe.priors import hand_log_prior, rot6d_orthonormality

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
    keypoint_names = tuple(HAND_KEYPOINTS)
    parents = tuple(int(p) for p in HAND_PARENTS)
    root = HAND_ROOT
    bone = HAND_BONE
    crop_pixels = CROP_PIXELS
    # the palm (wrist and the four finger MCPs): a rigid part whose depth flip the metrics count
    flip_keypoints = (0, 1, 4, 7, 10)
    # smplx's MANO layer or the stand-in: Any, since mypy reads its buffers as Tensor | Module
    mano: Any

    def __init__(self, cfg: ModelConfig, mano: nn.Module | None = None) -> None:
        super().__init__()
        if cfg.pose_repr not in ("pca", "axis_angle", "6d"):
            raise ValueError(f"model.pose_repr must be 'pca', 'axis_angle' or '6d', got {cfg.pose_repr!r}")
        self.pose_repr = cfg.pose_repr
        self.pose_prior = cfg.pose_prior
        self.joint_limit_weight = float(cfg.joint_limit_weight)
        use_pca = cfg.pose_repr == "pca"
        # The official per-joint option samples full rotations (MANO's flat hand mean); everything
        # else samples offsets from MANO's mean pose, as the official PCA code.
        flat = self.pose_prior == "official" and not use_pca
        if mano is None:
            mano = load_mano(use_pca=use_pca, num_pca_comps=cfg.num_pca_comps, flat_hand_mean=flat)
        if bool(mano.use_pca) != use_pca:
            raise ValueError(
                f"model.pose_repr={cfg.pose_repr!r} needs a MANO built with use_pca={use_pca}; "
                "pass mano=None to build the right one"
            )
        if bool(mano.flat_hand_mean) != flat:
            raise ValueError(
                f"model.pose_repr={cfg.pose_repr!r} with pose_prior={self.pose_prior!r} needs a MANO built "
                f"with flat_hand_mean={flat}; pass mano=None to build the right one"
            )
        self.limits = FingerLimits(mano)
        for module in mano.modules():
            for name, buf in list(module._buffers.items()):
                if buf is not None:
                    module.register_buffer(name, buf, persistent=False)
        self.mano = mano
        self.pose_dim = cfg.num_pca_comps if use_pca else POSE_DIMS[cfg.pose_repr]

    @property
    def faces(self):
        """The mesh's triangles ``(F, 3)`` int64 (numpy)."""
        return self.mano.faces

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "is_standin": bool(self.mano.is_standin), "side": self.mano.side}

    def to_mano(self, theta: Tensor) -> Tensor:
        """Flow variable ``θ (..., D)`` → MANO's ``hand_pose`` input (PCA coefficients or axis-angle)."""
        if self.pose_repr == "6d":
            return matrix_to_axis_angle(rot6d_to_matrix(theta.unflatten(-1, (15, 6)))).flatten(-2)
        return theta

    def full_axis_angle(self, theta: Tensor) -> Tensor:
        """Flow variable ``θ (..., D)`` → the full local rotations of the 15 finger joints ``(..., 45)``
        (what :mod:`mhe.body.limits` reads: MANO's mean pose added unless the model is flat-mean)."""
        pose = self.to_mano(theta)
        if self.pose_repr == "pca":
            pose = pose @ self.mano.hand_components[: pose.shape[-1]].to(pose.dtype)
        return pose + self.mano.pose_mean[3:].to(pose.dtype)

    def offset_axis_angle(self, theta: Tensor) -> Tensor:
        """Flow variable ``θ (..., D)`` → finger axis-angle as offsets from MANO's mean pose ``(..., 45)``."""
        return self.full_axis_angle(theta) - self.mano.file_hand_mean.to(theta.dtype)

    def flip_reflection(self) -> Tensor:
        """The reflection across the palm's plane in MANO's frame (its normal from the flat hand, mean
        shape): the palm keypoints are fixed by it, so R and diag(1, 1, -1) · R · S put the palm at mirror
        images in depth (up to the palm's small curvature)."""
        n = self.limits.palm
        return torch.eye(3, dtype=torch.float64) - 2 * torch.outer(n, n)

    def rotation_penalty(self, theta: Tensor) -> Tensor:
        return rot6d_orthonormality(theta) if self.pose_repr == "6d" else theta.new_zeros(theta.shape[:-1])

    def plausible(self, theta: Tensor) -> Tensor:
        """Whether each hypothesis' every finger joint is within its anatomical limits (up to
        :data:`mhe.body.limits.PLAUSIBLE_TOLERANCE`): ``θ (..., D)`` → ``(...)`` bool."""
        return self.limits.plausible(self.full_axis_angle(theta).double(), PLAUSIBLE_TOLERANCE)

    def mano_inputs(self, theta: Tensor, head: dict[str, Tensor]) -> dict[str, Tensor]:
        """MANO's inputs for ``θ (B, S, D)``: the head's per-item rotation (or the flow's per-hypothesis
        rotation ``(B, S, 3)``) and shape repeated over S."""
        B, S, _ = theta.shape
        orient = head["global_orient"]
        return {
            "global_orient": orient if orient.dim() == 3 else orient[:, None].expand(B, S, 3),
            "hand_pose": self.to_mano(theta),
            "betas": head["betas"][:, None].expand(B, S, head["betas"].shape[-1]),
        }

    def keypoints(self, theta: Tensor, head: dict[str, Tensor]) -> Tensor:
        return self.mano.keypoints(**self.mano_inputs(theta, head))

    def vertices(self, theta: Tensor, head: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        out = self.mano(**self.mano_inputs(theta, head))
        return out.vertices, out.joints

    def log_prior(self, theta: Tensor, head: dict[str, Tensor]) -> Tensor:
        per_joint = self.pose_repr != "pca"
        full = self.full_axis_angle(theta) if per_joint or self.pose_prior == "joint_limits" else None
        offset = self.offset_axis_angle(theta) if per_joint and self.pose_prior == "box" else None
        return hand_log_prior(theta, self.pose_repr, head["global_orient"], head["betas"],
                              pose_prior=self.pose_prior, offset_aa=offset, full_aa=full, limits=self.limits,
                              joint_limit_weight=self.joint_limit_weight)

    def params_from_gt(self, pca: Tensor) -> Tensor:
        """Ground-truth PCA coefficients ``(B, 45)`` → this model's flow variable ``(B, D)``."""
        if self.pose_repr == "pca":
            return pca[..., : self.pose_dim]
        # With flat_hand_mean=False both MANO inputs are offsets from hands_mean: aa = coeffs @ basis;
        # a flat-mean MANO takes the full rotations (the mean added).
        basis = torch.as_tensor(self.mano.np_hand_components, dtype=pca.dtype, device=pca.device)
        aa = pca @ basis[: pca.shape[-1]]
        if self.mano.flat_hand_mean:
            aa = aa + self.mano.file_hand_mean.to(pca)
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

    spec: HandSpec

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
