"""MANO and SMPL as torch modules: thin subclasses of smplx's models, real files or stand-ins.

:func:`load_mano` and :func:`load_smpl` find the model file (``model_dir``, else ``$MHE_BODY_MODELS``,
else ``data/body_models/``), read it with :func:`mhe.body.files.read_model_file` (no chumpy needed),
check its shapes and its side / gender, and build ``smplx.MANO`` / ``smplx.SMPL`` from the arrays. When
no real file is found the license-free stand-in from :mod:`mhe.body.standin` goes through the very
same path, and a one-time warning says so. The hand module fixes smplx's trap (``num_pca_comps=45``
silently switches PCA off), appends five fingertip vertices to MANO's 16 joints, and accepts any
leading batch shape. Outputs are in metres, in the model's own frame (plus ``transl``).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Sequence
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
from mhe.body.standin import ensure_standin
from mhe.utils import data_dir

__all__ = [
    "BodyOutput",
    "BodyModel",
    "HandOutput",
    "HandModel",
    "StandInWarning",
    "body_models_root",
    "load_mano",
    "load_smpl",
]

MANO_URL = "https://mano.is.tue.mpg.de"
SMPL_URL = "https://smpl.is.tue.mpg.de"

_MANO_SHAPES = {
    "v_template": (778, 3), "f": (1538, 3), "weights": (778, 16), "J_regressor": (16, 778),
    "shapedirs": (778, 3, -1), "posedirs": (778, 3, 135), "kintree_table": (2, 16),
    "hands_components": (45, 45), "hands_mean": (45,),
}  # fmt: skip
_SMPL_SHAPES = {
    "v_template": (6890, 3), "f": (13776, 3), "weights": (6890, 24), "J_regressor": (24, 6890),
    "shapedirs": (6890, 3, -1), "posedirs": (6890, 3, 207), "kintree_table": (2, 24),
}  # fmt: skip


class StandInWarning(UserWarning):
    """Issued once per model kind when a license-free stand-in replaces a missing real model file."""


_ANNOUNCED: set[str] = set()


def _announce_standin(kind: str, looked_in: Path, path: Path) -> None:
    if kind in _ANNOUNCED:
        return
    _ANNOUNCED.add(kind)
    url, files = (MANO_URL, "mano/MANO_RIGHT.pkl, mano/MANO_LEFT.pkl") if kind == "mano" else (
        SMPL_URL, "smpl/SMPL_NEUTRAL.pkl (and _MALE, _FEMALE)")
    warnings.warn(
        f"mhe.body: no real {kind.upper()} file in {looked_in}; using a license-free STAND-IN "
        f"{kind.upper()} ({path}). It has the real file format but not the real shape. For the real "
        f"model register at {url}, download it and place {files} under {looked_in} "
        "(see data/body_models/README.md), or set $MHE_BODY_MODELS to such a folder.",
        StandInWarning,
        stacklevel=4,
    )


def body_models_root() -> Path:
    """Default folder searched for real model files: ``$MHE_BODY_MODELS``, else ``<data>/body_models``."""
    env = os.environ.get("MHE_BODY_MODELS")
    return Path(env) if env else data_dir() / "body_models"


def _find(sub: str, stem: str, model_dir, standin: bool | None, kind: str, variant: str,
          url: str) -> tuple[Path, bool]:
    """Resolve the file to load; returns ``(path, is_standin)``."""
    if standin:
        return ensure_standin(kind, variant), True
    explicit = model_dir is not None
    root = Path(model_dir) if explicit else body_models_root()
    if root.is_file():
        return root, False
    candidates = [root / sub / f"{stem}.{ext}" for ext in ("pkl", "npz")]
    candidates += [root / f"{stem}.{ext}" for ext in ("pkl", "npz")]
    for cand in candidates:
        if cand.is_file():
            return cand, False
    if explicit or standin is False:
        raise FileNotFoundError(
            f"no {kind.upper()} model file at {candidates[0]} (also tried {', '.join(map(str, candidates[1:]))}). "
            f"Register at {url}, download the model and put {stem}.pkl at {root / sub}, "
            "or call without model_dir to use the license-free stand-in."
        )
    path = ensure_standin(kind, variant)
    _announce_standin(kind, root, path)
    return path, True


@contextlib.contextmanager
def _quiet_smplx():
    """Drop smplx's "WARNING: You are using a ... model, with only 10 shape coefficients." stdout line."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield
    for line in buf.getvalue().splitlines():
        if "shape coefficients" not in line:
            print(line, file=sys.stdout)


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


