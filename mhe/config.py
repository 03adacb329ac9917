"""Experiment configuration schema: one nested dataclass per experiment, each field with a comment.

An :class:`ExperimentConfig` holds everything that decides a training run: the model
(:class:`ModelConfig`), the data (:class:`DataConfig`), the objective and its term weights
(:class:`ObjectiveConfig`) and the optimisation (:class:`TrainConfig`). Defaults are CPU-friendly; the
official MHEntropy hand settings are given in each field's comment. :func:`validate_config` rejects
values no run can use. Reading and writing YAML and ``key=value`` overrides live in :mod:`mhe.lab.config_io`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mhe.errors import ConfigError  # noqa: F401  (the error type of every config check)

PACKAGED_CONFIG_DIR = Path(__file__).resolve().parent / "configs"




@dataclass
class ModelConfig:
    """The multi-hypothesis model: encoder → context → conditional flow over the pose + deterministic head."""

    # which body the model decodes hypotheses with: "hand" (MANO, 21 keypoints) or "body" (SMPL, 17 keypoints).
    body: Literal["hand", "body"] = "hand"
    # which encoder turns a batch into the context: "mlp" on 2D keypoints + visibility, "resmlp" a residual
    # MLP on position- and size-normalised visible keypoints, "cnn" on small image crops, "resnet"
    # (torchvision) on image crops (official: ResNet-50).
    encoder: Literal["mlp", "resmlp", "cnn", "resnet"] = "mlp"
    # context features C produced by the encoder (official: 512).
    context_dim: int = 128
    # hidden widths of the keypoint MLP encoder ("resmlp": the first is the width, the count the blocks).
    encoder_hidden: tuple[int, ...] = (256, 256)
    # channels of the small CNN encoder's stride-2 stages (one stage per entry).
    cnn_channels: tuple[int, ...] = (32, 64, 128, 128)
    # ResNet depth when encoder == "resnet" (official: 50).
    resnet_depth: Literal[18, 34, 50] = 18
    # start the ResNet from ImageNet weights (needs them cached locally; no download at run time here).
    pretrained: bool = False
    # side length in pixels of the square image crops that image encoders read.
    image_size: int = 64
    # number of coupling transforms in the conditional flow (official: 12 = 6 steps × 2 masks).
    flow_transforms: int = 4
    # hidden widths of each coupling network (official: (512, 512)).
    flow_hidden: tuple[int, ...] = (128, 128)
    # the coupling kind: "realnvp" (affine couplings, the official flow) or "nsf_coupling" (monotonic
    # rational-quadratic spline couplings: more expressive per layer, ~3x the cost per step on a CPU).
    flow_kind: Literal["realnvp", "nsf_coupling"] = "realnvp"
    # parameterisation of the pose the flow models: MANO PCA coefficients (the official hand setting),
    # axis-angle per joint, or the continuous 6D rotation representation (ProHMR's, for bodies).
    pose_repr: Literal["pca", "axis_angle", "6d"] = "pca"
    # number of MANO PCA components when pose_repr == "pca" (official: 45, i.e. the full basis).
    num_pca_comps: int = 45
    # the finger-pose prior: "box" (PCA: the official soft box |x| <= 2; axis-angle / 6D: a soft box of
    # ±π/2 per joint axis around MANO's mean pose), "official" (PCA: the same box; axis-angle / 6D: the
    # official option, MANO's flat hand mean and a soft ball ‖θ‖ <= π on the 45-D vector) or
    # "joint_limits" (the soft anatomical joint-limit prior of mhe.body.limits, on top of the PCA box).
    # Bodies: "joint_limits" (mhe.body.body_limits) or "learned" (the joint limits plus a Gaussian mixture
    # fitted on unpaired poses, mhe.body.pose_prior, as priors learned from mocap).
    pose_prior: Literal["box", "official", "joint_limits", "learned"] = "box"
    # sample the global rotation with the flow (6D, with the orthonormality term, as ProHMR does for
    # bodies) instead of regressing it with the deterministic head: a palm whose tilt sign the 2D
    # keypoints cannot decide can then be two hypotheses.
    rotation_in_flow: bool = False
    # sample the shape β with the flow (appended to its variable, under the body's shape prior: bodies
    # β ~ N(0, 0.5²), the synthetic benchmark's) instead of regressing it with the deterministic head, so
    # that each hypothesis has its own bone lengths (issue 29: the target with the shape sampled is the
    # better calibrated one). Bodies only.
    shape_in_flow: bool = False
    # with the rotation in the flow: q is a mixture of the flow and its depth flip (the rigid part's
    # mirror image in depth, e.g. the palm tilted the other way), weighted by a learned probability, each
    # branch with a flow context of its own (mhe.models.flip); training enumerates both branches exactly.
    # Reverse KL alone rarely finds both tilts.
    flip_mixture: bool = False
    # with the flip mixture, at evaluation only: P(flipped) = sigmoid(logit / flip_temperature), temperature
    # scaling of the branch weight (training keeps the logit as is). Reverse KL makes the weight
    # overconfident (0 or 1 for most hands); tools/flip_calibration.py chooses this on validation by the
    # ground truth's log-likelihood under the model.
    flip_temperature: float = 1.0
    # weight of the soft joint-limit prior per squared radian outside a limit (hands with pose_prior:
    # joint_limits; bodies always).
    joint_limit_weight: float = 200.0
    # hidden width of the deterministic head (global rotation, shape, camera) (official: 512).
    head_hidden: int = 128
    # how the head outputs the global rotation: axis-angle (official) or the continuous 6D representation
    # (no discontinuity at 180°, much easier to regress for uniformly random rotations).
    head_rotation: Literal["axis_angle", "6d"] = "axis_angle"
    # one hypothesis per input (the flow's mode): what the "deterministic" objective trains; its
    # evaluation then has S = 1 (zero diversity by construction).
    deterministic: bool = False


@dataclass
class DataConfig:
    """Which dataset, where it lives and how big the splits are."""

    # dataset key; selects the experiment builder in mhe.lab.builders (see mhe.lab.builders.EXPERIMENTS).
    dataset: str = "synthetic-hands"
    # folder of a real dataset (HO3D v3 root); None for generated data.
    root: str | None = None
    # number of training items (generated data) or a cap on them (real data; None = all).
    train_size: int | None = 4096
    # number of validation items (generated data) or a cap on them (real data; None = all).
    val_size: int | None = 512
    # number of test items (generated data) or a cap on them (real data; None = all): what
    # `mhe evaluate --split test` scores (the README's tables use 500).
    test_size: int | None = 500
    # generated hands: target fraction of occluded finger joints (HO3D is heavily occluded); generated
    # bodies: fraction of items with an occluder in front of a limb.
    occlusion: float = 0.4
    # also produce rendered image crops (needed by the "cnn" / "resnet" encoders).
    images: bool = False
    # seed of the generated splits (independent of the training seed, so data stay fixed across runs).
    data_seed: int = 0
    # generated bodies: fraction of items whose crop cuts part of the body off (truncation).
    truncation: float = 0.3
    # generated hands: which joints count as visible, "depth" (the package's rule: object on the ray or
    # the hand's own surface 2 cm in front) or "official" (HO3D's rule: some hand pixel in a 9 x 9 window
    # and less than 40 mm behind the depth map).
    visibility: Literal["depth", "official"] = "depth"
    # generated hands: global rotations "uniform" or "ho3d" (the palm within 60° of facing towards or
    # away from the camera, as in hand-object footage).
    rotation: Literal["uniform", "ho3d"] = "uniform"


@dataclass
class ObjectiveConfig:
    """The training objective (a name in ``mhe.objectives.OBJECTIVES``) and its term weights.

    A weight left at ``None`` is not passed, so the objective's own default applies; which objective takes
    which weight is declared next to the objectives (:mod:`mhe.objectives`). Configs written before the
    weights were fields carried some under ``extra`` (``extra: {w_nll: 1.0}``); :func:`upgrade_config_dict`
    moves them to their fields at load.
    """

    # "mhentropy" | "nll" | "prohmr" | "min_of_n" | "deterministic" (or any registered objective).
    name: str = "mhentropy"
    # weight of the reconstruction term (Laplace log-likelihood of the visible 2D keypoints).
    w_rec: float | None = None
    # weight of the prior term (soft box / ball penalties; prohmr: -log prior of the mode and the samples).
    w_prior: float | None = None
    # weight of the entropy term; 0 gives the "no entropy" ablation.
    w_ent: float | None = None
    # weight of a 3D keypoint term (the 3D-supervised variant; 0 = 2D-visible supervision only).
    w_3d: float | None = None
    # renyi: the order α of the Rényi bound (1 = MHEntropy's reverse KL, 0 = importance weighted).
    alpha: float | None = None
    # Laplace scale b in [-1, 1] crop units (official: 0.03, about 3.8 px of a 256 px crop).
    b: float | None = 0.03
    # nll / prohmr: weight of -log q of the ground-truth pose (needs pose labels).
    w_nll: float | None = None
    # nll: weight of the Laplace loss of the mode's visible 2D keypoints.
    w_keypoints: float | None = None
    # prohmr: weight of the L1 of the mode's visible 2D keypoints (ProHMR: 0.01).
    w_2d_mode: float | None = None
    # prohmr: weight of the L1 of the samples' visible 2D keypoints (ProHMR: 1e-3).
    w_2d_samples: float | None = None
    # prohmr: weight of the L1 of the mode's root-relative 3D keypoints in metres (ProHMR's 3D setting: 0.05).
    w_3d_mode: float | None = None
    # prohmr: weight of the same for the samples (ProHMR: 0).
    w_3d_samples: float | None = None
    # prohmr: weight of the squared error of the mode's flow variable against the ground truth's (1e-3).
    w_params: float | None = None
    # prohmr: weight of the squared error of the predicted shape β (needs batch["betas"]; ProHMR: 5e-4).
    w_betas: float | None = None
    # prohmr: weight of the 6D rotations' orthonormality deviation (ProHMR: 0.1).
    w_ortho: float | None = None

    def kwargs(self) -> dict[str, float]:
        """The keyword arguments the objective is called with (weights left at None omitted)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "name" and getattr(self, f.name) is not None
        }


