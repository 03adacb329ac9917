"""License-free stand-ins for MANO and SMPL, written in the real file formats.

The real models are licensed, so when they are absent the package generates stand-ins that smplx
loads exactly like the real pickles: same keys, shapes and dtypes (``v_template``, ``f``,
``weights``, a scipy-sparse ``J_regressor``, ``shapedirs``, zero ``posedirs``, ``kintree_table``;
for MANO also ``hands_components``, ``hands_mean``, ``hands_coeffs``) plus a ``mhe_standin`` marker.
The geometry is built from anatomical joint positions with the tube meshes of
:mod:`mhe.body.standin_mesh`: each body part is a tube of elliptical vertex rings around its bones,
rings are skinned rigidly to their bone and blended 50/50 with the parent at a joint, and
``J_regressor`` averages the ring centred on each joint, so it reproduces the joints exactly, also on
posed meshes (linear blend skinning maps a ring's centroid to the posed joint when the ring only
blends the joint with its parent). Fingertips sit at every conventional tip vertex id.
The MANO stand-in's PCA basis is orthonormal up to a per-component scale, built from flexion
"synergies" (fist, ulnar gradient, hook, thumb opposition, spread, ...) about one anatomical axis per
joint, scaled so that a coefficient of 2 bends no joint by more than about 1 rad. The left hand is the
exact mirror image of the right (x -> -x, axis-angle (x, y, z) -> (x, -y, -z)). Generation is
deterministic, so concurrent writers produce identical bytes.
"""

from __future__ import annotations

import io
import pickle
import tempfile
from pathlib import Path

import numpy as np

from mhe.body.files import STANDIN_KEY, read_model_file
from mhe.body.keypoints import MANO_PARENTS, SMPL_PARENTS, TIP_VERTEX_IDS
from mhe.body.standin_mesh import _finalise, _kintree, _Mesh, _polyline_rings, _refine, _unit
from mhe.utils import atomic_write_bytes, data_dir

__all__ = [
    "STANDIN_VERSION",
    "build_standin_mano",
    "build_standin_smpl",
    "standin_dir",
    "ensure_standin",
]

# Bump when the generated geometry changes: cached files with another version are regenerated.
STANDIN_VERSION = 2

MANO_NUM_VERTS, MANO_NUM_FACES = 778, 1538
SMPL_NUM_VERTS, SMPL_NUM_FACES = 6890, 13776


# --------------------------------------------------------------------------------------------- MANO

_FINGER_JOINTS = {"index": (1, 2, 3), "middle": (4, 5, 6), "pinky": (7, 8, 9), "ring": (10, 11, 12),
                  "thumb": (13, 14, 15)}  # fmt: skip
_TIP_ORDER = ("thumb", "index", "middle", "ring", "pinky")


