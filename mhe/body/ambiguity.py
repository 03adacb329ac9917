"""Constructing ambiguous poses: different 3D poses that explain the same visible 2D keypoints.

Two ambiguities make monocular 3D pose multi-modal. **Depth**: under the orthographic camera of
:func:`mhe.geometry.project_orthographic`, reflecting a kinematic chain's joints in the plane of
constant depth through its base joint (``z -> 2 z_pivot - z``) changes no 2D keypoint and no bone
length; :func:`fit_pose` then finds joint rotations that realise the reflected chain, so the result
is a genuine model pose (a finger bent towards the camera becomes one bent away from it).
**Occlusion**: keypoints nobody sees constrain nothing, so any pose of the hidden fingers fits
(:func:`vary_fingers`). Poses here are axis-angle (``use_pca=False`` hands, SMPL bodies).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from mhe.body.mano import HandModel

__all__ = [
    "FINGER_CHAINS",
    "mirror_in_depth",
    "fit_pose",
    "depth_flip_finger",
    "vary_fingers",
]

# Per finger: the kinematic joints (base first) and the fingertip keypoint, in the package order.
FINGER_CHAINS: dict[str, tuple[int, ...]] = {
    "thumb": (13, 14, 15, 16),
    "index": (1, 2, 3, 17),
    "middle": (4, 5, 6, 18),
    "ring": (10, 11, 12, 19),
    "pinky": (7, 8, 9, 20),
}


def mirror_in_depth(joints: Tensor, chain: Sequence[int], pivot: int) -> Tensor:
    """Reflect the joints ``chain`` of ``joints (..., J, 3)`` in the plane ``z = z[pivot]``.

    Returns a new ``(..., J, 3)``; x and y (hence every orthographic 2D keypoint) are unchanged, and
    so are all distances within ``chain + [pivot]``.
    """
    if joints.dim() < 2 or joints.shape[-1] != 3:
        raise ValueError(f"joints must have shape (..., J, 3), got {tuple(joints.shape)}")
    idx = torch.as_tensor(list(chain), dtype=torch.long, device=joints.device)
    out = joints.clone()
    z_pivot = joints[..., pivot : pivot + 1, 2]
    out[..., idx, 2] = 2 * z_pivot - joints[..., idx, 2]
    return out


def fit_pose(
    joints_of: Callable[[Tensor], Tensor],
    pose: Tensor,
    free: Sequence[int],
    target: Tensor,
    joint_ids: Sequence[int],
    inits: Sequence[Tensor] = (),
    max_iter: int = 200,
) -> tuple[Tensor, float]:
    """Inverse kinematics: change the entries ``free`` of ``pose (D,)`` so that ``joints_of(pose)[joint_ids]``
    matches ``target (K, 3)``; returns ``(pose (D,), rms error in the units of target)``.

    ``joints_of`` maps a pose ``(D,)`` to joints ``(J, 3)``. L-BFGS runs from the given pose and from each
    extra starting value in ``inits`` (values for the free entries); the best fit is kept.
    """
    free_idx = torch.as_tensor(list(free), dtype=torch.long, device=pose.device)
    ids = torch.as_tensor(list(joint_ids), dtype=torch.long, device=pose.device)
    if target.shape != (len(ids), 3):
        raise ValueError(
            f"target must have shape ({len(ids)}, 3) for {len(ids)} joint_ids, got {tuple(target.shape)}"
        )

    def full(values: Tensor) -> Tensor:
        p = pose.detach().clone()
        p[free_idx] = values
        return p

    def refine(start: Tensor) -> Tensor:
        """L-BFGS on the free entries from ``start``; returns the fitted values."""
        x = start.clone().requires_grad_(True)
        opt = torch.optim.LBFGS([x], max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                                tolerance_change=1e-15)

        def closure() -> Tensor:
            opt.zero_grad()
            loss = (joints_of(full(x))[ids] - target).pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return x.detach()

    best, best_err = pose.detach().clone(), float("inf")
    for start in [pose.detach()[free_idx]] + [s.detach().to(pose) for s in inits]:
        values = refine(start)
        with torch.no_grad():
            err = (joints_of(full(values))[ids] - target).pow(2).sum(-1).mean().sqrt().item()
        if err < best_err:
            best, best_err = full(values), err
    return best, best_err


def _hand_joints_fn(model: HandModel, global_orient: Tensor, betas: Tensor | None,
                    transl: Tensor | None) -> Callable[[Tensor], Tensor]:
    if getattr(model, "use_pca", False):
        raise ValueError("ambiguity helpers need an axis-angle hand: load_mano(use_pca=False)")
    go = global_orient.reshape(1, 3)
    b = None if betas is None else betas.reshape(1, -1)
    t = None if transl is None else transl.reshape(1, 3)
    return lambda pose: model(go, pose.reshape(1, -1), b, t).joints[0]


def depth_flip_finger(
    model: HandModel,
    global_orient: Tensor,
    hand_pose: Tensor,
    finger: str = "index",
    betas: Tensor | None = None,
    transl: Tensor | None = None,
) -> tuple[Tensor, float]:
    """A second hand pose whose ``finger`` is the depth mirror image of the first one's.

    ``model``: an axis-angle hand (``load_mano(use_pca=False)``) whose output frame is the camera frame;
    ``global_orient (3,)``, ``hand_pose (45,)``. The finger's base joint stays put and the rest of the
    finger is reflected in the plane of constant depth through it; the three joint rotations of that
    finger are refit. Returns ``(hand_pose (45,), rms joint error of the fit in metres)``: every
    orthographic 2D keypoint of the new pose equals the old one up to that error.
    """
    if finger not in FINGER_CHAINS:
        raise ValueError(f"finger must be one of {list(FINGER_CHAINS)}, got {finger!r}")
    joints_of = _hand_joints_fn(model, global_orient, betas, transl)
    chain = FINGER_CHAINS[finger]
    with torch.no_grad():
        target = mirror_in_depth(joints_of(hand_pose), chain[1:], chain[0])[list(chain)]
    free = [3 * (j - 1) + k for j in chain[:3] for k in range(3)]
    # Starting from the opposite bend helps L-BFGS reach the mirrored branch.
    mean = model.pose_mean[3:].to(hand_pose)
    total = hand_pose + mean
    flipped = (-total - mean)[free]
    return fit_pose(joints_of, hand_pose, free, target, chain, inits=[flipped])


def vary_fingers(
    model: HandModel,
    hand_pose: Tensor,
    fingers: Sequence[str],
    num: int,
    low: float = -0.2,
    high: float = 1.4,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``num`` copies of the axis-angle ``hand_pose (45,)`` in which every joint of ``fingers`` is set to a
    random flexion: an angle uniform in ``[low, high]`` rad about that joint's flexion axis
    (``model.flex_axes``, the direction of MANO's mean rotation, which is mostly flexion).

    ``model`` is the axis-angle hand the pose is meant for (its ``hands_mean`` offset is accounted for).
    Returns ``(num, 45)``. Only the named fingers change, so the keypoints of every other finger and
    their 2D projections are identical across the copies.
    """
    if getattr(model, "use_pca", False):
        raise ValueError("vary_fingers needs an axis-angle hand: load_mano(use_pca=False)")
    for f in fingers:
        if f not in FINGER_CHAINS:
            raise ValueError(f"unknown finger {f!r}; choose from {list(FINGER_CHAINS)}")
    out = hand_pose.detach().reshape(1, 45).repeat(num, 1)
    axes = model.flex_axes.to(out)
    mean = model.pose_mean[3:].to(out).view(15, 3)
    for f in fingers:
        for j in FINGER_CHAINS[f][:3]:
            angle = low + (high - low) * torch.rand(num, 1, generator=generator, dtype=out.dtype).to(out.device)
            # the model adds its mean pose: subtract it so the total rotation is angle * axis
            out[:, 3 * (j - 1) : 3 * j] = angle * axes[j - 1] - mean[j - 1]
    return out
