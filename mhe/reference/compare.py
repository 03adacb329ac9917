"""How a model's hypotheses differ from a reference posterior's draws (issue 29's decomposition).

Each function takes the hypotheses ``(B, S, J, 3)`` and the reference's draws ``(B, R, J, 3)`` of the same B
items (root-relative joints, any unit):

* :func:`calibration_against_draws`: the calibration curve of the hypotheses' central regions (the cGNF
  protocol, :func:`mhe.diagnostics.calibration_curve`) with each reference draw in turn taken as the
  truth, averaged over the draws. Hypotheses drawn from the reference posterior itself score about 0.
* :func:`energy_distance`: ``2 E|X − Y| − E|X − X'| − E|Y − Y'|`` between the two sets per item and joint
  (Székely & Rizzo), U-statistics within each set: 0 in expectation when both come from one distribution.
* :func:`spread_ratio`: the hypotheses' RMS distance to their mean over the reference's, per item and joint.
* :func:`depth_signs` and :func:`flip_mass`: the share of draws in which a bone's child lies deeper than its
  parent (the depth-flip modes a single view leaves open), and the total variation between the two sets'
  distributions over the joint signs of chosen bones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mhe.diagnostics import calibration_curve

__all__ = ["calibration_against_draws", "energy_distance", "spread_ratio", "depth_signs", "flip_mass"]


def _check(hyps: Tensor, ref: Tensor) -> None:
    if hyps.dim() != 4 or ref.dim() != 4 or hyps.shape[0] != ref.shape[0] or hyps.shape[2:] != ref.shape[2:]:
        raise ValueError(f"expected hypotheses (B, S, J, D) and reference draws (B, R, J, D) of the same B, J, D; "
                         f"got {tuple(hyps.shape)} and {tuple(ref.shape)}")


def calibration_against_draws(hyps: Tensor, ref: Tensor, mask: Tensor, levels: Sequence[float],
                              max_draws: int | None = None) -> Tensor:
    """The calibration curve ``(len(levels),)`` of ``hyps`` against each of (the first ``max_draws`` of) the
    reference draws as the truth, averaged over the draws; ``mask (B, J)`` picks the (item, joint) pairs."""
    _check(hyps, ref)
    R = ref.shape[1] if max_draws is None else min(max_draws, ref.shape[1])
    return torch.stack([calibration_curve(hyps, ref[:, r], mask, levels) for r in range(R)]).mean(0)


def _mean_distance(a: Tensor, b: Tensor, same: bool) -> Tensor:
    """E|a − b| per (B, J) over all pairs (``same``: a is b, the diagonal left out: a U-statistic)."""
    a, b = a.double().permute(0, 2, 1, 3), b.double().permute(0, 2, 1, 3)  # (B, J, n, D)
    n, m = a.shape[-2], b.shape[-2]
    total = torch.stack([torch.cdist(x, y).sum((-1, -2)) for x, y in zip(a, b, strict=True)])  # item by item
    return total / (n * (n - 1)) if same else total / (n * m)


def energy_distance(hyps: Tensor, ref: Tensor) -> Tensor:
    """Energy distance ``(B, J)`` between the S hypotheses and the R reference draws of each item and joint."""
    _check(hyps, ref)
    if hyps.shape[1] < 2 or ref.shape[1] < 2:
        raise ValueError("the energy distance needs at least 2 draws in each set")
    return 2 * _mean_distance(hyps, ref, False) - _mean_distance(hyps, hyps, True) - _mean_distance(ref, ref, True)


def spread_ratio(hyps: Tensor, ref: Tensor) -> Tensor:
    """The hypotheses' RMS distance to their mean over the reference draws' ``(B, J)`` (nan where the
    reference does not move)."""
    _check(hyps, ref)

    def rms(x: Tensor) -> Tensor:
        x = x.double()
        return (x - x.mean(1, keepdim=True)).square().sum(-1).mean(1).sqrt()

    r = rms(ref)
    return torch.where(r > 0, rms(hyps) / r.clamp_min(1e-300), torch.full_like(r, float("nan")))


def depth_signs(joints: Tensor, bones: Sequence[tuple[int, int]], axis: int = 2) -> Tensor:
    """Whether each bone's child lies deeper than its parent, ``(B, N, len(bones))`` bool, for draws
    ``joints (B, N, J, 3)``; ``bones`` are (parent, child) keypoint pairs, depth along ``axis``."""
    parent = torch.tensor([p for p, _ in bones], dtype=torch.long)
    child = torch.tensor([c for _, c in bones], dtype=torch.long)
    return joints[:, :, child, axis] > joints[:, :, parent, axis]


def flip_mass(hyps: Tensor, ref: Tensor, bones: Sequence[tuple[int, int]]) -> dict[str, Tensor]:
    """The depth-flip modes of ``bones`` in the two sets: ``p_hyp``, ``p_ref`` ``(B, len(bones))`` the
    share of draws with the child deeper than the parent, and ``tv`` ``(B,)`` the total variation distance
    between the two sets' distributions over the joint sign patterns (modes) of all the bones."""
    _check(hyps, ref)
    if len(bones) > 20:
        raise ValueError(f"at most 20 bones (2^20 sign patterns), got {len(bones)}")
    sh, sr = depth_signs(hyps, bones), depth_signs(ref, bones)
    weights = 2 ** torch.arange(len(bones))
    code_h, code_r = (sh.long() * weights).sum(-1), (sr.long() * weights).sum(-1)  # (B, N)
    tv = []
    for ch, cr in zip(code_h, code_r, strict=True):
        values = torch.cat([ch, cr]).unique()
        ph = (ch[:, None] == values).double().mean(0)
        pr = (cr[:, None] == values).double().mean(0)
        tv.append(0.5 * (ph - pr).abs().sum())
    return {"p_hyp": sh.double().mean(1), "p_ref": sr.double().mean(1), "tv": torch.stack(tv)}
