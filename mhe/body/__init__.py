"""Body models: MANO hands and SMPL bodies through smplx, from real files or license-free stand-ins.

``load_mano()`` / ``load_smpl()`` return torch modules (subclasses of ``smplx.MANO`` / ``smplx.SMPL``)
whose forward takes ``(global_orient (B, 3), hand_pose (B, P) | body_pose (B, 69), betas (B, 10))``
and returns ``joints (B, 21, 3)`` / ``(B, 45, 3)`` and ``vertices (B, 778, 3)`` / ``(B, 6890, 3)`` in
metres. Real files are read from ``$MHE_BODY_MODELS`` or ``data/body_models/`` (chumpy-era pickles
included, without chumpy); when absent, stand-ins in the same file format are generated once and
cached under ``data/body_models/standin/``. Keypoint names, parents and index maps to the FreiHAND
and RHD orders live in :mod:`mhe.body.keypoints`.
"""

from mhe.body.files import (
    KNOWN_MD5,
    BodyModelFileError,
    ModelFileInfo,
    identify_model_file,
    read_model_file,
)
from mhe.body.keypoints import (
    BODY_BONE,
    BODY_KEYPOINTS,
    BODY_PARENTS,
    BODY_ROOT,
    DEFAULT_TIPS,
    FINGER_OF_KEYPOINT,
    FINGERS,
    FROM_FREIHAND,
    FROM_RHD,
    HAND_BONE,
    HAND_KEYPOINTS,
    HAND_PARENTS,
    HAND_ROOT,
    MANO_PARENTS,
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    SMPL_TO_BODY,
    TIP_VERTEX_IDS,
    TO_FREIHAND,
    TO_RHD,
)
from mhe.body.mano import HandModel, HandOutput, load_mano
from mhe.body.models import StandInWarning, body_models_root
from mhe.body.smpl import BodyModel, BodyOutput, load_smpl
from mhe.body.standin import build_standin_mano, build_standin_smpl, ensure_standin

__all__ = [
    "BODY_BONE", "BODY_KEYPOINTS", "BODY_PARENTS", "BODY_ROOT", "SMPL_TO_BODY",
    "BodyModel", "BodyModelFileError", "BodyOutput", "DEFAULT_TIPS", "FINGERS", "FINGER_OF_KEYPOINT",
    "FROM_FREIHAND", "FROM_RHD", "HAND_BONE", "HAND_KEYPOINTS", "HAND_PARENTS", "HAND_ROOT", "HandModel",
    "HandOutput", "KNOWN_MD5", "MANO_PARENTS", "ModelFileInfo", "SMPL_JOINT_NAMES", "SMPL_PARENTS",
    "StandInWarning", "TIP_VERTEX_IDS", "TO_FREIHAND", "TO_RHD", "body_models_root", "build_standin_mano",
    "build_standin_smpl", "ensure_standin", "identify_model_file", "load_mano", "load_smpl",
    "read_model_file",
]  # fmt: skip
