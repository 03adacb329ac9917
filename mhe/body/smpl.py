"""SMPL as a torch module: a thin subclass of smplx's SMPL, from a real file or the stand-in.

:func:`load_smpl` finds the file (see :mod:`mhe.body.models`), reads it with
:func:`mhe.body.files.read_model_file` (no chumpy needed), checks its shapes and its gender, and builds
``smplx.SMPL`` from the arrays. :class:`BodyModel` accepts any leading batch shape and has a
keypoints-only forward (:meth:`BodyModel.keypoints`). Outputs are in metres, in the model's own frame
(plus ``transl``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import smplx
import torch
from torch import Tensor

from mhe.body.files import (
    STANDIN_KEY,
    BodyModelFileError,
    ModelFileInfo,
    identify_model_file,
    read_model_file,
    validate_model_arrays,
)
from mhe.body.models import SMPL_URL, _check_batch, _find, _flat_inputs, _quiet_smplx

__all__ = ["BodyModel", "BodyOutput", "load_smpl"]

_SMPL_SHAPES = {
    "v_template": (6890, 3), "f": (13776, 3), "weights": (6890, 24), "J_regressor": (24, 6890),
    "shapedirs": (6890, 3, -1), "posedirs": (6890, 3, 207), "kintree_table": (2, 24),
}  # fmt: skip


def _token_gender(path: Path) -> str | None:
    name = path.name.lower()
    for gender, tokens in (("female", ("female", "_f_", "_f.")), ("male", ("male", "_m_", "_m.")),
                           ("neutral", ("neutral",))):
        if any(t in name for t in tokens):
            return gender
    return None


@dataclass
class BodyOutput:
    """SMPL forward result: ``vertices (B, 6890, 3)``, ``joints (B, 45, 3)`` (24 kinematic + 21 landmarks,
    see ``SMPL_JOINT_NAMES``), ``full_pose (B, 72)``, ``betas (B, 10)``; ``B`` is any leading shape."""

    vertices: Tensor
    joints: Tensor
    full_pose: Tensor
    betas: Tensor


class BodyModel(smplx.SMPL):
    """smplx's SMPL with the package's conventions; build it with :func:`load_smpl`.

    Attributes: ``faces (F, 3)`` int64 array, ``is_standin``, ``gender``, ``parents (24,)``,
    ``source`` (:class:`ModelFileInfo`).
    """

    def __init__(self, data: dict[str, np.ndarray], info: ModelFileInfo, gender: str, dtype: torch.dtype) -> None:
        with _quiet_smplx():
            super().__init__(
                model_path=str(info.path), data_struct=smplx.utils.Struct(**data), gender=gender,
                create_global_orient=False, create_body_pose=False, create_betas=False,
                create_transl=False, dtype=dtype,
            )
        self.faces = np.asarray(data["f"], dtype=np.int64)
        self.source = info
        self.is_standin = info.is_standin
        self.prepare_keypoints()

    def prepare_keypoints(self) -> None:
        """(Re)build what :meth:`keypoints` precomputes from the model's buffers.

        Called by ``__init__``; call it again after editing ``v_template``, ``shapedirs``,
        ``posedirs``, ``J_regressor`` or ``lbs_weights`` in place. The derived tensors are
        non-persistent buffers, so ``.to(device)`` / ``.double()`` move and cast them with the model (a
        float32 model cast to float64 keeps their float32 rounding until this is called again).
        """
        nb = self.num_betas
        reg, shapedirs = self.J_regressor, self.shapedirs[..., :nb]
        vids = self.vertex_joint_selector.extra_joints_idxs
        n_joints, n_land = reg.shape[0], vids.shape[0]
        # joints of a shape: J0 + betas @ joint_dirs (the regressor folded into the shape blend shapes)
        self.register_buffer("kp_joint_rest", reg @ self.v_template, persistent=False)  # (24, 3)
        self.register_buffer("kp_joint_dirs", torch.einsum("jv,vck->kjc", reg, shapedirs).reshape(nb, -1),
                             persistent=False)  # (10, 24 * 3)
        # the landmark vertices: template, shape blend shapes, pose blend shapes, skinning weights
        self.register_buffer("kp_land_rest", self.v_template[vids], persistent=False)  # (21, 3)
        self.register_buffer("kp_land_dirs", shapedirs[vids].permute(2, 0, 1).reshape(nb, -1),
                             persistent=False)  # (10, 21 * 3)
        n_pose = self.posedirs.shape[0]
        self.register_buffer("kp_land_posedirs", self.posedirs.reshape(n_pose, -1, 3)[:, vids],
                             persistent=False)  # (207, 21, 3)
        self.register_buffer("kp_land_weights", self.lbs_weights[vids], persistent=False)  # (21, 24)
        parents = self.parents.detach().cpu().numpy().astype(np.int64)
        depth = np.zeros(n_joints, dtype=np.int64)
        for j in range(1, n_joints):
            depth[j] = depth[parents[j]] + 1
        # the joints each landmark's skinning reads (nonzero blend weights)
        weights = self.kp_land_weights.detach().cpu().numpy()
        self._kp_tree = (parents, depth, [np.flatnonzero(w != 0) for w in weights], n_joints, n_land)
        self._kp_plans: dict = {}

    def _keypoint_plan(self, joints, device: torch.device) -> dict:
        """Index tensors for one selection of the 45 joints (cached per selection and device)."""
        parents, depth, land_joints, n_joints, n_land = self._kp_tree
        total = n_joints + n_land
        if joints is None:
            sel = np.arange(total)
        else:
            sel = np.asarray(joints.detach().cpu() if isinstance(joints, Tensor) else joints)
            if sel.ndim != 1 or sel.size == 0 or not (np.issubdtype(sel.dtype, np.integer) or sel.dtype == bool):
                raise ValueError(f"joints must be a non-empty 1-D sequence of integer indices into the {total} "
                                 f"SMPL joints (SMPL_JOINT_NAMES), got {joints!r}")
            if sel.dtype == bool:
                raise ValueError(f"joints must be integer indices, not a boolean mask: {joints!r}")
            if sel.min() < -total or sel.max() >= total:
                raise ValueError(f"joints must index the {total} SMPL joints (0..{total - 1}), got "
                                 f"{sel.tolist()}")
            sel = sel % total
        key = (sel.tobytes(), str(device))
        plan = self._kp_plans.get(key)
        if plan is not None:
            return plan
        kin = np.unique(sel[sel < n_joints])
        land = np.unique(sel[sel >= n_joints]) - n_joints
        needed = set(kin.tolist())
        for i in land:
            needed.update(land_joints[i].tolist())
        for j in list(needed):  # close under ancestors
            while j > 0:
                j = int(parents[j])
                needed.add(j)
        needed.add(0)
        levels = [np.array(sorted(j for j in needed if depth[j] == d)) for d in range(int(depth.max()) + 1)]
        levels = [lv for lv in levels if lv.size]
        order = np.concatenate(levels)  # joints in the order of the chain's output
        pos = np.full(n_joints, -1)
        pos[order] = np.arange(order.size)
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64), device=device)  # noqa: E731
        steps = []
        for d in range(1, len(levels)):
            prev = {j: i for i, j in enumerate(levels[d - 1])}
            lv = levels[d]
            steps.append((t(lv), t(parents[lv]), t([prev[p] for p in parents[lv]])))
        # output: kinematic joints then landmarks, then gathered into the requested order
        made = np.concatenate([kin, land + n_joints])
        where = {j: i for i, j in enumerate(made.tolist())}
        gather = np.array([where[j] for j in sel.tolist()])
        plan = {
            "root": levels[0].size == 1,
            "steps": steps,
            "order": t(order),
            "kin_pos": t(pos[kin]),
            "land": t(land) if land.size else None,
            "gather": None if np.array_equal(gather, np.arange(made.size)) else t(gather),
            "count": sel.size,
        }
        self._kp_plans[key] = plan
        return plan

    def forward(self, global_orient: Tensor, body_pose: Tensor, betas: Tensor | None = None,
                transl: Tensor | None = None) -> BodyOutput:
        """``global_orient (B, 3)``, ``body_pose (B, 69)`` axis-angle, ``betas (B, 10)`` or None,
        ``transl (B, 3)`` or None -> :class:`BodyOutput`."""
        _check_batch("global_orient", global_orient, 3, None, "")
        lead = global_orient.shape[:-1]
        _check_batch("body_pose", body_pose, 69, lead, " (23 joints x 3 axis-angle values)")
        _check_batch("betas", betas, self.num_betas, lead, "")
        _check_batch("transl", transl, 3, lead, "")
        if betas is None:
            betas = global_orient.new_zeros((*lead, self.num_betas))
        out = super().forward(return_full_pose=True, **_flat_inputs(
            lead, self.shapedirs.dtype, betas=(betas, self.num_betas), global_orient=(global_orient, 3),
            body_pose=(body_pose, 69), transl=(transl, 3)))
        return BodyOutput(
            vertices=out.vertices.reshape(*lead, -1, 3),
            joints=out.joints.reshape(*lead, -1, 3),
            full_pose=out.full_pose.reshape(*lead, 72),
            betas=out.betas.reshape(*lead, -1),
        )

    def keypoints(self, global_orient: Tensor, body_pose: Tensor | None, betas: Tensor | None = None,
                  transl: Tensor | None = None, joints: Sequence[int] | np.ndarray | None = None, *,
                  body_rotations: Tensor | None = None) -> Tensor:
        """``forward(...).joints[..., joints, :]`` without the 6890-vertex mesh: ``(B, K, 3)``.

        Inputs as in :meth:`forward` (any leading shape ``B``); ``joints``: indices into the 45 joints
        of :data:`mhe.body.SMPL_JOINT_NAMES` (e.g. :data:`mhe.body.SMPL_TO_BODY`), default all 45.
        The kinematic joints of a shape are linear in β (the regressor folded into the shape blend
        shapes, precomputed by :meth:`prepare_keypoints`); the kinematic chain is run with rotation
        matrices and translations, one batched step per tree depth and only over the joints the
        selection needs; a landmark joint (index ≥ 24, a mesh vertex) is pose-corrected with its own
        rows of ``posedirs`` and skinned alone. Rotations are smplx's ``batch_rodrigues``. Equal to
        :meth:`forward` up to float rounding, gradients included (tested). ``body_rotations (B, 23, 3, 3)``:
        the body joints' rotation matrices instead of ``body_pose`` (pass ``body_pose=None``), for a caller that
        holds matrices (a 6D pose): no round trip through axis-angle and back.
        """
        _check_batch("global_orient", global_orient, 3, None, "")
        lead = global_orient.shape[:-1]
        if body_rotations is None:
            if body_pose is None:
                raise ValueError("keypoints needs body_pose (B, 69) axis-angle or body_rotations (B, 23, 3, 3)")
            _check_batch("body_pose", body_pose, 69, lead, " (23 joints x 3 axis-angle values)")
        elif body_pose is not None or body_rotations.shape != (*lead, 23, 3, 3):
            raise ValueError(f"pass body_rotations of shape {(*lead, 23, 3, 3)} (got {tuple(body_rotations.shape)}) "
                             "and body_pose=None, or body_pose alone")
        _check_batch("betas", betas, self.num_betas, lead, "")
        _check_batch("transl", transl, 3, lead, "")
        dtype, device = self.kp_joint_rest.dtype, self.kp_joint_rest.device
        plan = self._keypoint_plan(joints, device)
        n = int(np.prod(lead)) if len(lead) else 1
        n_joints = self.kp_joint_rest.shape[0]
        if body_rotations is None:
            assert body_pose is not None
            pose = torch.cat([global_orient.reshape(n, 3), body_pose.reshape(n, 69)], dim=1).to(dtype)
            rot = smplx.lbs.batch_rodrigues(pose.reshape(-1, 3)).reshape(n, n_joints, 3, 3)
        else:
            root = smplx.lbs.batch_rodrigues(global_orient.reshape(n, 3).to(dtype)).reshape(n, 1, 3, 3)
            rot = torch.cat([root, body_rotations.reshape(n, n_joints - 1, 3, 3).to(dtype)], dim=1)
        j_rest = self.kp_joint_rest.expand(n, -1, -1)
        if betas is not None:
            shape = betas.reshape(n, -1).to(dtype)
            j_rest = j_rest + (shape @ self.kp_joint_dirs).reshape(n, n_joints, 3)
        # the kinematic chain, depth by depth: world rotation R and position t of each needed joint
        R, t = rot[:, :1], j_rest[:, :1]
        Rs, ts = [R], [t]
        for idx, par, ppos in plan["steps"]:
            Rp = R[:, ppos]
            bone = j_rest[:, idx] - j_rest[:, par]
            t = (Rp @ bone[..., None])[..., 0] + t[:, ppos]
            R = Rp @ rot[:, idx]
            Rs.append(R)
            ts.append(t)
        R_world, t_world = torch.cat(Rs, dim=1), torch.cat(ts, dim=1)  # (n, M, 3, 3), (n, M, 3)
        parts = [t_world[:, plan["kin_pos"]]]
        land = plan["land"]
        if land is not None:
            k = land.shape[0]
            v_rest = self.kp_land_rest[land].expand(n, -1, -1)
            if betas is not None:
                dirs = self.kp_land_dirs.reshape(self.num_betas, -1, 3)[:, land].reshape(self.num_betas, -1)
                v_rest = v_rest + (shape @ dirs).reshape(n, k, 3)
            eye = torch.eye(3, dtype=dtype, device=device)
            pose_feature = (rot[:, 1:] - eye).reshape(n, -1)
            posedirs = self.kp_land_posedirs[:, land].reshape(pose_feature.shape[1], -1)
            v_posed = v_rest + (pose_feature @ posedirs).reshape(n, k, 3)
            # blend the joints' rigid transforms x -> R (x - j_rest) + t with the landmarks' weights
            w = self.kp_land_weights[land][:, plan["order"]]  # (k, M)
            m = R_world.shape[1]
            offset = t_world - (R_world @ j_rest[:, plan["order"], :, None])[..., 0]
            blend_R = (w @ R_world.reshape(n, m, 9)).reshape(n, k, 3, 3)
            parts.append((blend_R @ v_posed[..., None])[..., 0] + w @ offset)
        out = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        if plan["gather"] is not None:
            out = out[:, plan["gather"]]
        if transl is not None:
            out = out + transl.reshape(n, 1, 3).to(dtype)
        return out.reshape(*lead, plan["count"], 3)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}\nSource: {self.source.describe()}"


def load_smpl(
    model_dir: str | os.PathLike | None = None,
    gender: str = "neutral",
    *,
    standin: bool | None = None,
    dtype: torch.dtype = torch.float32,
) -> BodyModel:
    """Load SMPL (real file or stand-in) as a :class:`BodyModel` on the CPU (move it with ``.to``).

    ``model_dir``: a folder holding ``smpl/SMPL_<GENDER>.pkl`` (or the file itself); None searches
    ``$MHE_BODY_MODELS`` then ``data/body_models`` and falls back to the stand-in with a one-time
    :class:`StandInWarning`. ``standin=True`` forces the stand-in, ``standin=False`` forbids it.
    """
    if gender not in ("neutral", "male", "female"):
        raise ValueError(f"gender must be 'neutral', 'male' or 'female', got {gender!r}")
    path, _ = _find("smpl", f"SMPL_{gender.upper()}", model_dir, standin, "smpl", gender, SMPL_URL)
    data = read_model_file(path)
    validate_model_arrays(data, _SMPL_SHAPES, path, "SMPL")
    info = identify_model_file(path, data)
    marker = str(data[STANDIN_KEY]) if STANDIN_KEY in data else None
    actual = marker.split()[0].split("-")[1] if marker else _token_gender(path)
    if actual is not None and actual != gender:
        raise BodyModelFileError(f"{path} is a {actual} SMPL model but gender={gender!r} was asked for; "
                                 f"pass gender={actual!r} or the SMPL_{gender.upper()} file")
    return BodyModel(data, info, gender, dtype)
