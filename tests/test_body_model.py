"""The SMPL body model (ProHMR's setting), ProHMR's objective, the body protocol and the body experiments."""

from __future__ import annotations

import math

import pytest
import torch

from mhe.body import BODY_BONE, BODY_ROOT, SMPL_TO_BODY
from mhe.config import ConfigError
from mhe.evaluation import collect_predictions, score_predictions
from mhe.geometry import project_orthographic
from mhe.lab.config_io import load_config
from mhe.metrics import evaluate
from mhe.models.body import BODY_FLOW_SCALE, MultiHypothesisBody
from mhe.objectives import OBJECTIVES, _keypoint_l1


@pytest.fixture(scope="module")
def model() -> MultiHypothesisBody:
    torch.manual_seed(0)
    return MultiHypothesisBody(load_config("body_mhentropy").model)


def _batch(model: MultiHypothesisBody, B: int = 6, seed: int = 0) -> dict:
    """Bodies posed by SMPL with a known camera, as the datasets' items hold them."""
    g = torch.Generator().manual_seed(seed)
    orient = torch.randn(B, 3, generator=g) * 0.4
    pose = torch.randn(B, 69, generator=g) * 0.15
    betas = torch.randn(B, 10, generator=g) * 0.3
    joints = model.smpl.keypoints(orient, pose, betas, joints=SMPL_TO_BODY)
    rel = joints - joints[:, BODY_ROOT : BODY_ROOT + 1]
    bone = (joints[:, BODY_BONE[1]] - joints[:, BODY_BONE[0]]).norm(dim=-1)
    camera = torch.stack([torch.full((B,), 0.2), torch.zeros(B), torch.zeros(B)], -1)
    obs = project_orthographic(rel, camera[:, 0], camera[:, 1:])
    return {"obs": obs, "visible": torch.rand(B, 17, generator=g) > 0.3, "params": pose, "global_orient": orient,
            "betas": betas, "joints_3d": rel / bone[:, None, None], "joints_3d_mm": rel * 1000, "scale": bone,
            "keypoints_2d_px": (obs + 1) * 128, "camera": camera, "px_per_mm": torch.full((B,), 0.16),
            "ambiguous": torch.arange(B) % 2 == 0}


def test_ground_truth_parameters_round_trip_through_the_flow_variable(model):
    pose = torch.randn(5, 69, dtype=torch.float64) * 0.6
    theta = model.spec.params_from_gt(pose)
    assert theta.shape == (5, 138)
    assert torch.allclose(model.spec.body_pose(theta), pose, atol=1e-6)
    assert torch.allclose(model.spec.rotation_penalty(theta), torch.zeros(5, dtype=torch.float64), atol=1e-10)
    # θ = 0 is the rest pose
    assert torch.allclose(model.spec.body_pose(torch.zeros(2, 138)), torch.zeros(2, 69), atol=1e-6)
    assert BODY_FLOW_SCALE > 0


def test_decoding_the_ground_truth_reproduces_the_batch(model):
    """The flow variable of the ground truth, the true shape and camera → the batch's 2D and 3D keypoints."""
    batch = _batch(model)
    theta = model.flow_target(batch, batch["params"])[:, None]
    head = {"betas": batch["betas"], "log_scale": batch["camera"][:, 0], "trans": batch["camera"][:, 1:]}
    hyp = model.decode(theta, torch.zeros(theta.shape[:2]), head)
    assert torch.allclose(hyp.pred_obs[:, 0], batch["obs"], atol=1e-5)
    assert torch.allclose(hyp.joints_3d[:, 0], batch["joints_3d"], atol=1e-5)
    assert hyp.orthonormality.abs().max() < 1e-8