def _hand_skeleton() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Right-hand rest joints (16, 3) in metres and each finger's polyline (base, 2 joints, tip).

    MANO's frame: fingers along -x, thumb towards +z, palm facing -y, wrist at x ~ 0.09.
    """
    J = np.zeros((16, 3))
    J[0] = (0.090, 0.000, 0.000)
    # MCP position, direction, phalanx lengths (proximal, middle, distal to the tip)
    layout = {
        "index": ((0.002, 0.002, 0.026), (-1.0, 0.0, 0.08), (0.039, 0.024, 0.022)),
        "middle": ((-0.002, 0.003, 0.005), (-1.0, 0.0, 0.01), (0.044, 0.028, 0.024)),
        "ring": ((0.006, 0.002, -0.014), (-1.0, 0.0, -0.07), (0.041, 0.027, 0.023)),
        "pinky": ((0.018, 0.000, -0.031), (-1.0, 0.0, -0.16), (0.032, 0.020, 0.020)),
    }
    lines = {}
    for name, (base, direction, lengths) in layout.items():
        u = _unit(np.asarray(direction))
        a, b, c = _FINGER_JOINTS[name]
        J[a] = base
        J[b] = J[a] + lengths[0] * u
        J[c] = J[b] + lengths[1] * u
        lines[name] = np.stack([J[a], J[b], J[c], J[c] + lengths[2] * u])
    # The thumb leaves the palm at its carpometacarpal joint, angled forward, sideways and palmar.
    a, b, c = _FINGER_JOINTS["thumb"]
    J[a] = (0.068, -0.012, 0.022)
    J[b] = J[a] + 0.042 * _unit(np.array([-0.62, -0.20, 0.76]))
    J[c] = J[b] + 0.031 * _unit(np.array([-0.75, -0.18, 0.64]))
    tip = J[c] + 0.027 * _unit(np.array([-0.82, -0.15, 0.55]))
    lines["thumb"] = np.stack([J[a], J[b], J[c], tip])
    return J, lines


# Where the thumb moves when it flexes: across the palm, towards the little finger.
_THUMB_FLEX_TARGET = _unit(np.array([0.0, -0.6, -1.0]))


def _flex_axis(name: str, u: np.ndarray) -> np.ndarray:
    """Flexion axis of a finger segment with direction ``u``: positive rotation curls towards the palm."""
    if name == "thumb":
        return _unit(np.cross(u, _THUMB_FLEX_TARGET))
    z = np.array([0.0, 0.0, 1.0])  # rotating -x about +z moves it towards -y, the palm side
    return _unit(z - (z @ u) * u)


def _hand_mesh() -> tuple[_Mesh, np.ndarray, dict[str, np.ndarray], dict[str, int]]:
    J, lines = _hand_skeleton()
    mesh = _Mesh(MANO_PARENTS)
    # Palm: a flattened tube from the wrist to the knuckles, skinned to the wrist, open at the wrist.
    knuckles = np.array([0.006, 0.002, -0.002])
    palm = np.stack([J[0], knuckles])
    fr = [0.0, 0.17, 0.34, 0.5, 0.66, 0.8, 0.9, 0.97]
    radii = [(0.027, 0.016), (0.032, 0.017), (0.037, 0.017), (0.041, 0.016), (0.044, 0.015),
             (0.045, 0.014), (0.044, 0.013), (0.040, 0.011)]  # fmt: skip
    palm_specs = [(0, f, r, {0: 1.0}, 0 if f == 0 else None) for f, r in zip(fr, radii, strict=True)]
    rings = _polyline_rings(palm, palm_specs, lambda seg, d: np.array([0.0, 0.0, 1.0]))
    mesh.tube(rings, 20, "palm", end_cap=knuckles + 0.004 * _unit(knuckles - J[0]))
    # Fingers in the order MANO's vertex ids roughly follow; thumb last.
    finger_radii = {
        "index": ((0.0092, 0.0085), (0.0082, 0.0075), (0.0075, 0.0068)),
        "middle": ((0.0095, 0.0088), (0.0085, 0.0078), (0.0078, 0.0070)),
        "ring": ((0.0090, 0.0083), (0.0080, 0.0073), (0.0073, 0.0066)),
        "pinky": ((0.0080, 0.0074), (0.0070, 0.0064), (0.0064, 0.0058)),
        "thumb": ((0.0125, 0.0110), (0.0105, 0.0095), (0.0095, 0.0085)),
    }
    caps: dict[str, int] = {}
    for name in ("index", "middle", "ring", "pinky", "thumb"):
        a, b, c = _FINGER_JOINTS[name]
        r0, r1, r2 = (np.asarray(r) for r in finger_radii[name])
        specs = [
            (0, 0.0, r0, {0: 0.5, a: 0.5}, a),
            (0, 0.33, r0, {a: 1.0}, None),
            (0, 0.67, r0, {a: 1.0}, None),
            (1, 0.0, (r0 + r1) / 2, {a: 0.5, b: 0.5}, b),
            (1, 0.5, r1, {b: 1.0}, None),
            (2, 0.0, (r1 + r2) / 2, {b: 0.5, c: 0.5}, c),
            (2, 0.35, r2, {c: 1.0}, None),
            (2, 0.6, r2, {c: 1.0}, None),
            (2, 0.8, 0.85 * r2, {c: 1.0}, None),  # the rounded fingertip
            (2, 0.93, 0.55 * r2, {c: 1.0}, None),
        ]
        line = lines[name]

        def flex_axis(seg: int, d: np.ndarray, name: str = name) -> np.ndarray:
            return _flex_axis(name, d)

        rings = _polyline_rings(line, specs, flex_axis)
        back = line[0] - 0.7 * r0[0] * _unit(line[1] - line[0])
        _, cap = mesh.tube(rings, 12, f"finger:{name}", start_cap=back, end_cap=line[3])
        assert cap is not None  # the tube has an end cap
        caps[name] = cap
    return mesh, J, lines, caps


def _hand_pca(J: np.ndarray, lines: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Right-hand ``hands_components (45, 45)`` (rows = scaled orthonormal basis) and ``hands_mean (45,)``."""
    axes = np.zeros((16, 3, 3))  # per joint: flexion, abduction, twist axes (rows)
    for name, joints in _FINGER_JOINTS.items():
        for k, j in enumerate(joints):
            u = _unit(lines[name][k + 1] - lines[name][k])
            flex = _flex_axis(name, u)
            axes[j] = np.stack([flex, np.cross(flex, u), u])

    def vec(kind: int, coeffs: dict[int, float]) -> np.ndarray:
        v = np.zeros(45)
        for j, cval in coeffs.items():
            v[3 * (j - 1) : 3 * j] += cval * axes[j, kind]
        return v

    FLEX, ABD, TWIST = 0, 1, 2
    fingers4 = ("index", "middle", "ring", "pinky")
    def each(weights: tuple[float, ...]) -> dict[int, float]:
        return {j: w for f, w in zip(fingers4, weights, strict=True) for j in _FINGER_JOINTS[f]}

    mcp = {f: _FINGER_JOINTS[f][0] for f in fingers4}
    synergies = [  # (direction, largest joint angle in rad at |coefficient| = 2)
        (vec(FLEX, {**each((1, 1, 1, 1)), 13: 0.5, 14: 0.6, 15: 0.7}), 0.8),  # fist
        (vec(FLEX, each((-1, -0.35, 0.35, 1))), 0.5),  # ulnar gradient (pinky side closes first)
        (vec(FLEX, {j: (1.0 if k == 0 else -0.6) for f in fingers4
                    for k, j in enumerate(_FINGER_JOINTS[f])}), 0.5),  # hook vs table-top
        (vec(FLEX, {13: 1.0, 14: 0.8, 15: 0.7}), 0.7),  # thumb flexion across the palm
        (vec(ABD, {mcp["index"]: -1, mcp["middle"]: -0.3, mcp["ring"]: 0.35, mcp["pinky"]: 1}), 0.25),
        (vec(FLEX, each((1, -1 / 3, -1 / 3, -1 / 3))), 0.4),  # index on its own (pointing)
        (vec(ABD, {13: 1.0, 14: 0.3}), 0.35),  # thumb abduction
        (vec(FLEX, {j: (0.0 if k == 0 else 1.0 if k == 1 else -1.0) for f in fingers4
                    for k, j in enumerate(_FINGER_JOINTS[f])}), 0.3),  # PIP vs DIP
        (vec(FLEX, each((0, 1, -1, 0))), 0.3),  # middle vs ring
        (vec(FLEX, {13: -1.0, 15: 1.0}), 0.3),  # thumb tip vs base
    ]  # fmt: skip
    candidates = list(synergies)
    candidates += [(vec(FLEX, {j: 1.0}), 0.2) for j in range(1, 16)]
    candidates += [(vec(ABD, {j: 1.0}), 0.1 if j in (1, 4, 7, 10, 13, 14) else 0.04) for j in range(1, 16)]
    candidates += [(vec(TWIST, {j: 1.0}), 0.06 if j in (1, 4, 7, 10, 13, 14) else 0.03) for j in range(1, 16)]
    basis: list[np.ndarray] = []
    peaks: list[float] = []
    for v, peak in candidates:  # Gram-Schmidt, dropping directions already spanned
        for b in basis:
            v = v - (v @ b) * b
        if np.linalg.norm(v) > 1e-6:
            basis.append(v / np.linalg.norm(v))
            peaks.append(peak)
    U = np.stack(basis)
    assert U.shape == (45, 45)
    largest = np.linalg.norm(U.reshape(45, 15, 3), axis=-1).max(axis=1)
    components = U * (np.asarray(peaks) / (2.0 * largest))[:, None]
    # A relaxed hand: fingers gently curled, more towards the little finger; thumb slightly flexed.
    curl = {"index": (0.25, 0.35, 0.2), "middle": (0.3, 0.4, 0.2), "ring": (0.35, 0.42, 0.22),
            "pinky": (0.4, 0.45, 0.25), "thumb": (0.15, 0.1, 0.2)}  # fmt: skip
    mean = np.zeros(45)
    for f, cs in curl.items():
        for j, c in zip(_FINGER_JOINTS[f], cs, strict=True):
            mean = mean + vec(FLEX, {j: c})
    return components, mean