def _token_gender(path: Path) -> str | None:
    name = path.name.lower()
    for gender, tokens in (("female", ("female", "_f_", "_f.")), ("male", ("male", "_m_", "_m.")),
                           ("neutral", ("neutral",))):
        if any(t in name for t in tokens):
            return gender
    return None


def _check_batch(name: str, x: Tensor | None, width: int, lead: torch.Size | None, hint: str) -> None:
    if x is None:
        return
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, {width}), got {type(x).__name__}")
    if x.dim() < 1 or x.shape[-1] != width or (lead is not None and x.shape[:-1] != lead):
        want = f"({', '.join(map(str, lead)) if lead is not None else 'B'}, {width})"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}{hint}")


def _flat_inputs(lead: torch.Size, dtype: torch.dtype, **inputs: tuple[Tensor | None, int]) -> dict:
    """Reshape each ``(*lead, width)`` input to ``(N, width)`` in the model's dtype (None stays None):
    smplx takes one flat batch dimension."""
    n = int(np.prod(lead)) if len(lead) else 1
    return {k: None if x is None else x.reshape(n, w).to(dtype) for k, (x, w) in inputs.items()}


@dataclass
class HandOutput:
    """MANO forward result: ``vertices (B, 778, 3)``, ``joints (B, 21, 3)`` (package keypoint order),
    ``full_pose (B, 48)`` (axis-angle: global orientation then 15 joints, PCA and mean applied),
    ``betas (B, 10)``; ``B`` is any leading shape."""

    vertices: Tensor
    joints: Tensor
    full_pose: Tensor
    betas: Tensor


@dataclass
class BodyOutput:
    """SMPL forward result: ``vertices (B, 6890, 3)``, ``joints (B, 45, 3)`` (24 kinematic + 21 landmarks,
    see ``SMPL_JOINT_NAMES``), ``full_pose (B, 72)``, ``betas (B, 10)``; ``B`` is any leading shape."""

    vertices: Tensor
    joints: Tensor
    full_pose: Tensor
    betas: Tensor


class HandModel(smplx.MANO):
    """smplx's MANO with the package's conventions; build it with :func:`load_mano`.

    Attributes: ``faces (F, 3)`` int64 array, ``is_standin``, ``num_pose_params`` (P), ``side``,
    ``parents (16,)``, ``tip_vertex_ids (5,)``, ``file_hand_mean (45,)`` (the file's mean finger pose), ``flex_axes (15, 3)`` (unit axes of the mean pose's joint
    rotations, i.e. each joint's main flexion axis), ``source`` (:class:`ModelFileInfo`).
    """

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

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}\nSide: {self.side}\nSource: {self.source.describe()}"


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

    def keypoints(self, global_orient: Tensor, body_pose: Tensor, betas: Tensor | None = None,
                  transl: Tensor | None = None, joints: Sequence[int] | np.ndarray | None = None) -> Tensor:
        """``forward(...).joints[..., joints, :]`` without the 6890-vertex mesh: ``(B, K, 3)``.

        Inputs as in :meth:`forward` (any leading shape ``B``); ``joints``: indices into the 45 joints
        of :data:`mhe.body.SMPL_JOINT_NAMES` (e.g. :data:`mhe.body.SMPL_TO_BODY`), default all 45.
        The kinematic joints of a shape are linear in β (the regressor folded into the shape blend
        shapes, precomputed by :meth:`prepare_keypoints`); the kinematic chain is run with rotation
        matrices and translations, one batched step per tree depth and only over the joints the
        selection needs; a landmark joint (index ≥ 24, a mesh vertex) is pose-corrected with its own
        rows of ``posedirs`` and skinned alone. Rotations are smplx's ``batch_rodrigues``. Equal to
        :meth:`forward` up to float rounding, gradients included (tested).
        """
        _check_batch("global_orient", global_orient, 3, None, "")
        lead = global_orient.shape[:-1]
        _check_batch("body_pose", body_pose, 69, lead, " (23 joints x 3 axis-angle values)")
        _check_batch("betas", betas, self.num_betas, lead, "")
        _check_batch("transl", transl, 3, lead, "")
        dtype, device = self.kp_joint_rest.dtype, self.kp_joint_rest.device
        plan = self._keypoint_plan(joints, device)
        n = int(np.prod(lead)) if len(lead) else 1
        n_joints = self.kp_joint_rest.shape[0]
        pose = torch.cat([global_orient.reshape(n, 3), body_pose.reshape(n, 69)], dim=1).to(dtype)
        rot = smplx.lbs.batch_rodrigues(pose.reshape(-1, 3)).reshape(n, n_joints, 3, 3)
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
