"""The multi-hypothesis hand model and its experiments.

``batch → encoder → context c (B, C)``; a conditional flow ``q(θ | c)`` over the finger pose θ
(45 MANO PCA coefficients by default, as the official code; axis-angle or 6D as options); a
deterministic head ``c → (global rotation (3), β (10), log-scale (1), translation (2))``; MANO
(:mod:`mhe.body`) and the orthographic camera (:mod:`mhe.geometry`) turn every hypothesis into
3D joints (and meshes on request) and 2D keypoints. The model implements the protocol of
:mod:`mhe.objectives` (``hypotheses`` / ``mode`` / ``log_prob``), so the same objective
functions that train the toy arm train it.

Importing this module registers the ``"synthetic-hands"`` and ``"ho3d"`` experiments with
:func:`mhe.train.register_experiment`, which ``mhe train`` / ``mhe evaluate`` look up.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mhe.body import HAND_BONE, HAND_ROOT, load_mano
from mhe.checkpoint import checkpoint_dir
from mhe.config import ExperimentConfig, ModelConfig
from mhe.flows import ConditionalFlow
from mhe.geometry import (
    axis_angle_to_matrix,
    crop_to_pixels,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    project_orthographic,
    rot6d_to_matrix,
)
from mhe.models.encoders import build_encoder, encode
from mhe.objectives import Hypotheses, ball_prior, box_prior
from mhe.utils import data_dir

CROP_PIXELS = 256  # metrics report 2D errors in pixels of a 256 × 256 crop, as the paper
HEAD_OUTPUTS = 13  # β 10 + log-scale 1 + translation 2, after the global rotation (3 axis-angle or 6D)
ROTATION_DIMS = {"axis_angle": 3, "6d": 6}

# The official priors (log of unnormalised densities; PAPER.md): a soft box on the PCA
# coefficients, a soft ball on the global rotation, a tight soft box on β.
PCA_HALF_WIDTH, PCA_WEIGHT = 2.0, 50.0
ROT_RADIUS, ROT_WEIGHT = math.pi, 5.0
BETA_HALF_WIDTH, BETA_WEIGHT = 0.03, 50.0
# For the axis-angle / 6D options (not in the official code): a soft box of ±π/2 per joint axis.
AA_HALF_WIDTH, AA_WEIGHT = math.pi / 2, 50.0
ORTHO_WEIGHT = 50.0

POSE_DIMS = {"axis_angle": 45, "6d": 90}


class MultiHypothesisHand(nn.Module):
    """Encoder + conditional flow over the finger pose + deterministic head + MANO.

    Args:
        cfg: sizes and the pose parameterisation (:class:`mhe.config.ModelConfig`).
        mano: a body model from :func:`mhe.body.load_mano` (built from ``cfg`` when None); it must
            take PCA coefficients when ``cfg.pose_repr == "pca"`` and axis-angle otherwise.
        init_camera: (log_scale, tx, ty) the head starts from (e.g. the training set's mean camera),
            so that early hypotheses already land inside the crop.

    The body model's buffers are not saved in ``state_dict`` (checkpoints carry no licensed data);
    a checkpoint records instead whether a real or a stand-in MANO was used.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        mano: nn.Module | None = None,
        init_camera: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> None:
        super().__init__()
        if cfg.pose_repr not in ("pca", "axis_angle", "6d"):
            raise ValueError(f"model.pose_repr must be 'pca', 'axis_angle' or '6d', got {cfg.pose_repr!r}")
        self.cfg = cfg
        use_pca = cfg.pose_repr == "pca"
        if mano is None:
            mano = load_mano(use_pca=use_pca, num_pca_comps=cfg.num_pca_comps, flat_hand_mean=False)
        if bool(mano.use_pca) != use_pca:
            raise ValueError(
                f"model.pose_repr={cfg.pose_repr!r} needs a MANO built with use_pca={use_pca}; "
                "pass mano=None to build the right one"
            )
        for module in mano.modules():
            for name, buf in list(module._buffers.items()):
                if buf is not None:
                    module.register_buffer(name, buf, persistent=False)
        self.mano = mano
        self.pose_dim = cfg.num_pca_comps if use_pca else POSE_DIMS[cfg.pose_repr]
        self.encoder = build_encoder(cfg, num_keypoints=21, obs_dim=2)
        self.flow = ConditionalFlow(
            self.pose_dim, cfg.context_dim, transforms=cfg.flow_transforms, hidden=tuple(cfg.flow_hidden)
        )
        if cfg.head_rotation not in ROTATION_DIMS:
            raise ValueError(f"model.head_rotation must be 'axis_angle' or '6d', got {cfg.head_rotation!r}")
        self.rot_dim = ROTATION_DIMS[cfg.head_rotation]
        self.head = nn.Sequential(
            nn.Linear(cfg.context_dim, cfg.head_hidden),
            nn.ReLU(),
            nn.Linear(cfg.head_hidden, cfg.head_hidden),
            nn.ReLU(),
            nn.Linear(cfg.head_hidden, self.rot_dim + HEAD_OUTPUTS),
        )
        # Start at the mean shape, no rotation and the given camera: the last layer's weights are
        # small so the head begins near its bias.
        last = self.head[-1]
        nn.init.normal_(last.weight, std=1e-3)
        with torch.no_grad():
            last.bias.zero_()
            if cfg.head_rotation == "6d":
                last.bias[0:6] = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
            last.bias[-3:] = torch.tensor(init_camera, dtype=last.bias.dtype)

    # -- pieces ---------------------------------------------------------------------------------

    @property
    def body_model_info(self) -> dict[str, Any]:
        """Which MANO this model decodes with (recorded in checkpoints)."""
        return {"is_standin": bool(self.mano.is_standin), "side": self.mano.side}

    def context(self, batch: dict) -> Tensor:
        """The encoder's context ``(B, C)``."""
        return encode(self.encoder, batch)

    def deterministic_head(self, ctx: Tensor) -> dict[str, Tensor]:
        """``ctx (B, C)`` → global_orient (B, 3) axis-angle, betas (B, 10), log_scale (B,), trans (B, 2)."""
        out = self.head(ctx)
        rot, rest = out[:, : self.rot_dim], out[:, self.rot_dim :]
        if self.rot_dim == 6:
            rot = matrix_to_axis_angle(rot6d_to_matrix(rot))
        return {"global_orient": rot, "betas": rest[:, 0:10], "log_scale": rest[:, 10], "trans": rest[:, 11:13]}

    def pose_to_mano(self, theta: Tensor) -> Tensor:
        """Flow variable ``θ (..., D)`` → MANO's ``hand_pose`` input (PCA coefficients or axis-angle)."""
        if self.cfg.pose_repr == "6d":
            return matrix_to_axis_angle(rot6d_to_matrix(theta.unflatten(-1, (15, 6)))).flatten(-2)
        return theta

    def params_from_pca(self, pca: Tensor) -> Tensor:
        """Ground-truth PCA coefficients ``(B, 45)`` → this model's flow variable ``(B, D)`` (for NLL)."""
        if self.cfg.pose_repr == "pca":
            return pca[..., : self.pose_dim]
        # With flat_hand_mean=False both MANO inputs are offsets from hands_mean: aa = coeffs @ basis.
        basis = torch.as_tensor(self.mano.np_hand_components, dtype=pca.dtype, device=pca.device)
        aa = pca @ basis[: pca.shape[-1]]
        if self.cfg.pose_repr == "axis_angle":
            return aa
        return matrix_to_rot6d(axis_angle_to_matrix(aa.unflatten(-1, (15, 3)))).flatten(-2)

    def log_prior(self, theta: Tensor, head: dict[str, Tensor]) -> Tensor:
        """Official soft priors: ``θ (B, S, D)`` and the head's outputs → ``(B, S)``."""
        if self.cfg.pose_repr == "pca":
            pose = box_prior(theta, PCA_HALF_WIDTH, PCA_WEIGHT)
        else:
            pose = box_prior(self.pose_to_mano(theta), AA_HALF_WIDTH, AA_WEIGHT)
        if self.cfg.pose_repr == "6d":
            # The 6D → rotation map has a 3-D fibre (column lengths, their angle); without this
            # orthonormality penalty the entropy term would spread q along it without bound.
            a, b = theta.unflatten(-1, (15, 2, 3)).unbind(-2)
            off = (a.norm(dim=-1) - 1).square() + (b.norm(dim=-1) - 1).square() + (a * b).sum(-1).square()
            pose = pose - ORTHO_WEIGHT * off.sum(-1)
        rot = ball_prior(head["global_orient"], ROT_RADIUS, ROT_WEIGHT)
        beta = box_prior(head["betas"], BETA_HALF_WIDTH, BETA_WEIGHT)
        return pose + (rot + beta)[:, None]

    def decode(self, theta: Tensor, log_q: Tensor, head: dict[str, Tensor]) -> Hypotheses:
        """Turn ``θ (B, S, D)`` and the head's outputs into :class:`Hypotheses`.

        ``pred_obs (B, S, 21, 2)`` are crop coordinates in [-1, 1]; extras hold ``joints_3d``
        (B, S, 21, 3) root-relative and divided by the predicted middle MCP→PIP bone (unitless, as the
        dataset's), ``joints_metric`` (B, S, 21, 3) root-relative in metres, and the head's outputs.
        Only the keypoints are computed (:meth:`mhe.body.HandModel.keypoints`, about 10× cheaper than
        the mesh); :meth:`vertices` gives the meshes of chosen hypotheses.
        """
        B, S, _ = theta.shape
        expand = lambda x: x[:, None].expand(B, S, *x.shape[1:])  # noqa: E731
        joints = self.mano.keypoints(**self._mano_inputs(theta, head)).to(theta.dtype)
        root = joints[..., HAND_ROOT : HAND_ROOT + 1, :]
        rel = joints - root
        bone = torch.linalg.vector_norm(joints[..., HAND_BONE[1], :] - joints[..., HAND_BONE[0], :], dim=-1)
        uv = project_orthographic(rel, expand(head["log_scale"]), expand(head["trans"]))
        return Hypotheses(
            params=theta,
            log_q=log_q,
            pred_obs=uv,
            log_prior=self.log_prior(theta, head),
            extras={
                "joints_3d": rel / bone.clamp_min(1e-8)[..., None, None],
                "joints_metric": rel,
                **head,
            },
        )

    def _mano_inputs(self, theta: Tensor, head: dict[str, Tensor]) -> dict[str, Tensor]:
        """MANO's inputs for ``θ (B, S, D)``: the head's per-item rotation and shape repeated over S."""
        B, S, _ = theta.shape
        return {
            "global_orient": head["global_orient"][:, None].expand(B, S, 3),
            "hand_pose": self.pose_to_mano(theta),
            "betas": head["betas"][:, None].expand(B, S, head["betas"].shape[-1]),
        }

    def vertices(self, hyp: Hypotheses) -> Tensor:
        """The MANO meshes of hypotheses from :meth:`hypotheses` / :meth:`mode`: ``(B, S, 778, 3)`` in
        metres, relative to the same root joint as ``hyp.extras["joints_metric"]``."""
        out = self.mano(**self._mano_inputs(hyp.params, hyp.extras))
        root = out.joints[..., HAND_ROOT : HAND_ROOT + 1, :]
        return (out.vertices - root).to(hyp.params.dtype)

    # -- the protocol of mhe.objectives ---------------------------------------------------------

    def hypotheses(self, batch: dict, num_samples: int, temperature: float = 1.0) -> Hypotheses:
        """S hypotheses per item, differentiable (reparameterised), with their log-density."""
        ctx = self.context(batch)
        theta, log_q = self.flow.rsample_and_log_prob(ctx, num_samples, temperature)
        return self.decode(theta, log_q, self.deterministic_head(ctx))

    def mode(self, batch: dict) -> Hypotheses:
        """The zero-noise hypothesis (S = 1), ProHMR's "sample 0"."""
        ctx = self.context(batch)
        theta, log_q = self.flow.rsample_and_log_prob(ctx, 1, temperature=0.0)
        return self.decode(theta, log_q, self.deterministic_head(ctx))

    def log_prob(self, batch: dict, params: Tensor) -> Tensor:
        """``log q(params | batch)`` for ground-truth PCA coefficients ``params (B, 45)`` → ``(B,)``."""
        ctx = self.context(batch)
        return self.flow.log_prob(self.params_from_pca(params), ctx)


# -- evaluation -----------------------------------------------------------------------------------


@torch.no_grad()
def predict(
    model: MultiHypothesisHand,
    batch: dict,
    num_samples: int = 200,
    temperature: float = 0.8,
    mode_only: bool = False,
) -> dict[str, Tensor]:
    """Hypotheses in metric units for one batch: ``xyz_mm (B, S, 21, 3)`` root-relative (the model's
    bone-normalised joints rescaled by the ground-truth bone, the paper's protocol) and ``uv_px
    (B, S, 21, 2)`` in pixels of a 256 crop. ``mode_only`` repeats the mode twice (deterministic models:
    their diversity is zero by construction)."""
    hyp = model.mode(batch) if mode_only else model.hypotheses(batch, num_samples, temperature)
    if mode_only:
        hyp = Hypotheses(*(x.expand(-1, 2, *x.shape[2:]) for x in (hyp.params, hyp.log_q, hyp.pred_obs,
                                                                        hyp.log_prior)),
                         extras={"joints_3d": hyp.extras["joints_3d"].expand(-1, 2, -1, -1)})
    scale_mm = batch["scale"].to(hyp.pred_obs) * 1000.0
    return {
        "xyz_mm": hyp.extras["joints_3d"] * scale_mm[:, None, None, None],
        "uv_px": crop_to_pixels(hyp.pred_obs, CROP_PIXELS),
    }


@torch.no_grad()
def collect_predictions(
    model: MultiHypothesisHand,
    loader,
    num_samples: int = 200,
    temperature: float = 0.8,
    mode_only: bool = False,
    max_items: int | None = None,
) -> dict[str, Tensor]:
    """Run :func:`predict` over a loader; CPU tensors ``pred_xyz``, ``pred_uv``, ``gt_xyz``, ``gt_uv``,
    ``visible`` ready for :func:`mhe.metrics.evaluate`."""
    device = next(model.parameters()).device
    keep: dict[str, list[Tensor]] = {k: [] for k in ("pred_xyz", "pred_uv", "gt_xyz", "gt_uv", "visible")}
    seen = 0
    for batch in loader:
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        out = predict(model, batch, num_samples, temperature, mode_only)
        keep["pred_xyz"].append(out["xyz_mm"].float().cpu())
        keep["pred_uv"].append(out["uv_px"].float().cpu())
        keep["gt_xyz"].append(batch["joints_3d_mm"].float().cpu())
        keep["gt_uv"].append(batch["keypoints_2d_px"].float().cpu())
        keep["visible"].append(batch["visible"].bool().cpu())
        seen += len(batch["visible"])
        if max_items is not None and seen >= max_items:
            break
    out = {k: torch.cat(v) for k, v in keep.items()}
    if max_items is not None:
        out = {k: v[:max_items] for k, v in out.items()}
    return out


@torch.no_grad()
def evaluate_hands(
    model: MultiHypothesisHand,
    loader,
    num_samples: int = 200,
    temperature: float = 0.8,
    mode_only: bool = False,
    max_items: int | None = None,
) -> dict[str, float]:
    """The paper's hand metrics (:func:`mhe.metrics.evaluate`) of ``model`` over ``loader``:
    BH-MPJPE / PA-MPJPE / mean MPJPE in mm, AH in px (256 crop), PJD 2D-vis (px), PJD 3D-occ (mm), RD."""
    from mhe.metrics import evaluate

    p = collect_predictions(model, loader, num_samples, temperature, mode_only, max_items)
    return evaluate(p["pred_xyz"], p["gt_xyz"], p["pred_uv"], p["gt_uv"], p["visible"], root=HAND_ROOT)


# -- experiments ----------------------------------------------------------------------------------


def _mode_only(cfg: ExperimentConfig) -> bool:
    return cfg.objective.name == "deterministic"


def build_model(cfg: ExperimentConfig, train_set=None) -> MultiHypothesisHand:
    """The model for ``cfg``, its camera bias initialised from the training set's mean camera."""
    init = (0.0, 0.0, 0.0)
    if train_set is not None and len(train_set) > 0:
        # A few freshly generated items suffice (and do not trigger generating a whole cached split).
        get = getattr(train_set, "generate", train_set.__getitem__)
        items = [get(i)["camera"] for i in range(min(16, len(train_set)))]
        init = tuple(float(x) for x in torch.stack(items).mean(0))
    return MultiHypothesisHand(cfg.model, init_camera=init)


def _cap(dataset, size: int | None):
    """The first ``size`` items of ``dataset`` (all when None)."""
    from torch.utils.data import Subset

    if size is None or size >= len(dataset):
        return dataset
    return Subset(dataset, range(size))


def _register() -> None:
    from mhe.train import EXPERIMENTS, register_experiment

    def synthetic(cfg: ExperimentConfig):
        from mhe.data import SyntheticHands
        from mhe.train import Experiment

        d = cfg.data
        common = dict(seed=d.data_seed, occlusion=d.occlusion, images=d.images,
                      image_size=cfg.model.image_size, cache_dir=data_dir() / "cache")
        train = SyntheticHands("train", size=d.train_size, **common)
        val = SyntheticHands("val", size=d.val_size, **common)
        fn = functools.partial(evaluate_hands, mode_only=_mode_only(cfg))
        return Experiment(build_model(cfg, train), train, val, fn)

    def ho3d(cfg: ExperimentConfig):
        from mhe.data import HO3D
        from mhe.train import Experiment

        d = cfg.data
        if not d.root:
            raise ValueError("data.dataset=ho3d needs data.root=<folder of HO3D v3 (holds train.txt)>")
        common = dict(images=d.images, image_size=cfg.model.image_size, mano=load_mano())
        train = _cap(HO3D(d.root, split="train", **common), d.train_size)
        val = _cap(HO3D(d.root, split="test", **common), d.val_size)
        fn = functools.partial(evaluate_hands, mode_only=_mode_only(cfg))
        return Experiment(build_model(cfg, train), train, val, fn)

    if "synthetic-hands" not in EXPERIMENTS:
        register_experiment("synthetic-hands", synthetic)
    if "ho3d" not in EXPERIMENTS:
        register_experiment("ho3d", ho3d)


_register()


# -- shipped checkpoints: load or train ------------------------------------------------------------

HAND_OBJECTIVES = ("mhentropy", "no_entropy", "nll", "min_of_n", "deterministic")
# Other shipped models: the same objective with another flow parameterisation.
HAND_VARIANTS = ("mhentropy_aa",)


def load_model(path, device: str | None = None) -> tuple[MultiHypothesisHand, ExperimentConfig]:
    """Rebuild the model a checkpoint was trained with and load its weights (eval mode)."""
    from mhe.checkpoint import CheckpointMismatchError, load_checkpoint, load_model_state
    from mhe.config import ConfigError, config_from_dict
    from mhe.utils import default_device

    ckpt = load_checkpoint(path)
    try:
        cfg = config_from_dict(ckpt["config"])
    except ConfigError as e:
        raise CheckpointMismatchError(f"{path}: its config does not fit this version of mhe ({e})") from None
    model = MultiHypothesisHand(cfg.model)
    load_model_state(model, ckpt, source=str(path))
    return model.to(default_device(device)).eval(), cfg


def export_checkpoint(src, dst) -> Path:
    """Copy a training checkpoint without its optimizer state (what ships in ``data/checkpoints``)."""
    from mhe.checkpoint import load_checkpoint
    from mhe.utils import atomic_torch_save

    state = load_checkpoint(src)
    state["optimizer"] = None
    state["rng"] = state["rng"][:1]
    # the run folder was local to the machine that trained it; a fresh run of this config uses the default
    state["config"]["train"]["out_dir"] = "runs/{name}"
    return atomic_torch_save(state, dst)


def load_or_train(
    objective: str,
    *,
    smoke: bool = False,
    overrides: tuple[str, ...] | list[str] = (),
    directory=None,
    device: str | None = None,
    progress: bool = True,
) -> tuple[MultiHypothesisHand, ExperimentConfig]:
    """The hand model trained with ``objective`` (one of :data:`HAND_OBJECTIVES` or :data:`HAND_VARIANTS`).

    Loads ``<directory>/hand_<objective>.pt`` (default :func:`checkpoint_dir`) when it exists;
    otherwise trains the packaged config ``hand_<objective>`` with a progress bar and keeps the result
    there. ``smoke=True`` always trains a tiny run (a few steps on a few items) in a temporary folder.
    """
    import tempfile

    from mhe.config import load_config
    from mhe.train import train_experiment

    if objective not in HAND_OBJECTIVES + HAND_VARIANTS:
        raise ValueError(f"objective must be one of {HAND_OBJECTIVES + HAND_VARIANTS}, got {objective!r}")
    directory = Path(directory) if directory is not None else checkpoint_dir()
    path = directory / f"hand_{objective}.pt"
    if path.exists() and not smoke and not overrides:
        return load_model(path, device)
    extra = list(overrides)
    if smoke:
        out = tempfile.mkdtemp(prefix=f"mhe_smoke_{objective}_")
        extra += ["train.steps=4", "data.train_size=32", "data.val_size=16", "train.batch_size=16",
                  "train.eval_every=0", f"train.out_dir={out}"]
    else:
        extra += [f"train.out_dir={directory / 'runs' / objective}"]
    cfg = load_config(f"hand_{objective}", extra)
    if device is not None:
        cfg.device = device
    cfg.train.progress = progress
    result = train_experiment(cfg, overwrite=True)
    if not smoke and not overrides:
        export_checkpoint(result.checkpoint, path)
    return load_model(result.checkpoint, device)