def build_standin_mano(side: str = "right") -> dict:
    """The stand-in MANO model as the dict a real ``MANO_{RIGHT,LEFT}.pkl`` holds (plus ``mhe_standin``)."""
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    mesh, J, lines, caps = _hand_mesh()
    tip_ids = {caps[f]: sorted({TIP_VERTEX_IDS[c][i] for c in TIP_VERTEX_IDS}) for i, f in enumerate(_TIP_ORDER)}
    v, w, f, jreg, radial, part, new_of = _finalise(mesh, MANO_NUM_VERTS, MANO_NUM_FACES, tip_ids)
    components, mean = _hand_pca(J, lines)
    shapedirs = _hand_shapedirs(v, radial, part, J, lines)
    rng = np.random.default_rng(0)
    coeffs = np.clip(rng.standard_normal((200, 45)), -2.0, 2.0)
    if side == "left":
        # Mirror through x = 0: positions flip x, rotation vectors map to (x, -y, -z), faces reverse.
        flip = np.array([-1.0, 1.0, 1.0])
        v, J, shapedirs = v * flip, J * flip, shapedirs * flip[None, :, None]
        f = f[:, ::-1].copy()
        aa_flip = np.tile(-flip, 15)
        components, mean = components * aa_flip, mean * aa_flip
    return {
        "v_template": v,
        "f": f,
        "weights": w,
        "J_regressor": jreg,
        "J": jreg @ v,
        "kintree_table": _kintree(MANO_PARENTS),
        "shapedirs": shapedirs,
        "posedirs": np.zeros((MANO_NUM_VERTS, 3, 9 * 15)),
        "hands_components": components,
        "hands_mean": mean,
        "hands_coeffs": coeffs,
        "bs_style": "lbs",
        "bs_type": "lrotmin",
        STANDIN_KEY: f"mano-{side} v{STANDIN_VERSION}",
    }


