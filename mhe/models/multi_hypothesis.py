"""The multi-hypothesis model, generic over the body: encoder → flow over the pose + deterministic head
→ body model → camera.

``batch → encoder → context c (B, C)``; a conditional flow ``q(θ | c)`` over the articulated pose θ;
a deterministic head ``c → (global rotation, shape β, log-scale, 2D translation)``; the body model
turns every hypothesis into 3D keypoints and the orthographic crop camera (:mod:`mhe.geometry`) into
2D keypoints. Everything specific to one body (which body model, its keypoints and root, how θ feeds
it, its prior) comes from a :class:`BodySpec`; :mod:`mhe.models.hand` writes the one for MANO hands.

The model implements the protocol of :mod:`mhe.objectives` (``hypotheses`` / ``mode`` / ``log_prob``)
and :meth:`MultiHypothesisModel.predict`, the metric-unit predictions that :mod:`mhe.evaluation`
scores. A *deterministic* model (``model.deterministic``) predicts one hypothesis, the flow's mode.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from mhe.config import ModelConfig
from mhe.flows import ConditionalFlow
from mhe.geometry import (
    axis_angle_to_matrix,
    crop_to_pixels,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    project_orthographic,
    rot6d_to_matrix,
)
from mhe.models.encoders import build_encoder, encode
from mhe.objectives import Hypotheses
from mhe.priors import ORTHO_WEIGHT, rot6d_orthonormality

ROTATION_DIMS = {"axis_angle": 3, "6d": 6}
CAMERA_DIMS = 3  # log-scale 1 + translation 2


class BodySpec(nn.Module):
    """What the generic model needs to know about one body (hand, body, ...).

    Subclasses hold the body model as a submodule (its buffers non-persistent: checkpoints carry no
    licensed data) and set:

    Attributes:
        name: "hand", "body", ...
        num_keypoints: J, the keypoints the model predicts and the encoder reads.
        keypoint_names, parents: their names and each one's parent in the drawn skeleton (-1: none).
        root: index of the root keypoint (3D outputs are root-relative).
        bone: (parent, child) keypoints whose distance normalises 3D outputs (the paper's protocol).
        pose_dim: D, the dimension of the flow's variable θ.
        shape_dim: number of shape coefficients β the head predicts.
        crop_pixels: side of the crop in pixels that 2D metrics are reported in.
        eval_samples: hypotheses per item in the evaluation protocol (hands 200, bodies 25).
        mode_first: whether :meth:`MultiHypothesisModel.predict` returns the mode as hypothesis 0 and
            S - 1 samples after it (ProHMR's body protocol) instead of S samples (the hand protocol).
    """

    name: str = "body"
    num_keypoints: int
    keypoint_names: tuple[str, ...] = ()
    parents: tuple[int, ...] = ()
    root: int
    bone: tuple[int, int]
    pose_dim: int
    shape_dim: int = 10
    crop_pixels: int = 256
    eval_samples: int = 200  # hypotheses per item of the body's evaluation protocol (hands: 200)
    mode_first: bool = False  # predictions put the mode first (ProHMR's body protocol), then S - 1 samples

    def keypoints(self, theta: Tensor, head: dict[str, Tensor]) -> Tensor:
        """3D keypoints in metres ``(B, S, J, 3)`` of poses ``θ (B, S, D)`` with the head's per-item outputs."""
        raise NotImplementedError

    def vertices(self, theta: Tensor, head: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Mesh vertices ``(B, S, V, 3)`` and the model's joints ``(B, S, J', 3)`` in metres."""
        raise NotImplementedError

    def log_prior(self, theta: Tensor, head: dict[str, Tensor]) -> Tensor:
        """Log of the unnormalised prior ``(B, S)`` of poses ``θ (B, S, D)`` and the head's outputs."""
        raise NotImplementedError

    def params_from_gt(self, params: Tensor) -> Tensor:
        """Ground-truth pose parameters of a batch ``(B, D')`` → the flow's variable ``(B, D)`` (for NLL)."""
        return params

    def flip_reflection(self) -> Tensor:
        """The reflection ``S (3, 3)`` across the plane of the body's rigid part (the palm) in the body
        model's frame: a rotation R and ``diag(1, 1, -1) · R · S`` put that part at mirror images in depth."""
        raise NotImplementedError(f"the {self.name} spec defines no rigid part to flip")

    def tilt_axis(self) -> Tensor:
        """A unit vector ``(3,)`` in the plane of the rigid part, in the body model's frame: the depth of its
        rotated image, ``(R · d)_z``, changes sign under the depth flip (``model.flip_branches: tilt``)."""
        raise NotImplementedError(f"the {self.name} spec defines no rigid part to flip")

    def rotation_penalty(self, theta: Tensor) -> Tensor:
        """The 6D orthonormality deviation ``(...)`` of the rotations inside ``θ (..., D)`` (0 when θ holds
        none): what ProHMR's orthonormality loss penalises (the spec's prior includes it already)."""
        return theta.new_zeros(theta.shape[:-1])

    def plausible(self, theta: Tensor) -> Tensor | None:
        """Whether each pose ``θ (..., D)`` is anatomically plausible ``(...)`` bool; None when the body
        has no such test."""
        return None

    def info(self) -> dict[str, Any]:
        """What a checkpoint records about the body model (e.g. real or stand-in)."""
        return {"name": self.name}


class MultiHypothesisModel(nn.Module):
    """Encoder + conditional flow over the pose + deterministic head + body model, for any :class:`BodySpec`.

    Args:
        cfg: sizes, encoder choice, head rotation, ``deterministic`` (:class:`mhe.config.ModelConfig`).
        spec: the body (:class:`BodySpec`).
        init_camera: (log_scale, tx, ty) the head starts from (e.g. the training set's mean camera), so
            that early hypotheses already land inside the crop.
    """

    def __init__(
        self, cfg: ModelConfig, spec: BodySpec, init_camera: tuple[float, float, float] = (0.0, 0.0, 0.0)
    ) -> None:
        super().__init__()
        if cfg.head_rotation not in ROTATION_DIMS:
            raise ValueError(f"model.head_rotation must be 'axis_angle' or '6d', got {cfg.head_rotation!r}")
        self.cfg = cfg
        self.spec = spec
        self.pose_dim = spec.pose_dim
        # With the rotation in the flow, its variable is (6D global rotation, pose θ) and the head
        # gives no rotation.
        self.rotation_in_flow = bool(cfg.rotation_in_flow)
        self.flow_dim = self.pose_dim + (6 if self.rotation_in_flow else 0)
        self.encoder = build_encoder(cfg, num_keypoints=spec.num_keypoints, obs_dim=2)
        self.flow = ConditionalFlow(
            self.flow_dim, cfg.context_dim, transforms=cfg.flow_transforms, hidden=tuple(cfg.flow_hidden),
            kind=cfg.flow_kind,
        )
        self.rot_dim = 0 if self.rotation_in_flow else ROTATION_DIMS[cfg.head_rotation]
        self.flip_mixture = bool(cfg.flip_mixture)
        if self.flip_mixture:
            if not self.rotation_in_flow:
                raise ValueError("model.flip_mixture needs model.rotation_in_flow: true (it flips the flow's rotation)")
            self.register_buffer("reflection", spec.flip_reflection().float(), persistent=False)
            self.flip_head = nn.Linear(cfg.context_dim, 1)  # logit of the flipped branch's probability
            nn.init.zeros_(self.flip_head.weight)
            nn.init.zeros_(self.flip_head.bias)  # both tilts equally likely at the start
        if not cfg.flip_temperature > 0:
            raise ValueError(f"model.flip_temperature must be positive, got {cfg.flip_temperature!r}")
        self.flip_temperature = float(cfg.flip_temperature)
        if cfg.flip_branches not in ("shared", "conditional", "tilt"):
            raise ValueError(f"model.flip_branches must be 'shared', 'conditional' or 'tilt', got {cfg.flip_branches!r}")
        self.flip_conditional = self.flip_mixture and cfg.flip_branches in ("conditional", "tilt")
        # tilt: each branch is its own flow folded onto one half of the rotations (the palm tilted one way)
        self.flip_tilt = self.flip_mixture and cfg.flip_branches == "tilt"
        if self.flip_tilt:
            self.register_buffer("tilt_axis", spec.tilt_axis().float(), persistent=False)
        if self.flip_conditional:
            # each branch's flow context is the encoder's plus a learned vector: the flipped tilt gets a pose
            # distribution of its own (zero at the start: both branches begin as the shared mixture)
            self.branch_context = nn.Parameter(torch.zeros(2, cfg.context_dim))
        self.head = nn.Sequential(
            nn.Linear(cfg.context_dim, cfg.head_hidden),
            nn.ReLU(),
            nn.Linear(cfg.head_hidden, cfg.head_hidden),
            nn.ReLU(),
            nn.Linear(cfg.head_hidden, self.rot_dim + spec.shape_dim + CAMERA_DIMS),
        )
        # Start at the mean shape, no rotation and the given camera: the last layer's weights are
        # small so the head begins near its bias.
        last = self.head[-1]
        nn.init.normal_(last.weight, std=1e-3)
        with torch.no_grad():
            last.bias.zero_()
            if self.rot_dim == 6:
                last.bias[0:6] = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
            last.bias[-3:] = torch.tensor(init_camera, dtype=last.bias.dtype)

    # -- what the model is ----------------------------------------------------------------------

    @property
    def deterministic(self) -> bool:
        """True when the model predicts one hypothesis (the flow's mode), e.g. trained by the
        ``deterministic`` objective; its :meth:`predict` returns S = 1."""
        return bool(self.cfg.deterministic)

    @property
    def body_model_info(self) -> dict[str, Any]:
        """Which body model this model decodes with (recorded in checkpoints)."""
        return self.spec.info()

    # -- pieces ---------------------------------------------------------------------------------

    def context(self, batch: dict) -> Tensor:
        """The encoder's context ``(B, C)`` (the encoder checks the batch's keypoints and visibility)."""
        return encode(self.encoder, batch)

    def deterministic_head(self, ctx: Tensor) -> dict[str, Tensor]:
        """``ctx (B, C)`` → global_orient (B, 3) axis-angle (absent with the rotation in the flow),
        betas (B, shape_dim), log_scale (B,), trans (B, 2)."""
        out = self.head(ctx)
        rot, rest = out[:, : self.rot_dim], out[:, self.rot_dim :]
        n = self.spec.shape_dim
        head = {"betas": rest[:, :n], "log_scale": rest[:, n], "trans": rest[:, n + 1 : n + 3]}
        if self.rot_dim:
            head["global_orient"] = matrix_to_axis_angle(rot6d_to_matrix(rot)) if self.rot_dim == 6 else rot
        return head

    def split_flow_variable(self, theta: Tensor, head: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """The flow's samples ``(B, S, flow_dim)`` → (pose θ (B, S, D), the head's outputs with the
        per-hypothesis ``global_orient`` (B, S, 3) when the flow samples it, the global rotation's 6D
        orthonormality deviation (B, S), 0 otherwise)."""
        if not self.rotation_in_flow:
            return theta, head, theta.new_zeros(theta.shape[:-1])
        rot6d, pose = theta[..., :6], theta[..., 6:]
        orient = matrix_to_axis_angle(rot6d_to_matrix(rot6d))
        return pose, {**head, "global_orient": orient}, rot6d_orthonormality(rot6d)

    def decode(self, theta: Tensor, log_q: Tensor, head: dict[str, Tensor]) -> Hypotheses:
        """Turn ``θ (B, S, D)`` and the head's outputs into :class:`Hypotheses`.

        ``pred_obs (B, S, J, 2)`` are crop coordinates in [-1, 1]; extras hold ``joints_3d``
        (B, S, J, 3) root-relative and divided by the predicted bone (unitless, as the dataset's),
        ``joints_metric`` (B, S, J, 3) root-relative in metres, ``orthonormality`` (B, S) the 6D rotations'
        deviation from orthonormal (ProHMR's loss term), and the head's outputs. Only the
        keypoints are computed; :meth:`vertices` gives the meshes of chosen hypotheses.
        """
        B, S, _ = theta.shape
        expand = lambda x: x[:, None].expand(B, S, *x.shape[1:])  # noqa: E731
        flow_variable = theta
        theta, head, rot_ortho = self.split_flow_variable(theta, head)
        joints = self.spec.keypoints(theta, head).to(theta.dtype)
        root = joints[..., self.spec.root : self.spec.root + 1, :]
        rel = joints - root
        parent, child = self.spec.bone
        bone = torch.linalg.vector_norm(joints[..., child, :] - joints[..., parent, :], dim=-1)
        uv = project_orthographic(rel, expand(head["log_scale"]), expand(head["trans"]))
        return Hypotheses(
            params=flow_variable,
            log_q=log_q,
            pred_obs=uv,
            log_prior=self.spec.log_prior(theta, head) - ORTHO_WEIGHT * rot_ortho,
            extras={"joints_3d": rel / bone.clamp_min(1e-8)[..., None, None], "joints_metric": rel,
                    "pose": theta, "orthonormality": rot_ortho + self.spec.rotation_penalty(theta), **head},
        )

    def vertices(self, hyp: Hypotheses) -> Tensor:
        """The meshes of hypotheses from :meth:`hypotheses` / :meth:`mode`: ``(B, S, V, 3)`` in metres,
        relative to the same root joint as ``hyp.extras["joints_metric"]``."""
        verts, joints = self.spec.vertices(hyp.extras["pose"], hyp.extras)
        return (verts - joints[..., self.spec.root : self.spec.root + 1, :]).to(hyp.params.dtype)

    # -- the depth-flip mixture (model.flip_mixture) ------------------------------------------------

    def flip(self, theta: Tensor) -> Tensor:
        """The depth flip of flow variables ``θ (..., flow_dim)``: the 6D rotation (a, b) becomes that of
        ``R' = diag(1, 1, -1) · R · S`` (S: :meth:`BodySpec.flip_reflection`), the pose is unchanged.

        The lengths |a|, |b⊥| and the component b·a/|a| are kept, and R ↦ R' multiplies R by rotations on
        both sides (``diag(1, 1, -1) = -diag(-1, -1, 1)``, ``S = -(rotation by π about the normal)``),
        which preserves the invariant measure of rotations: the map is an involution with a unit
        Jacobian, so ``q0(flip(x))`` is a density without correction."""
        na, b_par, nb, R = self._frame(theta)
        mirror = torch.tensor([1.0, 1.0, -1.0], dtype=theta.dtype, device=theta.device)
        R = mirror[:, None] * (R @ self.reflection.to(theta.dtype))
        return torch.cat([na * R[..., 0], b_par * R[..., 0] + nb * R[..., 1], theta[..., 6:]], dim=-1)

    @staticmethod
    def _frame(theta: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The 6D rotation (a, b) in front of ``θ``: |a|, b·a/|a|, |b⊥| and the rotation R (Gram-Schmidt,
        columns a/|a|, b⊥/|b⊥| and their cross product)."""
        a, b = theta[..., 0:3], theta[..., 3:6]
        na = torch.linalg.vector_norm(a, dim=-1, keepdim=True)
        r1 = a / na
        b_par = (b * r1).sum(-1, keepdim=True)
        b_perp = b - b_par * r1
        nb = torch.linalg.vector_norm(b_perp, dim=-1, keepdim=True)
        r2 = b_perp / nb
        return na, b_par, nb, torch.stack([r1, r2, torch.linalg.cross(r1, r2, dim=-1)], dim=-1)

    def tilt(self, theta: Tensor) -> Tensor:
        """The palm's tilt of flow variables ``θ (..., flow_dim)``: True where ``(R · d)_z >= 0`` (d: the
        spec's :meth:`~BodySpec.tilt_axis`, in the palm's plane, so the depth flip changes the tilt)."""
        R = self._frame(theta)[3]
        return (R[..., 2, :] * self.tilt_axis.to(theta.dtype)).sum(-1) >= 0

    def fold(self, theta: Tensor, up: bool) -> Tensor:
        """``θ`` where its tilt is ``up``, its depth flip elsewhere: a sample of a flow folded onto one tilt.
        The flip is an involution with a unit Jacobian that swaps the two tilts, so the folded density at x
        (of that tilt) is q0(x) + q0(flip x), exactly."""
        keep = self.tilt(theta) == up
        return torch.where(keep[..., None], theta, self.flip(theta))

    def flip_log_weights(self, ctx: Tensor) -> tuple[Tensor, Tensor]:
        """log P(not flipped), log P(flipped) ``(B, 1)`` each, from the context: ``sigmoid(±logit)``, in eval
        mode with the logit divided by ``model.flip_temperature`` (post-hoc calibration; every density and
        sample of the eval-mode model uses the calibrated weights)."""
        logit = self.flip_head(ctx)
        if not self.training and self.flip_temperature != 1.0:
            logit = logit / self.flip_temperature
        return torch.nn.functional.logsigmoid(-logit), torch.nn.functional.logsigmoid(logit)

    def _branch_contexts(self, ctx: Tensor) -> tuple[Tensor, Tensor]:
        """The flow's context of the unflipped and of the flipped branch (the same with shared branches)."""
        if not self.flip_conditional:
            return ctx, ctx
        return ctx + self.branch_context[0], ctx + self.branch_context[1]

    def _flip_branches(self, ctx: Tensor, num_samples: int, temperature: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Samples of both branches of the mixture q(x) = P(not) · q0(x | c0) + P(flipped) · q0(flip x | c1):
        (x0, log q(x0), x1, log q(x1), log P(flipped) (B, 1)), x0 ``(B, S, ·)`` drawn from q0(· | c0) and
        x1 = flip(u1) with u1 drawn from q0(· | c1). With shared branches c0 = c1 and u1 = x0 (one draw)."""
        return self._flip_branches_with_own_density(ctx, num_samples, temperature)[:5]

    def _flip_branches_with_own_density(self, ctx: Tensor, num_samples: int, temperature: float) -> tuple[Tensor, ...]:
        """:meth:`_flip_branches` and, last, each branch's own log-density at its samples ``(B, 2S)``:
        log q0(x0 | c0) and log q0(flip x1 | c1) (the mixture's density is the other's; with tilt branches,
        each branch's folded density)."""
        c0, c1 = self._branch_contexts(ctx)
        if self.flip_tilt:
            return self._tilt_branches(ctx, c0, c1, num_samples, temperature)
        x0, log_q0_x0 = self.flow.rsample_and_log_prob(c0, num_samples, temperature)
        if self.flip_conditional:
            u1, log_q1_u1 = self.flow.rsample_and_log_prob(c1, num_samples, temperature)
        else:
            u1, log_q1_u1 = x0, log_q0_x0
        x1 = self.flip(u1)
        log_p0, log_p1 = self.flip_log_weights(ctx)
        # flip is an involution with a unit Jacobian: q0(flip x | c1) is the flipped branch's density at x
        log_q1_x0 = self.flow.log_prob(self.flip(x0), c1)
        log_q0_x1 = self.flow.log_prob(x1, c0) if self.flip_conditional else log_q1_x0  # shared: flip(x0) = x1
        log_q_x0 = torch.logaddexp(log_p0 + log_q0_x0, log_p1 + log_q1_x0)
        log_q_x1 = torch.logaddexp(log_p0 + log_q0_x1, log_p1 + log_q1_u1)
        return x0, log_q_x0, x1, log_q_x1, log_p1, torch.cat([log_q0_x0, log_q1_u1], 1)

    def _tilt_branches(self, ctx: Tensor, c0: Tensor, c1: Tensor, num_samples: int, temperature: float) -> tuple[Tensor, ...]:
        """:meth:`_flip_branches_with_own_density` for ``flip_branches: tilt``: branch 0 is q0(· | c0) folded
        onto the up tilt, branch 1 q0(· | c1) folded onto the other, so every x lies in one branch only and
        q(x) = P(its branch) · (q0(x | c_b) + q0(flip x | c_b))."""
        u0, log_u0 = self.flow.rsample_and_log_prob(c0, num_samples, temperature)
        u1, log_u1 = self.flow.rsample_and_log_prob(c1, num_samples, temperature)
        own0, own1 = self._folded_log_prob(u0, c0, log_u0), self._folded_log_prob(u1, c1, log_u1)
        log_p0, log_p1 = self.flip_log_weights(ctx)
        return (self.fold(u0, True), log_p0 + own0, self.fold(u1, False), log_p1 + own1, log_p1,
                torch.cat([own0, own1], 1))

    def _folded_log_prob(self, x: Tensor, ctx: Tensor, log_q_x: Tensor | None = None) -> Tensor:
        """The density of q0(· | ctx) folded onto one tilt, at ``x`` or at its flip (the same value: the
        flip is an involution with a unit Jacobian): log(q0(x) + q0(flip x)); ``log_q_x`` when known."""
        log_q_x = self.flow.log_prob(x, ctx) if log_q_x is None else log_q_x
        return torch.logaddexp(log_q_x, self.flow.log_prob(self.flip(x), ctx))

    # -- the protocol of mhe.objectives ---------------------------------------------------------

    def hypotheses(self, batch: dict, num_samples: int, temperature: float = 1.0) -> Hypotheses:
        """S hypotheses per item, differentiable (reparameterised), with their log-density.

        With the flip mixture, in training mode both branches of every flow sample are returned (2S
        hypotheses, weighted by the branch probabilities: the discrete choice is summed out exactly, so
        its probability gets gradients; ``extras["branch_log_q"]`` holds each hypothesis' density under its
        own branch alone); in eval mode each hypothesis takes its branch at random."""
        ctx = self.context(batch)
        head = self.deterministic_head(ctx)
        if not self.flip_mixture:
            theta, log_q = self.flow.rsample_and_log_prob(ctx, num_samples, temperature)
            return self.decode(theta, log_q, head)
        theta, log_q, flipped, log_q_flipped, log_p1, own = self._flip_branches_with_own_density(
            ctx, num_samples, temperature)
        if self.training:
            p1 = log_p1.exp().expand(-1, num_samples)
            hyp = self.decode(torch.cat([theta, flipped], 1), torch.cat([log_q, log_q_flipped], 1), head)
            hyp.weights = torch.cat([1 - p1, p1], 1) / num_samples
            hyp.extras["branch_log_q"] = own  # each branch's own density (the objectives' w_branch term)
            return hyp
        pick = torch.rand(log_q.shape, device=log_q.device) < log_p1.exp()
        return self.decode(torch.where(pick[..., None], flipped, theta), torch.where(pick, log_q_flipped, log_q), head)

    def mode(self, batch: dict) -> Hypotheses:
        """The zero-noise hypothesis (S = 1), ProHMR's "sample 0" (with the flip mixture: on the more
        probable branch)."""
        ctx = self.context(batch)
        head = self.deterministic_head(ctx)
        if not self.flip_mixture:
            theta, log_q = self.flow.rsample_and_log_prob(ctx, 1, temperature=0.0)
            return self.decode(theta, log_q, head)
        theta, log_q, flipped, log_q_flipped, log_p1 = self._flip_branches(ctx, 1, 0.0)
        pick = log_p1 > math.log(0.5)
        theta, log_q = torch.where(pick[..., None], flipped, theta), torch.where(pick, log_q_flipped, log_q)
        return self.decode(theta, log_q, head)

    def flow_target(self, batch: dict, params: Tensor) -> Tensor:
        """The flow variable ``(B, flow_dim)`` of ground-truth pose parameters ``params (B, D')`` (with the
        rotation in the flow, the batch's ground-truth ``global_orient`` (B, 3) as 6D in front)."""
        theta = self.spec.params_from_gt(params)
        if self.rotation_in_flow:
            if "global_orient" not in batch:
                raise KeyError("model.rotation_in_flow needs the batch's ground-truth 'global_orient' (B, 3) for NLL")
            rot = matrix_to_rot6d(axis_angle_to_matrix(batch["global_orient"].to(theta)))
            theta = torch.cat([rot, theta], dim=-1)
        return theta

    def log_prob(self, batch: dict, params: Tensor) -> Tensor:
        """``log q(params | batch)`` for ground-truth pose parameters ``params (B, D')`` → ``(B,)``
        (with the rotation in the flow, also of the batch's ground-truth ``global_orient`` (B, 3) as 6D)."""
        ctx = self.context(batch)
        theta = self.flow_target(batch, params)
        if self.flip_tilt:
            # each item's x lies in the branch of its tilt: only that branch's folded density is needed
            log_p0, log_p1 = self.flip_log_weights(ctx)
            c0, c1 = self._branch_contexts(ctx)
            up = self.tilt(theta)
            own = self._folded_log_prob(theta, torch.where(up[:, None], c0, c1))
            return torch.where(up, log_p0[:, 0], log_p1[:, 0]) + own
        if self.flip_mixture:
            log_p0, log_p1 = self.flip_log_weights(ctx)
            c0, c1 = self._branch_contexts(ctx)
            return torch.logaddexp(log_p0[:, 0] + self.flow.log_prob(theta, c0),
                                   log_p1[:, 0] + self.flow.log_prob(self.flip(theta), c1))
        return self.flow.log_prob(theta, ctx)

    # -- predictions in metric units (what mhe.evaluation scores) -------------------------------

    def _predicted(self, batch: dict, num_samples: int, temperature: float) -> tuple[list[Hypotheses], Hypotheses]:
        """The parts of :meth:`predict`'s S hypotheses in order, and the mode: the mode alone for a
        deterministic model (or S = 1 with ``spec.mode_first``); else the samples, drawn first, then the mode
        (which draws no random numbers), with the mode as part 0 for a ``mode_first`` body."""
        mode_first = self.spec.mode_first and not self.deterministic
        if self.deterministic or (mode_first and num_samples == 1):
            mode = self.mode(batch)
            return [mode], mode
        hyp = self.hypotheses(batch, num_samples - int(mode_first), temperature)
        mode = self.mode(batch)
        return ([mode, hyp] if mode_first else [hyp]), mode

    @torch.no_grad()
    def predict(self, batch: dict, num_samples: int, temperature: float) -> dict[str, Tensor]:
        """Hypotheses in metric units: ``xyz_mm (B, S, J, 3)`` root-relative (the model's bone-normalised
        joints rescaled by the batch's ground-truth bone ``batch["scale"]`` in metres, the paper's
        protocol), ``uv_px (B, S, J, 2)`` in pixels of the crop, ``mode_xyz_mm (B, 1, J, 3)`` the mode
        (zero noise) and, for bodies with joint limits, ``plausible (B, S)`` bool. A deterministic model
        returns its mode alone (S = 1) whatever ``num_samples`` and ``temperature``. The hypotheses are
        drawn first, so they are those of :meth:`hypotheses` under the same generator state. For a body
        with ``spec.mode_first`` (SMPL, ProHMR's protocol) hypothesis 0 is the mode and S - 1 samples follow."""
        parts, mode = self._predicted(batch, num_samples, temperature)
        joints = torch.cat([h.extras["joints_3d"] for h in parts], 1)
        obs = torch.cat([h.pred_obs for h in parts], 1)
        pose = torch.cat([h.extras["pose"] for h in parts], 1)
        scale_mm = batch["scale"].to(obs)[:, None, None, None] * 1000.0
        out = {
            "xyz_mm": joints * scale_mm,
            "uv_px": crop_to_pixels(obs, self.spec.crop_pixels),
            "mode_xyz_mm": mode.extras["joints_3d"] * scale_mm,
        }
        plausible = self.spec.plausible(pose)
        if plausible is not None:
            out["plausible"] = plausible
        return out

    @torch.no_grad()
    def predict_meshes(self, batch: dict, num_samples: int, temperature: float) -> Tensor:
        """The meshes ``(B, S, V, 3)`` in mm of the hypotheses :meth:`predict` returns under the same generator
        state (same order and count: the mode first for a ``mode_first`` body), root-relative and rescaled
        as ``predict``'s keypoints are (by the ground-truth bone ``batch["scale"]`` over each hypothesis' own).
        An item whose ground-truth bone is unknown (NaN ``scale``: a real file without 3D) keeps each
        hypothesis' own size, in mm."""
        parts, _ = self._predicted(batch, num_samples, temperature)
        parent, child = self.spec.bone
        out = []
        for h in parts:
            joints = h.extras["joints_metric"]
            bone = torch.linalg.vector_norm(joints[..., child, :] - joints[..., parent, :], dim=-1).clamp_min(1e-8)
            truth = batch["scale"].to(joints)[:, None]
            scale = torch.where(torch.isfinite(truth), truth / bone, torch.ones_like(bone)) * 1000.0
            out.append(self.vertices(h) * scale[..., None, None])
        return torch.cat(out, 1)

    @torch.no_grad()
    def ground_truth_meshes(self, batch: dict) -> Tensor | None:
        """The ground truth's meshes ``(B, V, 3)`` in mm, root-relative, from the batch's ``params``,
        ``global_orient`` and ``betas`` (None when the batch lacks them or no item has them: ``has_smpl`` false
        or NaN parameters, as in real files; NaN rows for the items without them in a batch of several)."""
        if not all(k in batch for k in ("params", "global_orient", "betas")):
            return None
        from mhe.objectives import _without_missing_pose, labelled_pose

        ok = labelled_pose(batch)
        if not bool(ok.any()):
            return None
        clean = _without_missing_pose(batch, ok)
        dtype = next(self.parameters()).dtype
        theta = self.spec.params_from_gt(clean["params"].to(dtype))[:, None]
        head = {"global_orient": clean["global_orient"].to(dtype), "betas": clean["betas"].to(dtype)}
        verts, joints = self.spec.vertices(theta, head)
        out = (verts - joints[..., self.spec.root : self.spec.root + 1, :])[:, 0] * 1000.0
        return torch.where(ok.to(out.device)[:, None, None], out, float("nan"))