@dataclass
class TrainConfig:
    """Optimisation, evaluation, logging and checkpointing."""

    # number of passes over the training set (ignored when steps is set) (official: ~260).
    epochs: int = 20
    # total optimizer steps; when set it replaces epochs (the last epoch may stop part-way).
    steps: int | None = None
    # items per optimizer step and per process (official: 64).
    batch_size: int = 64
    # Adam learning rate (official: 2e-4).
    lr: float = 2e-4
    # learning-rate schedule over the run: "constant", or "cosine" decay from lr to 0 (a pure function of
    # the step, so resuming is exact).
    lr_schedule: Literal["constant", "cosine"] = "constant"
    # Adam weight decay.
    weight_decay: float = 0.0
    # clip the global gradient norm to this value; None or 0 disables clipping (official: 1.0).
    grad_clip: float | None = 1.0
    # hypotheses S drawn per item in training (official: 10); passed to objectives that take num_samples.
    num_samples: int = 10
    # tempering: over the first N steps the reconstruction and prior weights (w_rec, w_prior) ramp linearly
    # from 0 to their values, so q first fits a flattened target p̃^β (β: 0 → 1) and starts broad; 0: off.
    # The objective from step N on is unchanged. Only for objectives that take w_rec and w_prior.
    temper_steps: int = 0
    # validate every this many epochs (0 = never; the last epoch is always validated when > 0).
    eval_every: int = 1
    # hypotheses S per item during validation (official evaluation: 200).
    eval_samples: int = 50
    # sampling temperature during validation (official evaluation: 0.8).
    eval_temperature: float = 0.8
    # cap on validation items per evaluation (None = the whole validation set).
    eval_max_items: int | None = None
    # write one log row every this many steps (loss terms averaged over them).
    log_every: int = 1
    # save a resumable checkpoint every this many steps (0 = only at the end of each epoch and of training).
    checkpoint_every: int = 0
    # also save one whenever this many minutes passed since the last (0 = off), so a killed run loses
    # little; Ctrl-C and SIGTERM always save before stopping.
    checkpoint_minutes: float = 5.0
    # folder for logs and checkpoints; "{name}" is replaced by the experiment name.
    out_dir: str = "runs/{name}"
    # DataLoader worker processes (0 = load in the training process).
    num_workers: int = 0
    # drop the last incomplete batch of each epoch.
    drop_last: bool = False
    # let DDP tolerate parameters that get no gradient (e.g. the flow under a deterministic objective).
    find_unused_parameters: bool = True
    # show a tqdm progress bar (rank 0 only).
    progress: bool = True
    # start a fresh run from this checkpoint's model weights (fine-tuning; the optimizer, step count and
    # schedule start anew). A path, or the name of a shipped checkpoint such as "hand_mhentropy_aa".
    # Ignored when resuming: a resumed run continues from its own last.pt.
    init_from: str | None = None
    # with init_from: copy only the tensors whose names and shapes match (e.g. another flow size) and keep
    # the rest freshly initialised; without it a checkpoint of another model config is refused.
    init_partial: bool = False