def _hand_shapedirs(v: np.ndarray, radial: np.ndarray, part: list[str], J: np.ndarray,
                    lines: dict[str, np.ndarray]) -> np.ndarray:
    """(778, 3, 10) shape directions: size, palm width, finger length, girth, palm length, then one
    length direction per finger (thumb .. pinky). All linear in the template, so the joints follow."""
    dirs = np.zeros((len(v), 3, 10))
    finger = np.array([p.split(":")[1] if p.startswith("finger:") else "" for p in part])
    base = np.array([lines[f][0] if f else J[0] for f in finger])
    axis = {f: _unit(lines[f][3] - lines[f][0]) for f in lines}
    palm_axis = _unit(J[4] - J[0])
    palm_len = float((J[4] - J[0]) @ palm_axis)
    ref = np.where(finger[:, None] != "", base, v)  # fingers move rigidly with their base
    dirs[:, :, 0] = 0.06 * (v - J[0])
    dirs[:, 2, 1] = 0.08 * (ref[:, 2] - J[4, 2])
    along = np.clip((ref - J[0]) @ palm_axis, 0.0, palm_len)
    dirs[:, :, 4] = 0.06 * along[:, None] * palm_axis
    dirs[:, :, 3] = 0.12 * radial
    for k, name in enumerate(_TIP_ORDER):
        sel = finger == name
        u = axis[name]
        grow = 0.06 * ((v[sel] - base[sel]) @ u)[:, None] * u
        dirs[sel, :, 2] += grow
        dirs[sel, :, 5 + k] = grow
    return dirs


# --------------------------------------------------------------------------------------------- SMPL

# Smplx's landmark vertex ids on SMPL's mesh (face, feet, finger tips).
SMPL_LANDMARK_IDS = {
    "nose": 332, "reye": 6260, "leye": 2800, "rear": 4071, "lear": 583,
    "rthumb": 6191, "rindex": 5782, "rmiddle": 5905, "rring": 6016, "rpinky": 6133,
    "lthumb": 2746, "lindex": 2319, "lmiddle": 2445, "lring": 2556, "lpinky": 2673,
    "LBigToe": 3216, "LSmallToe": 3226, "LHeel": 3387, "RBigToe": 6617, "RSmallToe": 6624, "RHeel": 6787,
}  # fmt: skip


