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
With ``model.flip_mixture`` the flow is wrapped into the depth-flip mixture of :mod:`mhe.models.flip`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
from mhe.hypotheses import Hypotheses
from mhe.models.encoders import build_encoder, encode
from mhe.models.flip import DepthFlipMixture, upgrade_state_dict
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
        shape_prior_sd: the standard deviation of the Gaussian prior on β when the flow samples the shape
            (``model.shape_in_flow``); None: the body supports no sampled shape.
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
    shape_prior_sd: float | None = None  # β ~ N(0, sd²) per coefficient when the flow samples the shape

    def keypoints(self, theta: Tensor, head: dict[str, Tensor]) -> Tensor:
        """3D keypoints in metres ``(B, S, J, 3)`` of poses ``θ (B, S, D)`` with the head's per-item outputs."""
        raise NotImplementedError

    def vertices(self, theta: Tensor, head: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Mesh vertices ``(B, S, V, 3)`` and the model's joints ``(B, S, J', 3)`` in metres."""
        raise NotImplementedError

    def log_prior(self, theta: Tensor, head: dict[str, Tensor]) -> Tensor:
        """Log of the unnormalised prior ``(B, S)`` of poses ``θ (B, S, D)`` and the head's outputs."""
        raise NotImplementedError

    def keypoints_and_log_prior(self, theta: Tensor, head: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """:meth:`keypoints` and :meth:`log_prior` of the same θ (a body may share work between them)."""
        return self.keypoints(theta, head), self.log_prior(theta, head)

    def params_from_gt(self, params: Tensor) -> Tensor:
        """Ground-truth pose parameters of a batch ``(B, D')`` → the flow's variable ``(B, D)`` (for NLL)."""
        return params

    def shape_log_prior(self, betas: Tensor) -> Tensor:
        """The Gaussian log-prior ``(...)`` of shapes ``β (..., shape_dim)`` the flow samples (``model.shape_in_flow``),
        up to a constant; the box on β of :meth:`log_prior` comes on top."""
        if self.shape_prior_sd is None:
            raise ValueError(f"the {self.name} spec has no prior on a sampled shape (shape_prior_sd)")
        return -0.5 * (betas / self.shape_prior_sd).square().sum(-1)

    def flip_reflection(self) -> Tensor:
        """The reflection ``S (3, 3)`` across the plane of the body's rigid part (the palm) in the body
        model's frame: a rotation R and ``diag(1, 1, -1) · R · S`` put that part at mirror images in depth."""
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
        # with the shape in the flow, β (shape_dim) follows: (6D rotation, pose θ, β)
        self.shape_in_flow = bool(cfg.shape_in_flow)
        if self.shape_in_flow and spec.shape_prior_sd is None:
            raise ValueError(f"model.shape_in_flow: the {spec.name} model has no prior for a sampled shape; "
                             "only bodies sample β in the flow (set model.shape_in_flow: false)")
        extra_dims = (6 if self.rotation_in_flow else 0) + (spec.shape_dim if self.shape_in_flow else 0)
        self.flow_dim = self.pose_dim + extra_dims
        self.encoder = build_encoder(cfg, num_keypoints=spec.num_keypoints, obs_dim=2)
        flow = ConditionalFlow(
            self.flow_dim, cfg.context_dim, transforms=cfg.flow_transforms, hidden=tuple(cfg.flow_hidden),
            kind=cfg.flow_kind,
        )
        self.rot_dim = 0 if self.rotation_in_flow else ROTATION_DIMS[cfg.head_rotation]
        self.flip_mixture = bool(cfg.flip_mixture)
        if not cfg.flip_temperature > 0:
            raise ValueError(f"model.flip_temperature must be positive, got {cfg.flip_temperature!r}")
        self.flow: ConditionalFlow | DepthFlipMixture = flow
        if self.flip_mixture:
            if not self.rotation_in_flow:
                raise ValueError("model.flip_mixture needs model.rotation_in_flow: true (it flips the flow's rotation)")
            # the flow wrapped into the mixture of itself and its depth flip (mhe.models.flip)
            self.flow = DepthFlipMixture(flow, spec.flip_reflection(), cfg.context_dim, cfg.flip_temperature)
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
        assert isinstance(last, nn.Linear)
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
        per-hypothesis ``global_orient`` (B, S, 3) when the flow samples it and ``betas`` (B, S, shape_dim)
        when it samples the shape, the global rotation's 6D orthonormality deviation (B, S), 0 otherwise)."""
        if self.shape_in_flow:
            n = self.spec.shape_dim
            theta, head = theta[..., :-n], {**head, "betas": theta[..., -n:]}
        if not self.rotation_in_flow:
            return theta, head, theta.new_zeros(theta.shape[:-1])
        rot6d, pose = theta[..., :6], theta[..., 6:]
        orient = matrix_to_axis_angle(rot6d_to_matrix(rot6d))
        return pose, {**head, "global_orient": orient}, rot6d_orthonormality(rot6d)

    def decode(self, theta: Tensor, log_q: Tensor, head: dict[str, Tensor]) -> Hypotheses:
        """Turn ``θ (B, S, D)`` and the head's outputs into :class:`Hypotheses`.

        ``pred_obs (B, S, J, 2)`` are crop coordinates in [-1, 1]; the hypotheses also hold ``joints_3d``
        (B, S, J, 3) root-relative and divided by the predicted bone (unitless, as the dataset's),
        ``joints_metric`` (B, S, J, 3) root-relative in metres, ``pose``, ``orthonormality`` (B, S) the 6D
        rotations' deviation from orthonormal (ProHMR's loss term), and the head's outputs (``head``). Only
        the keypoints are computed; :meth:`vertices` gives the meshes of chosen hypotheses.
        """
        B, S, _ = theta.shape
        expand = lambda x: x[:, None].expand(B, S, *x.shape[1:])  # noqa: E731
        flow_variable = theta
        theta, head, rot_ortho = self.split_flow_variable(theta, head)
        joints, log_prior = self.spec.keypoints_and_log_prior(theta, head)
        if self.shape_in_flow:
            log_prior = log_prior + self.spec.shape_log_prior(head["betas"])
        joints = joints.to(theta.dtype)
        root = joints[..., self.spec.root : self.spec.root + 1, :]
        rel = joints - root
        parent, child = self.spec.bone
        bone = torch.linalg.vector_norm(joints[..., child, :] - joints[..., parent, :], dim=-1)
        uv = project_orthographic(rel, expand(head["log_scale"]), expand(head["trans"]))
        return Hypotheses(
            params=flow_variable,
            log_q=log_q,
            pred_obs=uv,
            log_prior=log_prior - ORTHO_WEIGHT * rot_ortho,
            joints_3d=rel / bone.clamp_min(1e-8)[..., None, None],
            joints_metric=rel,
            pose=theta,
            orthonormality=rot_ortho + self.spec.rotation_penalty(theta),
            head=head,
            source=f"the {self.spec.name} model ({type(self).__name__})",
        )

    def vertices(self, hyp: Hypotheses) -> Tensor:
        """The meshes of hypotheses from :meth:`hypotheses` / :meth:`mode`: ``(B, S, V, 3)`` in metres,
        relative to the same root joint as ``hyp.joints_metric``."""
        verts, joints = self.spec.vertices(hyp.need("pose", "vertices", 1.0), hyp.head)
        return (verts - joints[..., self.spec.root : self.spec.root + 1, :]).to(hyp.params.dtype)

    # -- the depth-flip mixture (model.flip_mixture; mhe.models.flip) --------------------------------

    def _mixture(self) -> DepthFlipMixture:
        if not isinstance(self.flow, DepthFlipMixture):
            raise ValueError("this model has no depth-flip mixture (model.flip_mixture: false)")
        return self.flow

    @property
    def flip_temperature(self) -> float:
        """The flip weight's evaluation-time temperature (``model.flip_temperature``; settable)."""
        return self.flow.temperature if isinstance(self.flow, DepthFlipMixture) else float(self.cfg.flip_temperature)

    @flip_temperature.setter
    def flip_temperature(self, value: float) -> None:
        if not value > 0:
            raise ValueError(f"flip_temperature must be positive, got {value!r}")
        self._mixture().temperature = float(value)

    @property
    def flip_head(self) -> nn.Linear:
        """The mixture's logit head (context → logit of P(flipped))."""
        return self._mixture().flip_head

    def flip_log_weights(self, ctx: Tensor) -> tuple[Tensor, Tensor]:
        """log P(not flipped), log P(flipped) ``(B, 1)`` each (:meth:`DepthFlipMixture.log_weights`)."""
        return self._mixture().log_weights(ctx)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        # checkpoints from before the mixture was its own module: its tensors at the model's top level
        if self.flip_mixture and prefix + "flip_head.weight" in state_dict:
            ours = {k[len(prefix):]: state_dict.pop(k) for k in [k for k in state_dict if k.startswith(prefix)]}
            state_dict.update({prefix + k: v for k, v in upgrade_state_dict(ours).items()})
        super()._load_from_state_dict(state_dict, prefix, *args)

    def upgrade_state_dict(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A saved state dict in this model's current names (:func:`mhe.models.flip.upgrade_state_dict`:
        checkpoints written before the flip mixture was its own module)."""
        return upgrade_state_dict(state) if self.flip_mixture else dict(state)

    # -- the protocol of mhe.objectives ---------------------------------------------------------

    def hypotheses(self, batch: dict, num_samples: int, temperature: float = 1.0) -> Hypotheses:
        """S hypotheses per item, differentiable (reparameterised), with their log-density.

        With the flip mixture, in training mode both branches of every draw are returned (2S hypotheses
        with their ``weights``: the discrete choice is summed out exactly, so its probability gets
        gradients); in eval mode each hypothesis takes its branch at random."""
        theta, log_q, head, weights = self._draw(batch, num_samples, temperature)
        hyp = self.decode(theta, log_q, head)
        if weights is not None:
            hyp.weights = weights
        return hyp

    def _draw(self, batch: dict, num_samples: int, temperature: float) -> tuple[Tensor, Tensor, dict, Tensor | None]:
        """What :meth:`hypotheses` decodes: the flow variables ``(B, S, D)`` (every random number of the S
        hypotheses), their log-density, the head's outputs and the weights (None: uniform)."""
        ctx = self.context(batch)
        head = self.deterministic_head(ctx)
        if self.training and isinstance(self.flow, DepthFlipMixture):
            theta, log_q, weights = self.flow.enumerate(ctx, num_samples, temperature)
            return theta, log_q, head, weights
        theta, log_q = self.flow.rsample_and_log_prob(ctx, num_samples, temperature)
        return theta, log_q, head, None

    def mode(self, batch: dict) -> Hypotheses:
        """The zero-noise hypothesis (S = 1), ProHMR's "sample 0" (with the flip mixture: on the more
        probable branch)."""
        ctx = self.context(batch)
        head = self.deterministic_head(ctx)
        if isinstance(self.flow, DepthFlipMixture):
            theta, log_q = self.flow.mode(ctx)
        else:
            theta, log_q = self.flow.rsample_and_log_prob(ctx, 1, temperature=0.0)
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
        if self.shape_in_flow:
            if "betas" not in batch:
                raise KeyError("model.shape_in_flow needs the batch's ground-truth 'betas' (B, shape_dim) for NLL")
            theta = torch.cat([theta, batch["betas"].to(theta)], dim=-1)
        return theta

    def log_prob(self, batch: dict, params: Tensor) -> Tensor:
        """``log q(params | batch)`` for ground-truth pose parameters ``params (B, D')`` → ``(B,)``
        (with the rotation in the flow, also of the batch's ground-truth ``global_orient`` (B, 3) as 6D)."""
        return self.flow.log_prob(self.flow_target(batch, params), self.context(batch))

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
        return self._in_metric_units(batch, parts, mode)

    @torch.no_grad()
    def predict_chunks(self, batch: dict, num_samples: int, temperature: float, chunk: int) -> Iterator[dict]:
        """:meth:`predict`'s dict in consecutive chunks of at most ``chunk`` hypotheses along S (``mode_xyz_mm``
        with each): the random numbers of all S are drawn first, as :meth:`predict` draws them, and the flow
        variables decoded ``chunk`` at a time, so the chunks join into :meth:`predict`'s hypotheses (up to
        rounding) while the body model holds ``chunk`` of them at once (``mhe.evaluation`` at S = 4096)."""
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk must be a positive int (hypotheses decoded at once), got {chunk!r}")
        mode_first = self.spec.mode_first and not self.deterministic
        if self.deterministic or (mode_first and num_samples == 1):
            mode = self.mode(batch)
            yield self._in_metric_units(batch, [mode], mode)
            return
        theta, log_q, head, _ = self._draw(batch, num_samples - int(mode_first), temperature)
        mode = self.mode(batch)
        if mode_first:  # hypothesis 0 is the mode, decoded with the samples
            theta, log_q = torch.cat([mode.params, theta], 1), torch.cat([mode.log_q, log_q], 1)
        for start in range(0, theta.shape[1], chunk):
            part = self.decode(theta[:, start : start + chunk], log_q[:, start : start + chunk], head)
            yield self._in_metric_units(batch, [part], mode)

    def _in_metric_units(self, batch: dict, parts: list[Hypotheses], mode: Hypotheses) -> dict[str, Tensor]:
        """:meth:`predict`'s dict of the hypotheses ``parts`` (joined along S) and the ``mode``."""
        joints = torch.cat([h.need("joints_3d", "predict", 1.0) for h in parts], 1)
        obs = torch.cat([h.pred_obs for h in parts], 1)
        pose = torch.cat([h.need("pose", "predict", 1.0) for h in parts], 1)
        scale_mm = batch["scale"].to(obs)[:, None, None, None] * 1000.0
        out = {
            "xyz_mm": joints * scale_mm,
            "uv_px": crop_to_pixels(obs, self.spec.crop_pixels),
            "mode_xyz_mm": mode.need("joints_3d", "predict", 1.0) * scale_mm,
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
            joints = h.need("joints_metric", "predict_meshes", 1.0)
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
