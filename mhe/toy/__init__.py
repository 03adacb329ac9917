"""Toy problems that make the MHEntropy argument visible in seconds: 2D targets and the two-link arm.

*2D targets* are unnormalised log-densities (a ring of Gaussians, two moons, a banana) that a flow
can fit by reverse KL (with or without the entropy term) or by NLL on samples drawn from them
(:func:`fit_target`, the training loop notebook 01 writes out); :func:`count_ring_modes` counts how many
of the ring's Gaussians a fit keeps.
*The two-link arm* is the paper's toy: a planar arm rooted at the origin with unit links, angles
(α1, α2). α1 is the first link's angle from +y (positive towards +x), α2 the second link's angle
relative to the first; elbow = (sin α1, cos α1), tip = elbow + (sin(α1+α2), cos(α1+α2)). Only the
two keypoints' heights are observed, so one observation has four exact solutions (elbow left /
right × tip bent either way), each with the same posterior mass. :class:`ArmModel` implements the
model protocol of :mod:`mhe.objectives`, so the arm trains with exactly the objectives the hand
and body models use; :func:`fit_arm` trains one and :func:`mode_coverage` scores it.

Training aids of :func:`fit_arm` (documented there and in :class:`ArmOptions`, explained for students in
``docs/toy_training.md``; none changes the reverse-KL objective): a spline-coupling flow over scaled absolute
link angles that spans the prior box from the start; tempering of the likelihood scale b; reparameterised
(pathwise) gradients first, then a *polish* phase of score-function gradients at the final b (which even out
the mode masses that pathwise gradients barely see); a smaller, cosine-annealed learning rate in the polish
phase and an exponential moving average of the weights.

How close a fit comes to the exact posterior: :func:`posterior_match` compares its samples with
samples of :class:`ExactArmPosterior` on held-out observations (coverage within a radius of the
exact solutions, mass per solution, solutions hit), and :func:`write_posterior_match` writes the
table that notebook 01 commits as ``figures/01_posterior_match.csv``. Whether a fit's spread is *right*:
:func:`arm_calibration` scores its calibration against truths of the target's own generative process
(:func:`arm_truths`), on which the exact posterior is calibrated.

The package has five modules: :mod:`mhe.toy.targets` (the 2D targets, :func:`fit_target`, mode counting),
:mod:`mhe.toy.arm` (the arm, its flow model, :func:`fit_arm`), :mod:`mhe.toy.posterior` (the exact posterior
and how close a fit comes to it), :mod:`mhe.toy.calibration` (calibration against the truth) and
:mod:`mhe.toy.together` (several fits at once: arms that differ only in their term weights as one batched
model, :func:`fit_arm_group`; any fits on forked processes, :func:`in_processes`; notebook 01's ablation,
:func:`fit_arms`). Both fits use
:class:`mhe.flows.ConditionalFlow`, and every public name is importable from ``mhe.toy``. Both fits train
through the package's one loop, :func:`mhe.training.fit`.
"""

from __future__ import annotations

from mhe.toy.arm import (
    ARM_OBJECTIVES,
    ARM_WEIGHTS,
    ArmModel,
    ArmOptions,
    TwoLinkArm,
    arm_batch,
    fit_arm,
    observe,
    score_function_loss,
    tempered_b,
)
from mhe.toy.calibration import (
    CALIBRATION_LEVELS,
    arm_calibration,
    arm_truths,
    write_arm_calibration,
    write_arm_hypotheses,
)
from mhe.toy.posterior import (
    EXACT_NAME,
    MATCH_COLUMNS,
    MATCH_RADIUS,
    ExactArmPosterior,
    arm_coverage,
    held_out_arm_observations,
    posterior_match,
    posterior_statistics,
    write_posterior_match,
)
from mhe.toy.targets import (
    RING_MODES,
    RING_RADIUS,
    RING_SIGMA,
    TARGET_BOX,
    TARGETS,
    banana_log_density,
    count_modes,
    count_ring_modes,
    density_grid,
    fit_target,
    mode_coverage,
    moons_log_density,
    ring_centres,
    ring_log_density,
    sample_target,
    target_beta,
    target_log_density,
)
from mhe.toy.together import GROUPABLE, fit_arm_group, fit_arms, in_processes

__all__ = [
    "ARM_OBJECTIVES", "ARM_WEIGHTS", "CALIBRATION_LEVELS", "EXACT_NAME", "GROUPABLE", "MATCH_COLUMNS",
    "MATCH_RADIUS", "RING_MODES", "RING_RADIUS", "RING_SIGMA", "TARGETS", "TARGET_BOX", "ArmModel", "ArmOptions",
    "ExactArmPosterior", "TwoLinkArm",
    "arm_batch", "arm_calibration", "arm_coverage", "arm_truths", "banana_log_density", "count_modes",
    "count_ring_modes", "density_grid", "fit_arm", "fit_arm_group", "fit_arms", "fit_target", "in_processes",
    "held_out_arm_observations", "mode_coverage", "moons_log_density", "observe", "posterior_match",
    "posterior_statistics", "ring_centres", "ring_log_density", "sample_target", "score_function_loss",
    "target_beta", "target_log_density", "tempered_b", "write_arm_calibration", "write_arm_hypotheses",
    "write_posterior_match",
]