def _body_joints(gender: str) -> np.ndarray:
    """SMPL rest joints (24, 3): T-pose, y up, facing +z, the body's left on +x, metres."""
    L = np.array([
        (0.000, -0.223, 0.028), (0.068, -0.313, 0.015), (-0.068, -0.313, 0.015), (0.000, -0.110, -0.005),
        (0.105, -0.690, 0.010), (-0.105, -0.690, 0.010), (0.000, 0.025, 0.005), (0.090, -1.090, -0.030),
        (-0.090, -1.090, -0.030), (0.000, 0.080, 0.030), (0.115, -1.150, 0.095), (-0.115, -1.150, 0.095),
        (0.000, 0.290, -0.010), (0.075, 0.195, -0.005), (-0.075, 0.195, -0.005), (0.000, 0.355, 0.040),
        (0.170, 0.230, -0.015), (-0.170, 0.230, -0.015), (0.425, 0.215, -0.035), (-0.425, 0.215, -0.035),
        (0.680, 0.220, -0.035), (-0.680, 0.220, -0.035), (0.765, 0.212, -0.045), (-0.765, 0.212, -0.045),
    ])  # fmt: skip
    # Slightly different proportions per gender file, so the three files are distinguishable.
    scale = {"neutral": 1.0, "male": 1.04, "female": 0.96}[gender]
    return L * scale


