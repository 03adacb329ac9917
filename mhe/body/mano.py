"""MANO as a torch module: a thin subclass of smplx's MANO, from a real file or the stand-in.

:func:`load_mano` finds the file (see :mod:`mhe.body.models`), reads it with
:func:`mhe.body.files.read_model_file` (no chumpy needed), checks its shapes and its side, and builds
``smplx.MANO`` from the arrays. :class:`HandModel` fixes smplx's trap (``num_pca_comps=45`` silently
switches PCA off), appends five fingertip vertices to MANO's 16 joints, accepts any leading batch shape
and has a keypoints-only forward. Outputs are in metres, in the model's own frame (plus ``transl``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import smplx
import torch
from scipy.spatial.transform import Rotation
from torch import Tensor

from mhe.body.files import (
    STANDIN_KEY,
    BodyModelFileError,
    ModelFileInfo,
    identify_model_file,
    read_model_file,
    validate_model_arrays,
)
from mhe.body.keypoints import DEFAULT_TIPS, TIP_VERTEX_IDS
from mhe.body.models import MANO_URL, _check_batch, _find, _flat, _flat_inputs, _quiet_smplx

__all__ = ["HandModel", "HandOutput", "load_mano"]

_MANO_SHAPES = {
    "v_template": (778, 3), "f": (1538, 3), "weights": (778, 16), "J_regressor": (16, 778),
    "shapedirs": (778, 3, -1), "posedirs": (778, 3, 135), "kintree_table": (2, 16),
    "hands_components": (45, 45), "hands_mean": (45,),
}  # fmt: skip


def _handedness(data: dict[str, np.ndarray]) -> str:
    """'right' or 'left' from the geometry: the sign of det[forward, thumb side, palm side].

    Forward = wrist -> middle MCP, thumb side = pinky MCP -> index MCP, palm side = where the middle
    fingertip moves under ``hands_mean`` (fingers curl towards the palm). A mirror image flips the sign.
    """
    jreg = data["J_regressor"]
    jreg = jreg.toarray() if hasattr(jreg, "toarray") else np.asarray(jreg)
    J = jreg @ np.asarray(data["v_template"])
    forward = J[4] - J[0]
    thumb_side = J[1] - J[7]
    bone = J[5] - J[4]
    curl = Rotation.from_rotvec(np.asarray(data["hands_mean"])[9:12]).apply(bone) - bone
    if np.linalg.norm(curl) < 1e-9:  # no mean curl: fall back to the thumb's palmar offset
        curl = J[14] - (J[1] + J[13]) / 2
    return "right" if np.linalg.det(np.stack([forward, thumb_side, curl])) < 0 else "left"


def _token_side(path: Path) -> str | None:
    name = path.name.upper()
    if "RIGHT" in name:
        return "right"
    if "LEFT" in name:
        return "left"
    return None


@dataclass
class HandOutput:
    """MANO forward result: ``vertices (B, 778, 3)``, ``joints (B, 21, 3)`` (package keypoint order),
    ``full_pose (B, 48)`` (axis-angle: global orientation then 15 joints, PCA and mean applied),
    ``betas (B, 10)``; ``B`` is any leading shape."""

    vertices: Tensor
    joints: Tensor
    full_pose: Tensor
    betas: Tensor


class HandModel(smplx.MANO):
    """smplx's MANO with the package's conventions; build it with :func:`load_mano`.

    Attributes: ``faces (F, 3)`` int64 array, ``is_standin``, ``num_pose_params`` (P), ``side``,
    ``parents (16,)``, ``tip_vertex_ids (5,)``, ``file_hand_mean (45,)`` (the file's mean finger pose),
    ``flex_axes (15, 3)`` (unit axes of the mean pose's joint rotations, i.e. each joint's main flexion
    axis), ``source`` (:class:`ModelFileInfo`).
    """

    tip_vertex_ids: Tensor
    file_hand_mean: Tensor
    flex_axes: Tensor
    hand_components: Tensor

    def __init__(self, data: dict[str, np.ndarray], info: ModelFileInfo, side: str, use_pca: bool,
                 num_pca_comps: int, flat_hand_mean: bool, tips: str, dtype: torch.dtype) -> None:
        with _quiet_smplx():
            super().__init__(
                model_path=str(info.path), is_rhand=side == "right", data_struct=smplx.utils.Struct(**data),
                use_pca=use_pca, num_pca_comps=num_pca_comps, flat_hand_mean=flat_hand_mean,
                create_global_orient=False, create_hand_pose=False, create_betas=False,
                create_transl=False, create_body_pose=False, dtype=dtype,
            )
        if use_pca and num_pca_comps == 45:
            # smplx turns PCA off for 45 components; the official hand code means 45 PCA coefficients.
            self.use_pca = True
            self.register_buffer("hand_components", torch.tensor(data["hands_components"][:45], dtype=dtype))
        self.faces = np.asarray(data["f"], dtype=np.int64)
        self.side = side
        self.source = info
        self.is_standin = info.is_standin
        self.num_pose_params = num_pca_comps if use_pca else 45
        self.tips = tips
        self.register_buffer("tip_vertex_ids", torch.tensor(TIP_VERTEX_IDS[tips], dtype=torch.long))
        # Unit axis of each joint's mean rotation: MANO's mean pose is a relaxed curl, so this is the
        # joint's main flexion axis (used to build plausible finger poses in mhe.body.ambiguity).
        mean = torch.tensor(np.asarray(data["hands_mean"], dtype=np.float64).reshape(15, 3))
        # MANO's mean finger pose from the file (45,), kept even when flat_hand_mean zeroes ``hand_mean``.
        self.register_buffer("file_hand_mean", mean.reshape(45).to(dtype))
        self.register_buffer("flex_axes", torch.nn.functional.normalize(mean, dim=-1).to(dtype))

    def forward(self, global_orient: Tensor, hand_pose: Tensor, betas: Tensor | None = None,
                transl: Tensor | None = None) -> HandOutput:
        """``global_orient (B, 3)``, ``hand_pose (B, P)`` (PCA coefficients, or axis-angle when built with
        ``use_pca=False``; relative to ``hands_mean`` unless ``flat_hand_mean``), ``betas (B, 10)`` or
        None (mean shape), ``transl (B, 3)`` or None -> :class:`HandOutput`."""
        _check_batch("global_orient", global_orient, 3, None, "")
        lead = global_orient.shape[:-1]
        hint = (" (this model takes PCA coefficients; load_mano(use_pca=False) takes 45 axis-angle values)"
                if self.use_pca else " (this model takes 45 axis-angle values)")
        _check_batch("hand_pose", hand_pose, self.num_pose_params, lead, hint)
        _check_batch("betas", betas, self.num_betas, lead, "")
        _check_batch("transl", transl, 3, lead, "")
        if betas is None:
            betas = global_orient.new_zeros((*lead, self.num_betas))
        out = super().forward(return_full_pose=True, **_flat_inputs(
            lead, self.shapedirs.dtype, betas=(betas, self.num_betas), global_orient=(global_orient, 3),
            hand_pose=(hand_pose, self.num_pose_params), transl=(transl, 3)))
        joints = torch.cat([out.joints, out.vertices[:, self.tip_vertex_ids]], dim=1)
        return HandOutput(
            vertices=out.vertices.reshape(*lead, -1, 3),
            joints=joints.reshape(*lead, 21, 3),
            full_pose=out.full_pose.reshape(*lead, 48),
            betas=out.betas.reshape(*lead, -1),
        )

    def keypoints(self, global_orient: Tensor, hand_pose: Tensor, betas: Tensor | None = None,
                  transl: Tensor | None = None) -> Tensor:
        """The 21 keypoints of :meth:`forward` without the 778-vertex mesh: ``(B, 21, 3)``.

        Training needs only the keypoints of every hypothesis, and the mesh (pose blend shapes and
        skinning of all 778 vertices) is most of MANO's cost. The same linear blend skinning is
        restricted to what the keypoints depend on: joint locations are linear in β (the regressor
        applied to the shape blend shapes, folded into one ``(16, 3, 10)`` tensor), and only the five
        fingertip vertices are pose-corrected and skinned. The rotations and the kinematic chain are
        smplx's own (``batch_rodrigues``, ``batch_rigid_transform``). Equal to
        ``forward(...).joints`` up to float rounding (tested); inputs as in :meth:`forward`.
        """
        _check_batch("global_orient", global_orient, 3, None, "")
        lead = global_orient.shape[:-1]
        _check_batch("hand_pose", hand_pose, self.num_pose_params, lead, "")
        _check_batch("betas", betas, self.num_betas, lead, "")
        _check_batch("transl", transl, 3, lead, "")
        if betas is None:
            betas = global_orient.new_zeros((*lead, self.num_betas))
        dtype = self.shapedirs.dtype
        hand = _flat(hand_pose, lead, self.num_pose_params, dtype)
        pose = hand @ self.hand_components if self.use_pca else hand
        full_pose = torch.cat([_flat(global_orient, lead, 3, dtype), pose], dim=1) + self.pose_mean
        n, tips = full_pose.shape[0], self.tip_vertex_ids
        rot = smplx.lbs.batch_rodrigues(full_pose.reshape(-1, 3)).reshape(n, -1, 3, 3)
        shape = _flat(betas, lead, self.num_betas, dtype)
        k = shape.shape[1]
        # rest-pose joints and fingertips of this shape: the joint regressor folded into the shape blend
        # shapes ((16, 778) x (778, 3·k), once per call, not per hypothesis), then linear in β
        reg, dirs = self.J_regressor, self.shapedirs[..., :k]
        j_dirs = (reg @ dirs.reshape(dirs.shape[0], -1)).reshape(-1, 3, k)
        j_rest = (reg @ self.v_template) + (shape @ j_dirs.reshape(-1, k).T).reshape(n, -1, 3)
        tip_rest = self.v_template[tips] + (shape @ dirs[tips].reshape(-1, k).T).reshape(n, -1, 3)
        # pose blend shapes of the fingertips only: posedirs is (135, V·3)
        eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
        pose_feature = (rot[:, 1:] - eye).reshape(n, -1)
        tip_dirs = self.posedirs.reshape(self.posedirs.shape[0], -1, 3)[:, tips].reshape(self.posedirs.shape[0], -1)
        tip_posed = tip_rest + (pose_feature @ tip_dirs).reshape(n, -1, 3)
        # the kinematic chain, one batched step per tree depth (wrist, then the 5 fingers' 3 joints in turn),
        # with rotation matrices and translations (smplx's batch_rigid_transform takes 15 sequential 4x4 steps)
        order, inverse, steps = self._chain_plan()
        R, t = rot[:, :1], j_rest[:, :1]
        Rs, ts = [R], [t]
        for idx, par, ppos in steps:
            Rp = R[:, ppos]
            t = (Rp @ (j_rest[:, idx] - j_rest[:, par])[..., None])[..., 0] + t[:, ppos]
            R = Rp @ rot[:, idx]
            Rs.append(R)
            ts.append(t)
        R_world, t_world = torch.cat(Rs, dim=1), torch.cat(ts, dim=1)  # joints in `order`
        # skin the fingertips: blend the joints' rigid maps x -> R (x - j_rest) + t with their weights
        w = self.lbs_weights[tips][:, order]  # (5, 16)
        offset = t_world - (R_world @ j_rest[:, order, :, None])[..., 0]
        blend_R = (w @ R_world.reshape(n, -1, 9)).reshape(n, -1, 3, 3)
        tip_world = (blend_R @ tip_posed[..., None])[..., 0] + w @ offset
        out = torch.cat([t_world[:, inverse], tip_world], dim=1)
        if transl is not None:
            out = out + _flat(transl, lead, 3, dtype)[:, None]
        return out.reshape(*lead, 21, 3)

    def _chain_plan(self) -> tuple[list[int], list[int], list[tuple[list[int], list[int], list[int]]]]:
        """The kinematic tree by depth: the joints in depth order, where each joint sits in it, and per depth
        (its joints, their parents, the parents' positions in the previous depth)."""
        if getattr(self, "_plan", None) is None:
            parents = [int(p) for p in self.parents.tolist()]
            depth = [0] * len(parents)
            for j in range(1, len(parents)):
                depth[j] = depth[parents[j]] + 1
            levels = [[j for j in range(len(parents)) if depth[j] == d] for d in range(max(depth) + 1)]
            steps = [(lv, [parents[j] for j in lv], [levels[d].index(parents[j]) for j in lv])
                     for d, lv in enumerate(levels[1:])]
            order = [j for lv in levels for j in lv]
            self._plan = (order, [order.index(j) for j in range(len(parents))], steps)
        return self._plan

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}\nSide: {self.side}\nSource: {self.source.describe()}"


def load_mano(
    model_dir: str | os.PathLike | None = None,
    side: str = "right",
    use_pca: bool = True,
    num_pca_comps: int = 45,
    flat_hand_mean: bool = False,
    *,
    tips: str = DEFAULT_TIPS,
    standin: bool | None = None,
    dtype: torch.dtype = torch.float32,
) -> HandModel:
    """Load MANO (real file or stand-in) as a :class:`HandModel` on the CPU (move it with ``.to``).

    ``model_dir``: a folder holding ``mano/MANO_RIGHT.pkl`` (or the file itself); None searches
    ``$MHE_BODY_MODELS`` then ``data/body_models`` and falls back to the stand-in with a one-time
    :class:`StandInWarning`. An explicit ``model_dir`` without the file is an error. ``standin=True``
    forces the stand-in, ``standin=False`` forbids it. ``use_pca``/``num_pca_comps``: the pose input is
    ``P = num_pca_comps`` PCA coefficients (45 really means PCA), else 45 axis-angle values.
    ``tips``: which fingertip vertex ids to use ("manopth" default, "freihand", "smplx").
    """
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    if tips not in TIP_VERTEX_IDS:
        raise ValueError(f"tips must be one of {sorted(TIP_VERTEX_IDS)}, got {tips!r}")
    if use_pca and not 1 <= num_pca_comps <= 45:
        raise ValueError(f"num_pca_comps must be between 1 and 45, got {num_pca_comps}")
    path, _ = _find("mano", f"MANO_{side.upper()}", model_dir, standin, "mano", side, MANO_URL)
    data = read_model_file(path)
    validate_model_arrays(data, _MANO_SHAPES, path, "MANO")
    info = identify_model_file(path, data)
    named = _token_side(path)
    if named is not None and named != side:
        raise BodyModelFileError(f"{path} is a {named.upper()} hand file but side={side!r} was asked for; "
                                 f"pass side={named!r} or the MANO_{side.upper()} file")
    marker = str(data[STANDIN_KEY]) if STANDIN_KEY in data else None
    actual = marker.split()[0].split("-")[1] if marker else _handedness(data)
    if actual != side:
        raise BodyModelFileError(f"{path} holds a {actual} hand (by its geometry) but side={side!r} was "
                                 f"asked for; pass side={actual!r} or the MANO_{side.upper()} file")
    return HandModel(data, info, side, use_pca, num_pca_comps, flat_hand_mean, tips, dtype)