def test_predict_puts_the_mode_first_and_reports_plausibility(model):
    batch = _batch(model)
    model.eval()
    out = model.predict(batch, 25, 0.8)
    assert out["xyz_mm"].shape == (6, 25, 17, 3) and out["uv_px"].shape == (6, 25, 17, 2)
    assert torch.equal(out["xyz_mm"][:, :1], out["mode_xyz_mm"])
    assert out["plausible"].shape == (6, 25) and out["plausible"].dtype == torch.bool
    # the other 24 are samples: they differ from the mode
    assert (out["xyz_mm"][:, 1:] - out["mode_xyz_mm"]).abs().amax() > 1.0
    one = model.predict(batch, 1, 0.8)
    assert torch.equal(one["xyz_mm"], one["mode_xyz_mm"])



def test_keypoints_and_prior_share_the_rotation_matrices_with_the_same_numbers(model):
    # decode takes the keypoints and the prior of one θ together: the 6D Gram-Schmidt matrices are made once and
    # passed to both; values equal the two separate calls exactly, gradients up to summation order
    spec = model.spec
    g = torch.Generator().manual_seed(3)
    head = {"global_orient": torch.randn(4, 5, 3, generator=g) * 0.3, "betas": torch.randn(4, 10, generator=g)}
    theta = (torch.randn(4, 5, spec.pose_dim, generator=g) * 0.3).requires_grad_()
    before = dict(vars(spec))

    def grad(kp: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad(kp.square().sum() + prior.sum(), theta)[0]

    kp, prior = spec.keypoints_and_log_prior(theta, head)
    kp0, prior0 = spec.keypoints(theta, head), spec.log_prior(theta, head)
    assert torch.equal(kp, kp0) and torch.equal(prior, prior0)
    torch.testing.assert_close(grad(kp, prior), grad(kp0, prior0), rtol=1e-4, atol=1e-5)
    assert vars(spec).keys() == before.keys()  # nothing held between calls


def test_a_shape_sampled_by_the_flow_decodes_like_the_heads_and_carries_its_prior():
    """model.shape_in_flow: β is the flow variable's last 10 numbers, each hypothesis has its own; decoding the ground
    truth's (pose, rotation, β) reproduces the batch, and the prior adds the Gaussian -|β|²/(2 · 0.5²) (closed form)
    to the head-β model's prior of the same pose."""
    from dataclasses import replace

    torch.manual_seed(0)
    cfg = load_config("body_mhentropy").model
    shaped = MultiHypothesisBody(replace(cfg, shape_in_flow=True))
    plain = MultiHypothesisBody(cfg)
    assert shaped.flow_dim == plain.flow_dim + 10 == 6 + 138 + 10
    batch = _batch(shaped)
    theta = shaped.flow_target(batch, batch["params"])[:, None]
    assert torch.equal(theta[:, 0, -10:], batch["betas"])
    camera = {"log_scale": batch["camera"][:, 0], "trans": batch["camera"][:, 1:]}
    hyp = shaped.decode(theta, torch.zeros(theta.shape[:2]), {"betas": torch.zeros(6, 10), **camera})  # head's β unused
    assert torch.allclose(hyp.pred_obs[:, 0], batch["obs"], atol=1e-5)
    assert torch.allclose(hyp.joints_3d[:, 0], batch["joints_3d"], atol=1e-5)
    ref = plain.decode(theta[..., :-10], torch.zeros(theta.shape[:2]), {"betas": batch["betas"], **camera})
    gaussian = -0.5 * (batch["betas"] / 0.5).square().sum(-1)
    assert torch.allclose(hyp.log_prior[:, 0], ref.log_prior[:, 0] + gaussian, atol=1e-4)
    # sampled: every hypothesis its own β, hence its own bone lengths; the objectives train it
    shaped.train()
    hyp = shaped.hypotheses(batch, 4)
    assert hyp.head["betas"].shape == (6, 4, 10) and hyp.head["betas"].std(1).amin() > 0
    loss, _ = OBJECTIVES["mhentropy"](shaped, batch, num_samples=4)
    loss.backward()
    shaped.eval()
    assert shaped.predict_meshes(batch, 3, 1.0).shape[:2] == (6, 3)
    with pytest.raises(KeyError, match="'betas'"):
        shaped.flow_target({k: v for k, v in batch.items() if k != "betas"}, batch["params"])
    # its reference 2 adds no second β: the flow variable holds the shape already, under the same prior
    from mhe.reference import ModelTarget

    target = ModelTarget(shaped, batch, 2, b=0.01, sample_head=True)
    assert target.dim == shaped.flow_dim and not target.sample_shape
    assert ModelTarget(plain, batch, 2, b=0.01, sample_head=True).dim == plain.flow_dim + 10


def test_only_bodies_sample_the_shape_in_the_flow():
    from dataclasses import replace

    from mhe.lab.builders import build_model

    cfg = load_config("hand_mhentropy")
    cfg.model = replace(cfg.model, shape_in_flow=True)
    with pytest.raises(ValueError, match="only bodies sample β in the flow"):
        build_model(cfg)


@pytest.mark.parametrize("name", ["mhentropy", "prohmr", "min_of_n", "deterministic"])
def test_every_objective_trains_the_body_model(model, name):
    model.train()
    batch = _batch(model)
    kwargs = {"num_samples": 4}
    if name == "prohmr":
        kwargs.update(w_2d_samples=0.01, w_3d_mode=0.05, w_3d_samples=0.01)
    loss, terms = OBJECTIVES[name](model, batch, **kwargs)
    model.zero_grad()
    loss.backward()
    assert math.isfinite(loss.item()) and math.isfinite(terms["loss"])
    grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    if name == "prohmr":
        assert {"nll", "kp2d_mode", "kp2d_samples", "kp3d_mode", "kp3d_samples", "params", "betas",
                "ortho"} <= set(terms)


def test_prohmr_keypoint_loss_by_hand():
    pred = torch.tensor([[[[0.0, 0.0], [1.0, 2.0]]]])  # (B=1, S=1, K=2, 2)
    target = torch.tensor([[[0.5, -0.5], [1.0, 1.0]]])
    assert _keypoint_l1(pred, target).item() == pytest.approx(0.5 + 0.5 + 0.0 + 1.0)
    assert _keypoint_l1(pred, target, torch.tensor([[True, False]])).item() == pytest.approx(1.0)


def test_prohmr_objective_weights_combine_its_terms(model):
    """The loss is the weighted sum of the terms it logs (ProHMR's weights as defaults)."""
    batch = _batch(model)
    model.train()
    torch.manual_seed(3)
    loss, t = OBJECTIVES["prohmr"](model, batch, num_samples=2, w_3d_mode=0.05)
    expected = 1e-3 * t["nll"] + 0.01 * t["kp2d_mode"] + 1e-3 * t["kp2d_samples"] + 0.05 * t["kp3d_mode"] \
        + 1e-3 * t["params"] + 5e-4 * t["betas"] + 0.1 * t["ortho"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert "prior" not in t  # off by default: ProHMR's published loss has no prior term


def test_prohmr_prior_term_is_the_models_prior_on_mode_and_samples(model):
    """w_prior adds -log p(θ) of the mode and of the samples (their average), as the model scores it."""
    batch = _batch(model)
    model.train()
    torch.manual_seed(5)
    loss, t = OBJECTIVES["prohmr"](model, batch, num_samples=2, w_nll=0.0, w_params=0.0, w_betas=0.0,
                                   w_2d_samples=0.01, w_prior=0.002)
    torch.manual_seed(5)
    mode = model.mode(batch)
    hyp = model.hypotheses(batch, 2)
    by_hand = (-mode.log_prior.mean() - hyp.log_prior.mean()).item() / 2
    assert t["prior"] == pytest.approx(by_hand, rel=1e-5)
    expected = 0.01 * (t["kp2d_mode"] + t["kp2d_samples"]) + 0.1 * t["ortho"] + 0.002 * t["prior"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_the_ambiguous_subset_is_scored_like_a_separate_evaluation(model):
    model.eval()
    batch = _batch(model, B=8)
    p = collect_predictions(model, [batch], num_samples=6, temperature=0.8)
    assert p["ambiguous"].tolist() == batch["ambiguous"].tolist()
    out = score_predictions(p, root=BODY_ROOT)
    sub = batch["ambiguous"]
    alone = evaluate(p["pred_xyz"][sub], p["gt_xyz"][sub], p["pred_uv"][sub], p["gt_uv"][sub], p["visible"][sub],
                     root=BODY_ROOT, px_per_mm=p["px_per_mm"][sub], mode_xyz=p["mode_xyz"][sub],
                     plausible=p["plausible"][sub])
    assert out["n_ambiguous"] == 4
    for key in ("pa_mpjpe_bh", "rd_mm", "pjd_3d_occ", "plausible"):
        assert out[f"{key}_ambiguous"] == pytest.approx(alone[key], nan_ok=True)
    assert out["pa_mpjpe_bh"] != pytest.approx(out["pa_mpjpe_bh_ambiguous"])


def test_body_configs_need_a_body_model_and_the_rotation_in_the_flow():
    cfg = load_config("body_mhentropy", ["model.rotation_in_flow=false"])
    with pytest.raises(ValueError, match="rotation_in_flow"):
        MultiHypothesisBody(cfg.model)
    cfg = load_config("body_mhentropy", ["model.pose_repr=pca"])
    with pytest.raises(ValueError, match="pose_repr"):
        MultiHypothesisBody(cfg.model)
    from mhe.lab.builders import build_experiment

    with pytest.raises(ConfigError, match="model.body"):
        build_experiment(load_config("body_mhentropy", ["model.body=hand"]))
    with pytest.raises(ConfigError, match="model.body"):
        build_experiment(load_config("hand_mhentropy", ["model.body=body"]))


def test_body_experiments_on_files_train_and_evaluate(tmp_path):
    """data.dataset=prohmr / 3dpw: the readers' files, a short run, an evaluation with the body protocol."""
    from mhe.data.prohmr import write_prohmr_npz
    from mhe.data.threedpw import write_threedpw_sequence
    from mhe.lab.builders import build_experiment
    from mhe.lab.experiments import evaluate_checkpoint, train_experiment

    npz = tmp_path / "prohmr"
    npz.mkdir()
    write_prohmr_npz(npz / "train.npz", 12, seed=0)
    write_prohmr_npz(npz / "test.npz", 6, seed=1)
    pw = tmp_path / "3dpw"
    write_threedpw_sequence(pw, "seq_a", 5, split="test", seed=2)
    common = ["train.steps=2", "train.batch_size=4", "train.eval_every=0", "train.progress=false",
              "data.val_size=null", "data.test_size=null", "data.train_size=null"]
    cfg = load_config("body_mhentropy", ["data.dataset=prohmr", f"data.root={npz}",
                                         f"train.out_dir={tmp_path / 'run'}", *common])
    exp = build_experiment(cfg)
    assert len(exp.train_set) == 12 and exp.val_set is None and len(exp.test_set) == 6
    result = train_experiment(cfg, overwrite=True)
    out = evaluate_checkpoint(result.checkpoint, split="test")
    assert out["num_samples"] == 25 and out["items"] == 6 and out["dataset"] == "prohmr"
    assert out["metrics"]["pa_mpjpe_bh"] is not None and out["metrics"]["pa_mpjpe_bh"] > 0
    on_3dpw = evaluate_checkpoint(result.checkpoint, split="test", dataset="3dpw", root=str(pw), num_samples=3)
    assert on_3dpw["items"] > 0 and on_3dpw["metrics"]["mpjpe_bh"] is not None
    with pytest.raises(ConfigError, match="data.root"):
        build_experiment(load_config("body_mhentropy", ["data.dataset=prohmr"]))
    with pytest.raises(ConfigError, match="no split"):
        build_experiment(load_config("body_mhentropy", ["data.dataset=prohmr", f"data.root={tmp_path}"]))


def test_load_or_train_a_body_in_smoke_mode(tmp_path):
    from mhe.lab.experiments import BODY_MODELS, load_or_train

    assert "mhentropy" in BODY_MODELS and "nll" in BODY_MODELS
    model, cfg = load_or_train("nll", body="body", smoke=True, directory=tmp_path, progress=False)
    assert isinstance(model, MultiHypothesisBody) and cfg.objective.name == "prohmr"
    with pytest.raises(ValueError, match="objective must be one of"):
        load_or_train("mhentropy_aa", body="body", smoke=True)


def test_the_explorer_shows_bodies(model):
    """The hand explorer works on body models unchanged: the skeleton, names and root come from the spec."""
    from mhe.data.synthetic_bodies import SyntheticBodies
    from mhe.viz.explorer import HypothesisExplorer

    data = SyntheticBodies("test", 4, seed=3)
    model.eval()
    ex = HypothesisExplorer({"mhentropy": model}, data, num_samples=6)
    assert ex.root == BODY_ROOT and len(ex.keypoint_names) == 17 and ex.parents[0] == -1
    hyp = ex.hypotheses(1, "mhentropy")
    assert hyp["xyz_mm"].shape == (6, 17, 3)
    fig = ex.item_figure(1, "mhentropy", num_hypotheses=4)
    assert "BH-MPJPE" in fig.layout.title.text
    frame = ex.dataset_metrics(3)
    assert len(frame) == 3 and frame["occluded"].max() <= 16


def test_hypothesis_meshes_match_the_skeletons_and_export(model, tmp_path):
    """predict_meshes gives the meshes of predict's hypotheses (same seed → the mesh's joints are the
    skeleton's), and the explorer writes them (one colour per hypothesis + the ground truth) for MeshLab."""
    import trimesh

    from mhe.data.synthetic_bodies import SyntheticBodies
    from mhe.viz.explorer import HypothesisExplorer
    from mhe.viz.meshes import export_hypothesis_meshes

    model.eval()
    batch = _batch(model, B=2)
    torch.manual_seed(7)
    pred = model.predict(batch, 4, 0.8)
    torch.manual_seed(7)
    verts = model.predict_meshes(batch, 4, 0.8)
    assert verts.shape == (2, 4, 6890, 3)
    # SMPL's joints regressed from the predicted meshes, mapped to the 17 keypoints, are predict's keypoints
    joints = torch.einsum("jv,bsvc->bsjc", model.smpl.J_regressor.to(verts), verts)
    body_joints = joints[..., [i for i in SMPL_TO_BODY if i < 24], :]
    kept = [k for k, i in enumerate(SMPL_TO_BODY) if i < 24]
    rel = body_joints - body_joints[..., :1, :]
    assert torch.allclose(rel, pred["xyz_mm"][..., kept, :], atol=1e-2)
    data = SyntheticBodies("test", 3, seed=3)
    ex = HypothesisExplorer({"mhentropy": model}, data, num_samples=5)
    path = ex.export_meshes(tmp_path / "hyps.ply", 1, "mhentropy", num_hypotheses=3)
    mesh = trimesh.load(path, process=False)
    assert mesh.vertices.shape == (4 * 6890, 3) and len(mesh.faces) == 4 * len(model.spec.faces)
    colors = mesh.visual.vertex_colors[:: 6890, :3]
    assert len({tuple(c) for c in colors.tolist()}) == 4  # three hypotheses and the ground truth
    with pytest.raises(ValueError, match="ending in"):
        export_hypothesis_meshes(tmp_path / "x.stl", verts[0].cpu(), model.spec.faces)