def _body_mesh(gender: str) -> tuple[_Mesh, np.ndarray, dict[str, int]]:
    J = _body_joints(gender)
    s = {"neutral": 1.0, "male": 1.04, "female": 0.96}[gender]
    hip_w = {"neutral": 1.0, "male": 0.95, "female": 1.08}[gender]
    mesh = _Mesh(SMPL_PARENTS)
    z_axis, x_axis, y_axis = np.eye(3)[2], np.eye(3)[0], np.eye(3)[1]

    # Torso: pelvis -> spine1 -> spine2 -> spine3, continued to the shoulders; width along x.
    ys = np.array([-0.40, -0.36, -0.30, J[0, 1] / s, -0.16, J[3, 1] / s, -0.05, J[6, 1] / s,
                   J[9, 1] / s, 0.14, 0.19, 0.23, 0.26]) * s  # fmt: skip
    key_y = J[[0, 3, 6, 9], 1]
    key_z = J[[0, 3, 6, 9], 2]
    widths = np.array([0.12 * hip_w, 0.155 * hip_w, 0.17 * hip_w, 0.17 * hip_w, 0.155, 0.145, 0.145,
                       0.155, 0.16, 0.165, 0.17, 0.16, 0.12]) * s  # fmt: skip
    depths = np.array([0.07, 0.10, 0.11, 0.115, 0.105, 0.10, 0.10, 0.105, 0.11, 0.105, 0.10, 0.09, 0.07]) * s
    weights_of = [{0: 1}, {0: 1}, {0: 1}, {0: 1}, {0: 0.5, 3: 0.5}, {3: 1}, {3: 0.5, 6: 0.5}, {6: 1},
                  {9: 1}, {9: 1}, {9: 1}, {9: 1}, {9: 1}]  # fmt: skip
    reg_of = {3: 0, 5: 3, 7: 6, 8: 9}
    rings = []
    for i, y in enumerate(ys):
        c = np.array([0.0, y, np.interp(y, key_y, key_z)])
        if i in reg_of:
            c = J[reg_of[i]].copy()
        rings.append(dict(c=c, d=y_axis, a=x_axis, r=(widths[i], depths[i]), w=weights_of[i],
                          reg=reg_of.get(i)))
    mesh.tube(_refine(rings), 48, "torso", start_cap=np.array([0.0, ys[0] - 0.02 * s, 0.02]),
              end_cap=np.array([0.0, ys[-1] + 0.02 * s, -0.01]))

    # Neck: spine3 region up into the head, with the rings that regress the neck and head joints.
    neck_pts = [np.array([0.0, 0.22 * s, -0.01]), J[12], J[15], np.array([0.0, 0.40 * s, 0.035])]
    neck_specs = [(neck_pts[0], {9: 1}, None, 0.055), (J[12], {9: 0.5, 12: 0.5}, 12, 0.052),
                  ((J[12] + J[15]) / 2, {12: 1}, None, 0.05), (J[15], {12: 0.5, 15: 0.5}, 15, 0.05),
                  (neck_pts[3], {15: 1}, None, 0.048)]  # fmt: skip
    rings = [dict(c=c, d=y_axis, a=x_axis, r=(r * s, r * s * 1.05), w=w, reg=reg) for c, w, reg, r in neck_specs]
    mesh.tube(rings, 32, "neck", start_cap=neck_pts[0] - np.array([0, 0.01, 0]),
              end_cap=neck_pts[3] + np.array([0, 0.01, 0]))

    # Head: an ellipsoid above the head joint, skinned to it.
    centre = np.array([0.0, 0.47 * s, 0.035 * s])
    rx, ry, rz = 0.078 * s, 0.12 * s, 0.098 * s
    thetas = np.linspace(0.0, np.pi, 26)[1:-1]
    rings = [dict(c=centre - np.array([0, ry * np.cos(th), 0]), d=y_axis, a=x_axis,
                  r=(rx * np.sin(th), rz * np.sin(th)), w={15: 1}, reg=None) for th in thetas]
    mesh.tube(rings, 48, "head", start_cap=centre - np.array([0, ry, 0]), end_cap=centre + np.array([0, ry, 0]))

    # Legs: hip -> knee -> ankle, then a foot from the heel through the ball of the foot to the toes.
    for side, sign, (hip, knee, ankle, foot) in (("l", 1, (1, 4, 7, 10)), ("r", -1, (2, 5, 8, 11))):
        pts = np.stack([J[hip], J[knee], J[ankle], J[ankle] + np.array([0, -0.035, 0]) * s])
        specs = [(0, 0.0, (0.085, 0.085), {0: 0.5, hip: 0.5}, hip), (0, 0.2, (0.082, 0.08), {hip: 1}, None),
                 (0, 0.4, (0.075, 0.075), {hip: 1}, None), (0, 0.6, (0.068, 0.068), {hip: 1}, None),
                 (0, 0.8, (0.058, 0.058), {hip: 1}, None),
                 (1, 0.0, (0.052, 0.054), {hip: 0.5, knee: 0.5}, knee), (1, 0.15, (0.052, 0.055), {knee: 1}, None),
                 (1, 0.35, (0.054, 0.058), {knee: 1}, None), (1, 0.55, (0.047, 0.05), {knee: 1}, None),
                 (1, 0.75, (0.038, 0.04), {knee: 1}, None), (1, 0.9, (0.034, 0.036), {knee: 1}, None),
                 (2, 0.0, (0.035, 0.038), {knee: 0.5, ankle: 0.5}, ankle), (2, 0.9, (0.03, 0.033), {ankle: 1}, None)]
        specs = [(a, b, (r[0] * s, r[1] * s), w, reg) for a, b, r, w, reg in specs]
        rings = _polyline_rings(pts, specs, lambda seg, d: x_axis)
        mesh.tube(_refine(rings), 32, f"leg_{side}", start_cap=J[hip] + np.array([0, 0.03, 0]) * s, end_cap=pts[-1])
        heel = np.array([J[ankle, 0], J[foot, 1] - 0.005 * s, J[ankle, 2] - 0.065 * s])
        toe = np.array([J[foot, 0] + sign * 0.005, J[foot, 1] - 0.01 * s, J[foot, 2] + 0.11 * s])
        fpts = np.stack([heel, J[foot], toe])
        specs = [(0, 0.0, (0.03, 0.03), {ankle: 1}, None), (0, 0.25, (0.036, 0.035), {ankle: 1}, None),
                 (0, 0.5, (0.04, 0.036), {ankle: 1}, None), (0, 0.75, (0.044, 0.03), {ankle: 1}, None),
                 (1, 0.0, (0.046, 0.025), {ankle: 0.5, foot: 0.5}, foot), (1, 0.35, (0.045, 0.02), {foot: 1}, None),
                 (1, 0.7, (0.04, 0.016), {foot: 1}, None), (1, 0.9, (0.03, 0.013), {foot: 1}, None)]
        specs = [(a, b, (r[0] * s, r[1] * s), w, reg) for a, b, r, w, reg in specs]
        rings = _polyline_rings(fpts, specs, lambda seg, d: x_axis)
        mesh.tube(_refine(rings), 24, f"foot_{side}", start_cap=heel - np.array([0, 0, 0.012]) * s,
                  end_cap=toe + np.array([0, 0, 0.01]) * s)

    # Arms: collar -> shoulder -> elbow -> wrist -> hand -> finger ends, palms down, thumbs forward.
    for side, sign, (spine, collar, shoulder, elbow, wrist, hand) in (
        ("l", 1, (9, 13, 16, 18, 20, 22)), ("r", -1, (9, 14, 17, 19, 21, 23))
    ):
        end = J[hand] + np.array([sign * 0.10, -0.005, 0.0]) * s
        pts = np.stack([J[collar], J[shoulder], J[elbow], J[wrist], J[hand], end])
        specs = [(0, 0.0, (0.06, 0.06), {spine: 0.5, collar: 0.5}, collar), (0, 0.5, (0.062, 0.062), {collar: 1}, None),
                 (1, 0.0, (0.058, 0.058), {collar: 0.5, shoulder: 0.5}, shoulder),
                 (1, 0.2, (0.052, 0.05), {shoulder: 1}, None), (1, 0.45, (0.047, 0.045), {shoulder: 1}, None),
                 (1, 0.7, (0.043, 0.042), {shoulder: 1}, None), (1, 0.9, (0.04, 0.039), {shoulder: 1}, None),
                 (2, 0.0, (0.038, 0.037), {shoulder: 0.5, elbow: 0.5}, elbow),
                 (2, 0.2, (0.039, 0.037), {elbow: 1}, None),
                 (2, 0.45, (0.036, 0.033), {elbow: 1}, None), (2, 0.7, (0.031, 0.028), {elbow: 1}, None),
                 (2, 0.9, (0.028, 0.024), {elbow: 1}, None),
                 (3, 0.0, (0.028, 0.022), {elbow: 0.5, wrist: 0.5}, wrist), (3, 0.5, (0.04, 0.018), {wrist: 1}, None),
                 (4, 0.0, (0.045, 0.016), {wrist: 0.5, hand: 0.5}, hand), (4, 0.3, (0.044, 0.013), {hand: 1}, None),
                 (4, 0.6, (0.04, 0.011), {hand: 1}, None), (4, 0.85, (0.034, 0.009), {hand: 1}, None)]
        specs = [(a, b, (r[0] * s, r[1] * s), w, reg) for a, b, r, w, reg in specs]
        # Width along z (front-back) for the arm; the hand is wide front-back and thin vertically.
        rings = _polyline_rings(pts, specs, lambda seg, d: z_axis)
        mesh.tube(_refine(rings), 28, f"arm_{side}", start_cap=J[collar] - np.array([sign * 0.03, 0, 0]) * s,
                  end_cap=end + np.array([sign * 0.005, 0, 0]) * s)

    # Landmarks: single vertices on the surface where smplx reads nose, eyes, ears, toes, heels, tips.
    marks = {}
    head = {"nose": (0.0, -0.005, 1.02), "reye": (-0.035, 0.03, 0.92), "leye": (0.035, 0.03, 0.92),
            "rear": (-1.0, 0.0, 0.05), "lear": (1.0, 0.0, 0.05)}  # fmt: skip
    for name, (fx, fy, fz) in head.items():
        p = centre + np.array([fx * rx, fy, fz * rz])
        marks[name] = mesh.vertex(p, {15: 1}, "landmark")
    for side, sign, (ankle, foot) in (("L", 1, (7, 10)), ("R", -1, (8, 11))):
        toe_z = J[foot, 2] + 0.12 * s
        marks[f"{side}BigToe"] = mesh.vertex((J[foot, 0] - sign * 0.02 * s, J[foot, 1] - 0.015 * s, toe_z),
                                             {foot: 1}, "landmark")
        small_toe = (J[foot, 0] + sign * 0.03 * s, J[foot, 1] - 0.015 * s, toe_z - 0.03 * s)
        marks[f"{side}SmallToe"] = mesh.vertex(small_toe, {foot: 1}, "landmark")
        marks[f"{side}Heel"] = mesh.vertex((J[ankle, 0], J[foot, 1] - 0.01 * s, J[ankle, 2] - 0.08 * s),
                                           {ankle: 1}, "landmark")
    for side, sign, hand in (("l", 1, 22), ("r", -1, 23)):
        tip_x = J[hand, 0] + sign * 0.10 * s
        for k, name in enumerate(("index", "middle", "ring", "pinky")):
            z = (0.027 - 0.018 * k) * s  # the thumb side is +z (front) for both palms-down hands
            marks[f"{side}{name}"] = mesh.vertex((tip_x - sign * 0.004 * abs(k - 1.2) * s, J[hand, 1], z),
                                                 {hand: 1}, "landmark")
        marks[f"{side}thumb"] = mesh.vertex((J[hand, 0] - sign * 0.01 * s, J[hand, 1] - 0.01 * s, 0.06 * s),
                                            {hand: 1}, "landmark")
    return mesh, J, marks