@dataclass
class ExperimentConfig:
    """Everything that defines one training run."""

    # experiment name; names the output folder.
    name: str = "experiment"
    # training seed: model initialisation, sampling noise and data order.
    seed: int = 0
    # "cpu", "cuda", "cuda:1", ...; None picks CUDA when present, else CPU.
    device: str | None = None
    # encoder, flow and head sizes.
    model: ModelConfig = field(default_factory=ModelConfig)
    # dataset and split sizes.
    data: DataConfig = field(default_factory=DataConfig)
    # objective name and term weights.
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    # optimisation, validation, logging, checkpoints.
    train: TrainConfig = field(default_factory=TrainConfig)

    def out_path(self) -> Path:
        """``train.out_dir`` with ``{name}`` filled in."""
        return Path(self.train.out_dir.replace("{name}", self.name))


def validate_config(cfg: ExperimentConfig) -> None:
    """Raise :class:`ConfigError` for values no run can use (non-positive sizes, negative rates, ...)."""
    m, d, t = cfg.model, cfg.data, cfg.train
    checks = [
        ("model.context_dim", m.context_dim, m.context_dim >= 1, "a positive integer"),
        ("model.image_size", m.image_size, m.image_size >= 8, "at least 8 pixels"),
        ("model.flow_transforms", m.flow_transforms, m.flow_transforms >= 1, "at least 1"),
        ("model.num_pca_comps", m.num_pca_comps, 1 <= m.num_pca_comps <= 45, "between 1 and 45"),
        ("model.head_hidden", m.head_hidden, m.head_hidden >= 1, "a positive integer"),
        ("model.flip_temperature", m.flip_temperature, m.flip_temperature > 0, "positive (1: the learned weight)"),
        ("model.encoder_hidden", m.encoder_hidden, all(h >= 1 for h in m.encoder_hidden), "positive widths"),
        ("model.flow_hidden", m.flow_hidden, all(h >= 1 for h in m.flow_hidden), "positive widths"),
        ("model.cnn_channels", m.cnn_channels, len(m.cnn_channels) >= 1 and all(c >= 1 for c in m.cnn_channels),
         "a non-empty list of positive channel counts"),
        ("data.train_size", d.train_size, d.train_size is None or d.train_size >= 1, "positive or null"),
        ("data.val_size", d.val_size, d.val_size is None or d.val_size >= 1, "positive or null"),
        ("data.test_size", d.test_size, d.test_size is None or d.test_size >= 1, "positive or null"),
        ("data.occlusion", d.occlusion, 0.0 <= d.occlusion <= 1.0, "a fraction in [0, 1]"),
        ("data.truncation", d.truncation, 0.0 <= d.truncation <= 1.0, "a fraction in [0, 1]"),
        ("train.epochs", t.epochs, t.epochs >= 1 or t.steps is not None, "at least 1 (or set train.steps)"),
        ("train.steps", t.steps, t.steps is None or t.steps >= 1, "positive or null"),
        ("train.batch_size", t.batch_size, t.batch_size >= 1, "a positive integer"),
        ("train.lr", t.lr, t.lr > 0, "positive"),
        ("train.weight_decay", t.weight_decay, t.weight_decay >= 0, "zero or positive"),
        ("train.grad_clip", t.grad_clip, t.grad_clip is None or t.grad_clip >= 0, "zero, positive or null"),
        ("train.num_samples", t.num_samples, t.num_samples >= 1, "a positive integer"),
        ("train.temper_steps", t.temper_steps, t.temper_steps >= 0, "zero (off) or positive"),
        ("train.eval_every", t.eval_every, t.eval_every >= 0, "zero (never) or positive"),
        ("train.eval_samples", t.eval_samples, t.eval_samples >= 1, "a positive integer"),
        ("train.eval_temperature", t.eval_temperature, t.eval_temperature > 0, "positive"),
        ("train.eval_max_items", t.eval_max_items, t.eval_max_items is None or t.eval_max_items >= 1,
         "positive or null"),
        ("train.log_every", t.log_every, t.log_every >= 1, "a positive integer"),
        ("train.checkpoint_every", t.checkpoint_every, t.checkpoint_every >= 0, "zero or positive"),
        ("train.checkpoint_minutes", t.checkpoint_minutes, t.checkpoint_minutes >= 0, "zero (off) or positive"),
        ("train.num_workers", t.num_workers, t.num_workers >= 0, "zero or positive"),
    ]
    for key, value, ok, expected in checks:
        if not ok:
            raise ConfigError(f"{key} = {value!r} is invalid: it must be {expected}")
    if not cfg.train.out_dir:
        raise ConfigError("train.out_dir is empty: give a folder for logs and checkpoints")
    if not cfg.name.strip() and "{name}" in cfg.train.out_dir:
        raise ConfigError(f"name is empty, and train.out_dir={cfg.train.out_dir} is named after it: "
                          "give the run a name")
    if m.encoder in ("cnn", "resnet") and not d.images:
        raise ConfigError(f"model.encoder={m.encoder} reads image crops: set data.images=true (as the *_image configs "
                          "do), or use a keypoint encoder (model.encoder=mlp or resmlp)")
    if m.flip_temperature != 1.0 and not m.flip_mixture:
        raise ConfigError(
            f"model.flip_temperature={m.flip_temperature!r} scales the weight of the depth-flip mixture, and "
            "model.flip_mixture is false, so it would change nothing: drop it, or set model.flip_mixture=true "
            "(with model.rotation_in_flow=true) for a model that has the mixture"
        )
    if (cfg.objective.name == "deterministic") != m.deterministic:
        raise ConfigError(
            f"objective.name={cfg.objective.name!r} with model.deterministic={str(m.deterministic).lower()}: "
            "the 'deterministic' objective trains a one-hypothesis model and only it; set both "
            "(objective.name=deterministic model.deterministic=true) or neither"
        )


