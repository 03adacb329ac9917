"""Multi-hypothesis pose metrics as the MHEntropy hand evaluation defines them.

With S hypotheses per image, 3D joints root-relative in millimetres and 2D joints in pixels:
*BH-MPJPE* is the mean per-joint 3D error of the best hypothesis (all joints, root included),
*PA-MPJPE* the same after a similarity (Procrustes) alignment of each hypothesis, *AH* the mean
visible-joint 2D error of the **worst** hypothesis, *PJD* the per-joint diversity
(per-axis standard deviation over hypotheses, geometric mean over the D axes, times sqrt(D)),
reported on the visible joints in 2D and the occluded joints in 3D, and *RD* the ratio of the two
dataset means. The root is left out of the visible/occluded sets and an image with an empty set is
skipped in that set's mean (Chen, Yang, Yao, "MHEntropy", ICCV 2023; docs/method.md, "Metrics"). Everything runs in
float64 on the inputs' device; :func:`evaluate_per_image` gives the per-image values that
:func:`evaluate` averages, and :func:`per_joint_table` the per-joint breakdown as a DataFrame.

For one image at a time (an explorer, a figure title): :func:`item_metrics` gives the metrics of one
(S, J) set of hypotheses, :func:`per_item_metrics` the same for a batch without averaging (RD per
image), and :func:`joint_diversity` the per-joint bars (PJD 2D on visible, 3D on occluded joints).
RD is computed by :func:`ratio_of_diversity` only, whether of one image or of dataset means.

**Chunks of hypotheses.** :class:`HypothesisStats` takes a batch's hypotheses a chunk at a time and gives the
same per-image values (exactly, up to rounding), and :func:`summarize` the same dataset figures, so that
S = 4096 hypotheses are scored in bounded memory (:func:`mhe.evaluation.evaluate_model`).

The package: :mod:`mhe.metrics.core` (the primitives), :mod:`mhe.metrics.streaming` (the running statistics)
and :mod:`mhe.metrics.scores` (the reported figures); every public name is importable from ``mhe.metrics``.

**Missing labels.** Real files lack some keypoints. A 2D keypoint that is not ``visible`` takes no part
in any 2D figure, so its ground truth may be NaN. A 3D label is said to exist by the explicit mask
``valid_3d (B, J)`` (default: every joint): the 3D figures (BH / PA / mean / mode MPJPE, the 3D diversities
and the depth flip) use only those joints, and an image with none is skipped in their means, as an image
with an empty visible set is skipped in AH. Ground truth outside these masks may be NaN; it is never read.
"""

from mhe.metrics.core import (
    ITEM_METRICS,
    ah,
    best_hypothesis,
    depth_flip,
    joint_errors,
    masked_joint_mean,
    mpjpe,
    pa_mpjpe,
    pjd,
    ratio_of_diversity,
    visibility_sets,
)
from mhe.metrics.scores import (
    evaluate,
    evaluate_per_image,
    item_metrics,
    joint_diversity,
    per_item_metrics,
    per_joint_table,
)
from mhe.metrics.streaming import HypothesisStats, summarize

__all__ = [
    "ITEM_METRICS",
    "HypothesisStats",
    "ah",
    "best_hypothesis",
    "depth_flip",
    "evaluate",
    "evaluate_per_image",
    "item_metrics",
    "joint_diversity",
    "joint_errors",
    "masked_joint_mean",
    "mpjpe",
    "pa_mpjpe",
    "per_item_metrics",
    "per_joint_table",
    "pjd",
    "ratio_of_diversity",
    "summarize",
    "visibility_sets",
]