def _body_shapedirs(v: np.ndarray, radial: np.ndarray, part: list[str], J: np.ndarray) -> np.ndarray:
    """(6890, 3, 10) shape directions: size, girth, leg length, arm length, torso length (rest zero)."""
    dirs = np.zeros((len(v), 3, 10))
    part_arr = np.array(part)
    dirs[:, :, 0] = 0.05 * (v - J[0])
    dirs[:, :, 1] = 0.15 * radial
    is_leg = np.char.startswith(part_arr, "leg") | np.char.startswith(part_arr, "foot") | (
        (part_arr == "landmark") & (v[:, 1] < J[4, 1]))
    hip_y, ankle_y = J[1, 1], J[7, 1]
    dirs[is_leg, 1, 2] = 0.08 * np.clip(v[is_leg, 1] - hip_y, ankle_y - hip_y, 0.0)
    is_arm = np.char.startswith(part_arr, "arm") | ((part_arr == "landmark") & (np.abs(v[:, 0]) > J[16, 0]))
    beyond = np.clip(np.abs(v[:, 0]) - J[16, 0], 0.0, None) * np.sign(v[:, 0])
    dirs[is_arm, 0, 3] = 0.08 * beyond[is_arm]
    dirs[~is_leg, 1, 4] = 0.08 * np.clip(v[~is_leg, 1] - J[0, 1], 0.0, J[12, 1] - J[0, 1])
    return dirs