# ---------------------------------------------------------------------------------------------------
# configs written by earlier versions (stored in checkpoints, old YAML files)

#: Options of research variants that were tried and not adopted, removed from the code (their results are
#: in docs/variants.md and figures/04_validation_choices.csv, 04_flip_calibration.csv): a stored config may
#: carry each only at the value that means "not used", ``(section, key) -> (accepted values, what it was)``.
REMOVED_OPTIONS: dict[tuple[str, str], tuple[tuple[object, ...], str]] = {
    ("model", "flip_branches"): (
        ("shared", "conditional"),
        "the flip mixture's branch variants: the mixture now always gives each branch its own context "
        "(what 'conditional' meant); 'shared' is accepted only without the mixture, 'tilt' not at all"),
    ("objective", "w_branch"): ((0, 0.0), "each flip branch's own reverse KL (objective.extra.w_branch)"),
}


def _plain(value: object) -> object:
    """A config value as read (a command-line override carries its YAML reading in ``parsed``)."""
    return getattr(value, "parsed", value)


def upgrade_config_dict(data: dict) -> dict:
    """A plain experiment config of an earlier version of mhe in today's schema (a new dict; ``data`` is
    not changed). Objective weights under ``objective.extra`` move to their fields (``extra.w_nll`` →
    ``w_nll``); a removed option (:data:`REMOVED_OPTIONS`) is dropped when it holds the value that means
    "not used" and refused with a :class:`ConfigError` otherwise. Anything else is left for the schema's
    checks."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    model, objective = out.get("model"), out.get("objective")
    if isinstance(model, dict) and "flip_branches" in model:
        model = out["model"] = dict(model)
        value = _plain(model.pop("flip_branches"))
        mixture = _plain(model.get("flip_mixture", False)) is True
        if value not in ("shared", "conditional") or (mixture and value != "conditional"):
            raise ConfigError(_removed("model.flip_branches", value, REMOVED_OPTIONS["model", "flip_branches"][1]))
    if isinstance(objective, dict) and "extra" in objective:
        objective = out["objective"] = dict(objective)
        extra = _plain(objective.pop("extra"))
        if extra is not None and not isinstance(extra, dict):
            raise ConfigError(f"objective.extra: expected a mapping of weights, got {extra!r}; write each weight "
                              "as its own key (objective.w_nll=1e-3)")
        for key, value in (extra or {}).items():
            if ("objective", key) in REMOVED_OPTIONS:
                accepted, what = REMOVED_OPTIONS["objective", key]
                if _plain(value) not in accepted:
                    raise ConfigError(_removed(f"objective.extra.{key}", _plain(value), what))
                continue
            given = objective.get(key)  # a command-line value (it carries .parsed) overrides the file's
            if not hasattr(value, "parsed") and _plain(given) not in (None, _plain(value)):
                raise ConfigError(f"objective.{key} is given twice, as {_plain(given)!r} and as "
                                  f"objective.extra.{key}={_plain(value)!r}: give it once, as objective.{key}")
            objective[key] = value
    return out


def _removed(key: str, value: object, what: str) -> str:
    return (f"{key}={value!r}: this option ({what}) was a research variant that was not adopted, and it was "
            "removed from mhe; docs/variants.md describes it and its validation results (the code is in the "
            "git history before its removal). Drop the setting, or use an earlier release of mhe to run it")
