"""A frozen copy of the training-step code that the speed work replaced, for side-by-side timings.

Copied from git commit ``2ced0cb`` (the state before this session's refactors), unchanged but for being
written as functions of the module they ran on: the flow's sampling pass (zuko's inverse transform,
``mhe/flows.py``), MANO's keypoints-only forward (smplx's kinematic chain, ``mhe/body/models.py``) and
the body spec's keypoints (6D rotations to axis-angle, then SMPL's Rodrigues, ``mhe/models/body.py``).
:func:`install` puts them on a model in place of today's methods, so the old and the new step run on the
same modules, parameters and data, and everything else in the step (encoder, head, priors, objective) is
shared; :func:`adam` is the optimiser as it was built then (torch's per-tensor loop, not the fused kernel).
Do not edit these functions: they are the baseline.
"""

from __future__ import annotations

from types import MethodType

import smplx
import torch
from torch import Tensor, nn

from mhe.body.models import _check_batch, _flat_inputs

__all__ = ["adam", "body_keypoints", "flow_rsample_and_log_prob", "install", "mano_keypoints"]


def flow_rsample_and_log_prob(self, context: Tensor | None, num_samples: int, temperature: float = 1.0,
                              batch_size: int | None = None, antithetic: bool = False) -> tuple[Tensor, Tensor]:
    """``ConditionalFlow.rsample_and_log_prob`` at 2ced0cb (through zuko's inverse transform)."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    dist, batch = self._distribution(context, batch_size)
    # z has shape (S, B, D): zuko puts sample dims first, the context's batch last.
    draws = (num_samples + 1) // 2 if antithetic else num_samples
    shape = (draws,) if context is not None else (draws, batch)
    if temperature == 0:  # the mode: the base's mean, drawing no random numbers
        z = dist.base.mean.expand(torch.Size(shape) + dist.base.mean.shape)
    else:
        z = dist.base.rsample(shape) * temperature
    if antithetic:
        z = torch.cat([z, -z])[:num_samples]
    # Change of variables: log q(x) = log N(z; 0, I) - log|det ∂x/∂z| with x = f⁻¹(z).
    x, ladj = dist.transform.inv.call_and_ladj(z)
    log_q = dist.base.log_prob(z) - ladj
    return x.transpose(0, 1), log_q.transpose(0, 1)


def mano_keypoints(self, global_orient: Tensor, hand_pose: Tensor, betas: Tensor | None = None,
                   transl: Tensor | None = None) -> Tensor:
    """``HandModel.keypoints`` at 2ced0cb (smplx's ``batch_rigid_transform``, regressor applied per call)."""
    _check_batch("global_orient", global_orient, 3, None, "")
    lead = global_orient.shape[:-1]
    _check_batch("hand_pose", hand_pose, self.num_pose_params, lead, "")
    _check_batch("betas", betas, self.num_betas, lead, "")
    _check_batch("transl", transl, 3, lead, "")
    if betas is None:
        betas = global_orient.new_zeros((*lead, self.num_betas))
    flat = _flat_inputs(lead, self.shapedirs.dtype, betas=(betas, self.num_betas),
                        global_orient=(global_orient, 3), hand_pose=(hand_pose, self.num_pose_params),
                        transl=(transl, 3))
    pose = flat["hand_pose"] @ self.hand_components if self.use_pca else flat["hand_pose"]
    full_pose = torch.cat([flat["global_orient"], pose], dim=1) + self.pose_mean
    n, tips = full_pose.shape[0], self.tip_vertex_ids
    rot = smplx.lbs.batch_rodrigues(full_pose.reshape(-1, 3)).reshape(n, -1, 3, 3)
    shape = flat["betas"]
    # rest-pose joints and fingertips of this shape (shape blend shapes, then the joint regressor)
    reg = self.J_regressor
    j_rest = reg @ self.v_template + torch.einsum("jv,vck,nk->njc", reg, self.shapedirs[..., : shape.shape[1]],
                                                  shape)
    tip_rest = self.v_template[tips] + torch.einsum("vck,nk->nvc", self.shapedirs[tips, :, : shape.shape[1]],
                                                    shape)
    # pose blend shapes of the fingertips only: posedirs is (135, V·3)
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
    pose_feature = (rot[:, 1:] - eye).reshape(n, -1)
    tip_dirs = self.posedirs.reshape(self.posedirs.shape[0], -1, 3)[:, tips].reshape(self.posedirs.shape[0], -1)
    tip_posed = tip_rest + (pose_feature @ tip_dirs).reshape(n, -1, 3)
    joints, rel = smplx.lbs.batch_rigid_transform(rot, j_rest, self.parents, dtype=rot.dtype)
    # skin the fingertips with their blend weights over the joints' transforms
    skin = torch.einsum("vj,njab->nvab", self.lbs_weights[tips], rel)
    tip_world = (skin[..., :3, :3] @ tip_posed[..., None])[..., 0] + skin[..., :3, 3]
    out = torch.cat([joints, tip_world], dim=1)
    if flat["transl"] is not None:
        out = out + flat["transl"][:, None]
    return out.reshape(*lead, 21, 3)


def body_keypoints(self, theta: Tensor, head: dict[str, Tensor]) -> Tensor:
    """``SMPLSpec.keypoints`` at 2ced0cb (through ``smpl_inputs``: the pose as axis-angle)."""
    return self.smpl.keypoints(**self.smpl_inputs(theta, head), joints=self.keypoint_ids)


def adam(params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Adam:
    """The trainer's optimiser at 2ced0cb: ``torch.optim.Adam`` with torch's default (per-tensor) implementation."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def install(model: nn.Module) -> nn.Module:
    """Run ``model`` (a flow, or a model holding flows and MANO layers) on the frozen code: every
    ``ConditionalFlow`` samples through :func:`flow_rsample_and_log_prob`, every MANO layer's keypoints go
    through :func:`mano_keypoints`, every SMPL body spec's through :func:`body_keypoints`. In place (instance
    attributes shadow the methods); returns ``model``."""
    from mhe.body.mano import HandModel
    from mhe.flows import ConditionalFlow
    from mhe.models.body import SMPLSpec

    for module in model.modules():
        if isinstance(module, ConditionalFlow):
            module.rsample_and_log_prob = MethodType(flow_rsample_and_log_prob, module)  # type: ignore[method-assign]
        if isinstance(module, HandModel):
            module.keypoints = MethodType(mano_keypoints, module)  # type: ignore[method-assign]
        if isinstance(module, SMPLSpec):
            module.keypoints = MethodType(body_keypoints, module)  # type: ignore[method-assign]
    return model