def build_standin_smpl(gender: str = "neutral") -> dict:
    """The stand-in SMPL model as the dict a real ``SMPL_<GENDER>.pkl`` holds (plus ``mhe_standin``)."""
    if gender not in ("neutral", "male", "female"):
        raise ValueError(f"gender must be 'neutral', 'male' or 'female', got {gender!r}")
    mesh, J, marks = _body_mesh(gender)
    fixed = {old: [SMPL_LANDMARK_IDS[name]] for name, old in marks.items()}
    v, w, f, jreg, radial, part, _ = _finalise(mesh, SMPL_NUM_VERTS, SMPL_NUM_FACES, fixed)
    return {
        "v_template": v,
        "f": f,
        "weights": w,
        "J_regressor": jreg,
        "J": jreg @ v,
        "kintree_table": _kintree(SMPL_PARENTS),
        "shapedirs": _body_shapedirs(v, radial, part, J),
        "posedirs": np.zeros((SMPL_NUM_VERTS, 3, 9 * 23)),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
        STANDIN_KEY: f"smpl-{gender} v{STANDIN_VERSION}",
    }


# -------------------------------------------------------------------------------------------- cache


def standin_dir() -> Path:
    """Folder of cached stand-ins, laid out like a real model folder (``mano/``, ``smpl/``)."""
    return data_dir() / "body_models" / "standin"


def _cached(path: Path, tag: str) -> bool:
    if not path.is_file():
        return False
    try:  # read_model_file keeps what a file holds: the load that follows this check reads it no more
        return str(read_model_file(path).get(STANDIN_KEY)) == tag
    except Exception:  # a foreign or broken cache file is simply regenerated
        return False


def ensure_standin(kind: str, variant: str) -> Path:
    """Path of the cached stand-in (``kind`` "mano" with side, or "smpl" with gender), generated if missing
    or from another :data:`STANDIN_VERSION`. Written atomically, so concurrent test workers are safe;
    when the data folder is read-only the cache goes to the system temp folder instead."""
    if kind == "mano":
        rel = Path("mano") / f"MANO_{variant.upper()}.pkl"
    elif kind == "smpl":
        rel = Path("smpl") / f"SMPL_{variant.upper()}.pkl"
    else:
        raise ValueError(f"kind must be 'mano' or 'smpl', got {kind!r}")
    tag = f"{kind}-{variant} v{STANDIN_VERSION}"
    primary, fallback = standin_dir() / rel, Path(tempfile.gettempdir()) / "mhe_standin" / rel
    for path in (primary, fallback):
        if _cached(path, tag):
            return path
    data = build_standin_mano(variant) if kind == "mano" else build_standin_smpl(variant)
    buf = io.BytesIO()
    pickle.dump(data, buf, protocol=4)
    try:
        return atomic_write_bytes(primary, buf.getvalue())
    except OSError:
        return atomic_write_bytes(fallback, buf.getvalue())
