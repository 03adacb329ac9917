"""The multi-hypothesis body: SMPL as a :class:`~mhe.models.multi_hypothesis.BodySpec`, in ProHMR's setting.

The flow samples the whole body pose, the global orientation included: 24 rotations in the continuous
6D representation (144 numbers; the global one through ``model.rotation_in_flow``, the 23 joints as the
spec's θ), each kept near a valid rotation by the 6D orthonormality term. The deterministic head gives
the shape β and the camera. SMPL (:mod:`mhe.body`) turns each hypothesis into the 17 body keypoints
(:data:`mhe.body.BODY_KEYPOINTS`, Human3.6M's evaluation joints) through its keypoints-only forward,
which skips the 6890-vertex mesh; meshes are computed on request (:meth:`BodySpec.vertices`).

The prior keeps bodies bodies: the soft anatomical joint limits of :mod:`mhe.body.body_limits` on every
joint (``model.pose_prior: joint_limits``), optionally a pose mixture fitted on unpaired poses
(``learned``, :mod:`mhe.body.pose_prior`), the orthonormality term, and a soft box on β. ``plausible``
reports whether every joint of a hypothesis is within its limits, as for hands.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mhe.body import BODY_BONE, BODY_KEYPOINTS, BODY_PARENTS, BODY_ROOT, SMPL_TO_BODY, load_smpl
from mhe.body.body_limits import BODY_PLAUSIBLE_TOLERANCE, BodyLimits
from mhe.body.pose_prior import benchmark_pose_gmm
from mhe.config import ModelConfig
from mhe.geometry import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_rot6d, rot6d_to_matrix
from mhe.models.multi_hypothesis import BodySpec, MultiHypothesisModel
from mhe.priors import ORTHO_WEIGHT, box_prior, rot6d_orthonormality

CROP_PIXELS = 256
NUM_BODY_JOINTS = 23  # SMPL's joints below the root
# A soft box on the shape: SMPL's β are unit-variance PCA coefficients, so |β| <= 3 holds real bodies.
BODY_BETA_HALF_WIDTH, BODY_BETA_WEIGHT = 3.0, 50.0
# The prior of a shape the flow samples (model.shape_in_flow): how the synthetic bodies draw β (N(0, 0.5²), clipped
# to ±1; mhe/data/synthetic_bodies.py), as the pose prior is learned from the benchmark's unpaired poses.
BODY_SHAPE_PRIOR_SD = 0.5
# The body protocol (ProHMR, MHEntropy's body table): the best of 25 hypotheses.
BODY_EVAL_SAMPLES = 25
BODY_POSE_DIMS = {"axis_angle": 3 * NUM_BODY_JOINTS, "6d": 6 * NUM_BODY_JOINTS}
# The flow's pose variable θ is a scaled offset from the rest pose: rotation = REST + BODY_FLOW_SCALE · θ
# (6D: the identity's two columns; axis-angle: zero). The flow's standard normal base then starts near
# the rest pose with joint rotations of ~0.5 rad, not at random rotations; the map is affine, so it
# changes log q by a constant only (no effect on any objective's gradients).
BODY_FLOW_SCALE = 0.5
_REST = {"6d": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), "axis_angle": (0.0, 0.0, 0.0)}


def _per_hypothesis(betas: Tensor, B: int, S: int) -> Tensor:
    """The shape of every hypothesis ``(B, S, n)``: the head's ``(B, n)`` repeated, or the flow's ``(B, S, n)``."""
    return betas if betas.dim() == 3 else betas[:, None].expand(B, S, betas.shape[-1])


class SMPLSpec(BodySpec):
    """SMPL bodies: 17 keypoints (H36M order), root = pelvis, bone = pelvis → thorax, θ = 23 joints in 6D
    (ProHMR, the default) or axis-angle.

    Args:
        cfg: the model config (``pose_repr``: "6d" or "axis_angle"; ``joint_limit_weight``).
        smpl: a body model from :func:`mhe.body.load_smpl` (the neutral one when None).
    """

    name = "body"
    num_keypoints = len(BODY_KEYPOINTS)
    keypoint_names = tuple(BODY_KEYPOINTS)
    parents = tuple(int(p) for p in BODY_PARENTS)
    root = BODY_ROOT
    bone = BODY_BONE
    crop_pixels = CROP_PIXELS
    eval_samples = BODY_EVAL_SAMPLES
    mode_first = True  # ProHMR: hypothesis 0 is the mode (zero noise)
    shape_prior_sd = BODY_SHAPE_PRIOR_SD  # with model.shape_in_flow: the benchmark's β ~ N(0, 0.5²)

    # smplx's SMPL layer or the stand-in: Any, since mypy reads its buffers as Tensor | Module
    smpl: Any
    keypoint_ids: Tensor
    rest: Tensor

    def __init__(self, cfg: ModelConfig, smpl: nn.Module | None = None) -> None:
        super().__init__()
        if cfg.pose_repr not in BODY_POSE_DIMS:
            raise ValueError(f"a body model samples SMPL's joint rotations: model.pose_repr must be '6d' (ProHMR) "
                             f"or 'axis_angle', got {cfg.pose_repr!r}")
        if not cfg.rotation_in_flow:
            raise ValueError("a body model samples the global orientation with the pose (ProHMR's setting): "
                             "set model.rotation_in_flow: true")
        if cfg.pose_prior not in ("joint_limits", "learned"):
            raise ValueError(f"a body's model.pose_prior must be 'joint_limits' or 'learned' (joint limits plus a "
                             f"pose mixture fitted on unpaired poses), got {cfg.pose_prior!r}")
        self.pose_repr = cfg.pose_repr
        self.pose_prior = cfg.pose_prior
        self.joint_limit_weight = float(cfg.joint_limit_weight)
        smpl = load_smpl() if smpl is None else smpl
        for module in smpl.modules():
            for name, buf in list(module._buffers.items()):
                if buf is not None:
                    module.register_buffer(name, buf, persistent=False)
        self.smpl = smpl
        self.limits = BodyLimits()
        # the learned prior's mixture is saved with the model (it holds no licensed data)
        self.pose_gmm = benchmark_pose_gmm() if self.pose_prior == "learned" else None
        self.register_buffer("keypoint_ids", torch.as_tensor(SMPL_TO_BODY, dtype=torch.long), persistent=False)
        self.pose_dim = BODY_POSE_DIMS[cfg.pose_repr]
        rest = torch.tensor(_REST[cfg.pose_repr], dtype=torch.float32).repeat(NUM_BODY_JOINTS)
        self.register_buffer("rest", rest, persistent=False)

    def rotations(self, theta: Tensor) -> Tensor:
        """Flow variable ``θ (..., D)`` → the 23 joint rotations in the pose representation ``(..., D)``."""
        return self.rest.to(theta.dtype) + BODY_FLOW_SCALE * theta

    @property
    def faces(self):
        """The mesh's triangles ``(F, 3)`` int64 (numpy)."""
        return self.smpl.faces

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "is_standin": bool(self.smpl.is_standin), "gender": self.smpl.gender}

    def body_pose(self, theta: Tensor, rotations: Tensor | None = None) -> Tensor:
        """Flow variable ``θ (..., D)`` → SMPL's ``body_pose`` axis-angle ``(..., 69)`` (6D: from ``rotations``,
        θ's matrices of :meth:`matrices`, when given)."""
        if self.pose_repr == "6d":
            return matrix_to_axis_angle(self.matrices(theta) if rotations is None else rotations).flatten(-2)
        return self.rotations(theta)

    def matrices(self, theta: Tensor) -> Tensor:
        """The 23 joint rotation matrices ``(..., 23, 3, 3)`` of a 6D flow variable ``θ (..., D)``."""
        return rot6d_to_matrix(self.rotations(theta).unflatten(-1, (NUM_BODY_JOINTS, 6)))

    def smpl_inputs(self, theta: Tensor, head: dict[str, Tensor]) -> dict[str, Tensor]:
        B, S, _ = theta.shape
        orient = head["global_orient"]
        return {
            "global_orient": orient if orient.dim() == 3 else orient[:, None].expand(B, S, 3),
            "body_pose": self.body_pose(theta),
            "betas": _per_hypothesis(head["betas"], B, S),
        }

    def keypoints(self, theta: Tensor, head: dict[str, Tensor], rotations: Tensor | None = None) -> Tensor:
        """As :meth:`BodySpec.keypoints`; 6D: ``rotations`` are θ's matrices (:meth:`matrices`) when given."""
        # the indices as constants: a tensor would be read back to the host on every call (a sync on a GPU)
        if self.pose_repr != "6d":
            return self.smpl.keypoints(**self.smpl_inputs(theta, head), joints=SMPL_TO_BODY)
        # 6D: the rotation matrices go to SMPL as they are (no round trip through axis-angle and back)
        B, S, _ = theta.shape
        orient = head["global_orient"]
        rotations = self.matrices(theta) if rotations is None else rotations
        return self.smpl.keypoints(orient if orient.dim() == 3 else orient[:, None].expand(B, S, 3), None,
                                   _per_hypothesis(head["betas"], B, S), joints=SMPL_TO_BODY,
                                   body_rotations=rotations)

    def vertices(self, theta: Tensor, head: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        out = self.smpl(**self.smpl_inputs(theta, head))
        return out.vertices, out.joints[..., self.keypoint_ids, :]

    def rotation_penalty(self, theta: Tensor) -> Tensor:
        """The 6D orthonormality deviation of the 23 joint rotations ``(...)`` (0 for axis-angle)."""
        if self.pose_repr != "6d":
            return theta.new_zeros(theta.shape[:-1])
        return rot6d_orthonormality(self.rotations(theta))

    def log_prior(self, theta: Tensor, head: dict[str, Tensor], rotations: Tensor | None = None) -> Tensor:
        """As :meth:`BodySpec.log_prior`; 6D: ``rotations`` are θ's matrices (:meth:`matrices`) when given."""
        aa = self.body_pose(theta, rotations).unflatten(-1, (NUM_BODY_JOINTS, 3))
        pose = self.limits.log_prior(aa, self.joint_limit_weight) - ORTHO_WEIGHT * self.rotation_penalty(theta)
        if self.pose_gmm is not None:
            pose = pose + self.pose_gmm.log_prob(aa.flatten(-2))
        beta = box_prior(head["betas"], BODY_BETA_HALF_WIDTH, BODY_BETA_WEIGHT)  # (B,) or per hypothesis (B, S)
        return pose + (beta if beta.dim() == pose.dim() else beta[:, None])

    def keypoints_and_log_prior(self, theta: Tensor, head: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """:meth:`keypoints` and :meth:`log_prior` of one θ, its 6D rotation matrices made once for both (the same
        numbers as the two calls; about 5 % of a body training step)."""
        rotations = self.matrices(theta) if self.pose_repr == "6d" else None
        return self.keypoints(theta, head, rotations), self.log_prior(theta, head, rotations)

    def plausible(self, theta: Tensor) -> Tensor:
        """Whether every joint of each hypothesis is within its anatomical limits: ``θ (..., D)`` → ``(...)``."""
        aa = self.body_pose(theta.double()).unflatten(-1, (NUM_BODY_JOINTS, 3))
        return self.limits.plausible(aa, BODY_PLAUSIBLE_TOLERANCE)

    def params_from_gt(self, params: Tensor) -> Tensor:
        """Ground-truth ``body_pose`` axis-angle ``(B, 69)`` → the flow's pose variable ``(B, D)``."""
        rot = params if self.pose_repr == "axis_angle" else matrix_to_rot6d(
            axis_angle_to_matrix(params.unflatten(-1, (NUM_BODY_JOINTS, 3)))).flatten(-2)
        return (rot - self.rest.to(rot.dtype)) / BODY_FLOW_SCALE


class MultiHypothesisBody(MultiHypothesisModel):
    """The body model: :class:`~mhe.models.multi_hypothesis.MultiHypothesisModel` with an :class:`SMPLSpec`.

    SMPL's buffers are not saved in ``state_dict`` (checkpoints carry no licensed data); a checkpoint
    records whether a real or a stand-in SMPL was used.
    """

    spec: SMPLSpec

    def __init__(self, cfg: ModelConfig, smpl: nn.Module | None = None,
                 init_camera: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        super().__init__(cfg, SMPLSpec(cfg, smpl), init_camera)

    @property
    def smpl(self) -> nn.Module:
        """The SMPL layer hypotheses are decoded with."""
        return self.spec.smpl
