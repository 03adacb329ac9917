"""The multi-hypothesis hand model: decoding against the dataset's own generation, parameterisations
against each other, gradients, priors by hand, evaluation, load-or-train and the disk cache."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, default_collate

from mhe.config import ModelConfig
from mhe.data import SyntheticHands
from mhe.evaluation import collect_predictions, evaluate_model
from mhe.flows import ConditionalFlow
from mhe.lab.experiments import (
    BODY_MODELS,
    HAND_IMAGE_MODELS,
    HAND_OBJECTIVES,
    HAND_VARIANTS,
    export_checkpoint,
    load_model,
    load_or_train,
)
from mhe.models.flip import DepthFlipMixture, upgrade_state_dict
from mhe.models.hand import MultiHypothesisHand
from mhe.objectives import OBJECTIVES

warnings.filterwarnings("ignore", category=UserWarning)

SMALL = dict(context_dim=32, encoder_hidden=(32,), flow_transforms=2, flow_hidden=(32,), head_hidden=32)


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    ds = SyntheticHands("val", size=6, seed=3, occlusion=0.4, cache_dir=tmp_path_factory.mktemp("cache"))
    return ds, default_collate([ds[i] for i in range(len(ds))])


def _gt_head(batch):
    cam = batch["camera"]
    return {"global_orient": batch["global_orient"], "betas": batch["betas"],
            "log_scale": cam[:, 0], "trans": cam[:, 1:3]}


def test_decoding_ground_truth_reproduces_the_dataset(items):
    _, batch = items
    model = MultiHypothesisHand(ModelConfig(**SMALL))
    B = batch["obs"].shape[0]
    hyp = model.decode(batch["params"][:, None], torch.zeros(B, 1), _gt_head(batch))
    assert hyp.pred_obs.shape == (B, 1, 21, 2)
    torch.testing.assert_close(hyp.pred_obs[:, 0], batch["obs"], atol=1e-5, rtol=0)
    torch.testing.assert_close(hyp.joints_3d[:, 0], batch["joints_3d"], atol=1e-5, rtol=0)


def test_vertices_of_hypotheses_match_their_keypoints(items):
    _, batch = items
    model = MultiHypothesisHand(ModelConfig(**SMALL))
    with torch.no_grad():
        hyp = model.hypotheses(batch, num_samples=3)
        verts = model.vertices(hyp)
    B = batch["obs"].shape[0]
    assert verts.shape == (B, 3, 778, 3)
    # the fingertip keypoints are mesh vertices: both paths must put them at the same place
    tips = verts[:, :, model.mano.tip_vertex_ids]
    torch.testing.assert_close(tips, hyp.joints_metric[:, :, 16:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("repr_", ["axis_angle", "6d"])
def test_other_pose_parameterisations_decode_to_the_same_hand(items, repr_):
    _, batch = items
    pca = MultiHypothesisHand(ModelConfig(**SMALL))
    other = MultiHypothesisHand(ModelConfig(**SMALL, pose_repr=repr_))
    B = batch["obs"].shape[0]
    theta = other.params_from_pca(batch["params"])
    assert theta.shape == (B, 45 if repr_ == "axis_angle" else 90)
    a = pca.decode(batch["params"][:, None], torch.zeros(B, 1), _gt_head(batch))
    b = other.decode(theta[:, None], torch.zeros(B, 1), _gt_head(batch))
    torch.testing.assert_close(a.pred_obs, b.pred_obs, atol=1e-4, rtol=0)


def test_priors_by_hand():
    model = MultiHypothesisHand(ModelConfig(**SMALL))
    theta = torch.zeros(1, 2, 45)
    theta[0, 1, 0] = 3.0  # |x|/2 - 1 = 0.5 -> -50 · 0.25
    head = {"global_orient": torch.tensor([[0.0, 0.0, 2 * math.pi]]),  # ‖x‖/π - 1 = 1 -> -5
            "betas": torch.full((1, 10), 0.06)}  # 10 · (0.06/0.03 - 1)² · 50 = 500
    expected = torch.tensor([[-5.0 - 500.0, -12.5 - 5.0 - 500.0]])
    torch.testing.assert_close(model.spec.log_prior(theta, head), expected)


def test_six_d_prior_penalises_only_non_orthonormal_columns():
    model = MultiHypothesisHand(ModelConfig(**SMALL, pose_repr="6d"))
    eye = torch.tensor([1.0, 0, 0, 0, 1, 0]).repeat(15)[None, None]
    head = {"global_orient": torch.zeros(1, 3), "betas": torch.zeros(1, 10)}
    assert model.spec.log_prior(eye, head).item() == pytest.approx(0.0, abs=1e-6)
    stretched = eye.clone()
    stretched[..., 0] = 2.0  # first column of joint 0 has length 2 -> -50 · 1
    assert model.spec.log_prior(stretched, head).item() == pytest.approx(-50.0, abs=1e-4)


@pytest.mark.parametrize("name", ["mhentropy", "nll", "min_of_n", "deterministic"])
def test_gradients_reach_what_each_objective_trains(items, name):
    _, batch = items
    torch.manual_seed(0)
    model = MultiHypothesisHand(ModelConfig(**SMALL))
    kwargs = {"num_samples": 3} if name in ("mhentropy", "min_of_n") else {}
    loss, terms = OBJECTIVES[name](model, batch, **kwargs)
    loss.backward()
    assert math.isfinite(terms["loss"])
    groups = {"encoder": model.encoder, "flow": model.flow, "head": model.head}
    for group, module in groups.items():
        if name == "nll" and group == "head":
            continue  # NLL without keypoint terms trains only encoder + flow
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads), f"{name}: a {group} parameter got no gradient"
        assert any(g.abs().sum() > 0 for g in grads), f"{name}: {group} gradients are all zero"


def test_state_dict_carries_no_body_model():
    model = MultiHypothesisHand(ModelConfig(**SMALL))
    assert list(model.state_dict()) and not [k for k in model.state_dict() if k.startswith(("mano.", "spec."))]


def test_evaluation_metrics_and_deterministic_mode(items):
    ds, _ = items
    torch.manual_seed(0)
    model = MultiHypothesisHand(ModelConfig(**SMALL), init_camera=tuple(ds[0]["camera"].tolist()))
    loader = DataLoader(ds, batch_size=4)
    assert not model.deterministic
    m = evaluate_model(model, loader, num_samples=5, temperature=0.8)
    for key in ("mpjpe_bh", "pa_mpjpe_bh", "ah", "pjd_2d_vis", "pjd_3d_occ", "rd"):
        assert math.isfinite(m[key]), key
    assert m["mpjpe_bh"] <= m["mpjpe_mean"] + 1e-9
    assert evaluate_model(model, loader, num_samples=5, temperature=0.8) == m  # seeded: reproducible
    p = collect_predictions(model, loader, num_samples=3, max_items=5)
    assert p["pred_xyz"].shape == (5, 3, 21, 3) and p["pred_uv"].shape == (5, 3, 21, 2)
    # a deterministic model says so itself and predicts its mode alone (S = 1), whatever S is asked for
    det_model = MultiHypothesisHand(ModelConfig(**SMALL, deterministic=True))
    det_model.load_state_dict(model.state_dict())
    assert det_model.deterministic
    p = collect_predictions(det_model, loader, num_samples=7)
    assert p["pred_xyz"].shape == (6, 1, 21, 3)
    batch = default_collate([ds[i] for i in range(len(ds))])
    mode = model.mode(batch).joints_3d * batch["scale"][:, None, None, None] * 1000
    assert torch.allclose(p["pred_xyz"], mode, atol=1e-4)
    det = evaluate_model(det_model, loader)
    assert det["pjd_2d_vis"] == 0 and det["pjd_3d_occ"] == 0 and math.isnan(det["rd"])
    assert det["mpjpe_bh"] == pytest.approx(det["mpjpe_mean"])


def test_load_or_train_trains_exports_and_reloads(tmp_path, monkeypatch):
    monkeypatch.setenv("MHE_DATA", str(tmp_path / "data"))
    overrides = ["train.steps=2", "data.train_size=8", "data.val_size=4", "train.batch_size=4",
                 "train.eval_every=0", "train.progress=false",
                 *(f"model.{k}={list(v) if isinstance(v, tuple) else v}" for k, v in SMALL.items())]
    model, cfg = load_or_train("mhentropy", overrides=overrides, directory=tmp_path / "ckpt")
    assert cfg.train.steps == 2
    run = tmp_path / "ckpt" / "runs" / "mhentropy" / "last.pt"
    assert run.exists()
    shipped = export_checkpoint(run, tmp_path / "hand_mhentropy.pt")
    again, _ = load_model(shipped)
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert torch.load(shipped, weights_only=True)["optimizer"] is None
    with pytest.raises(ValueError, match="objective must be one of"):
        load_or_train("best_guess")


def test_disk_cache_returns_the_same_items_without_regenerating(tmp_path, monkeypatch):
    fresh = SyntheticHands("test", size=3, seed=1)
    expected = [fresh[i] for i in range(3)]
    lazy = SyntheticHands("test", size=3, seed=1, cache_dir=tmp_path)
    assert not list(tmp_path.glob("*.pt")), "building a dataset must not generate the split yet"
    lazy[0]
    assert len(list(tmp_path.glob("*.pt"))) == 1

    def boom(self, *args, **kwargs):
        raise AssertionError("the cached split was regenerated")

    monkeypatch.setattr(SyntheticHands, "generate", boom)
    monkeypatch.setattr(SyntheticHands, "generate_many", boom)
    cached = SyntheticHands("test", size=3, seed=1, cache_dir=tmp_path)
    for i in range(3):
        for key, value in expected[i].items():
            # the cache is generated in batches: the same items, floats equal up to summation order
            if value.is_floating_point():
                torch.testing.assert_close(cached[i][key], value, atol=1e-5, rtol=1e-5, msg=key)
            else:
                assert torch.equal(cached[i][key], value), key
    # a different argument is a different file, never a stale hit
    with pytest.raises(AssertionError, match="regenerated"):
        SyntheticHands("test", size=3, seed=2, cache_dir=tmp_path)[0]


@pytest.mark.parametrize("name", ["mhentropy", "deterministic"])
def test_mhe_evaluate_on_a_shipped_checkpoint(name, tmp_path, capsys):
    import json

    from mhe.lab.checkpoint import checkpoint_dir
    from mhe.lab.cli import main

    path = checkpoint_dir() / f"hand_{name}.pt"
    if not path.exists():
        pytest.fail(f"{path} is not shipped; train it with `mhe train --config hand_{name}` and export it")
    out = tmp_path / "m.json"
    # a shipped checkpoint can be named instead of given as a path
    arg = f"hand_{name}" if name == "deterministic" else str(path)
    assert main(["evaluate", "--checkpoint", arg, "--samples", "4", "--max-items", "6",
                 "--device", "cpu", "--json", str(out)]) == 0
    result = json.loads(out.read_text())  # strict JSON: an undefined RD is null, never NaN
    m = result["metrics"]
    assert result["items"] == 6 and result["num_samples"] == 4 and result["split"] == "test"
    assert "test split (data seed 0): 6 items" in capsys.readouterr().out
    # a trained model explains the visible keypoints far better than chance in a 256 px crop
    assert 0 < m["ah"] < 80 and 0 < m["mpjpe_bh"] < 80
    if name == "deterministic":
        assert m["pjd_3d_occ"] == 0 and m["rd"] is None
    else:
        assert m["pjd_3d_occ"] > 0.5


def test_mhe_evaluate_on_a_fresh_split_and_another_setting(tmp_path, capsys):
    import json

    from mhe.lab.cli import main

    def run(*extra):
        out = tmp_path / "m.json"
        assert main(["evaluate", "--checkpoint", "hand_deterministic", "--max-items", "5", "--device", "cpu",
                     "--json", str(out), "--overwrite", *extra]) == 0
        return json.loads(out.read_text())

    base = run()
    fresh = run("--data-seed", "3", "data.rotation=ho3d")
    assert base["data_seed"] == 0 and base["data_overrides"] == []
    assert fresh["data_seed"] == 3 and fresh["data_overrides"] == ["data.rotation=ho3d"]
    printed = capsys.readouterr().out
    assert "(data seed 3) [data.rotation=ho3d]" in printed and "input: visible 2D keypoints" in printed
    assert fresh["input"] == "visible 2D keypoints"
    assert fresh["metrics"]["mpjpe_bh"] != base["metrics"]["mpjpe_bh"]  # other hands
    # the new columns: scale-free diversity needs px/mm, plausibility the joint limits
    assert 1.0 < fresh["metrics"]["px_per_mm"] < 3.0 and 0 <= fresh["metrics"]["plausible"] <= 1
    # only the data may change, and only generated data have a seed
    assert main(["evaluate", "--checkpoint", "hand_deterministic", "model.pose_repr=axis_angle"]) == 2
    assert "only change the data section" in capsys.readouterr().err
    # ... and the depth-flip weight's temperature, which the model uses only at evaluation
    from mhe.lab.experiments import evaluate_checkpoint

    def rot(*overrides):
        return evaluate_checkpoint("hand_mhentropy_rot", max_items=6, num_samples=40,
                                   data_overrides=overrides)["metrics"]

    shipped_tau = load_model("hand_mhentropy_rot", device="cpu")[1].model.flip_temperature
    assert shipped_tau != 1.0
    assert rot(f"model.flip_temperature={shipped_tau}") == rot()
    assert rot("model.flip_temperature=1")["ah"] != rot()["ah"]
    assert main(["evaluate", "--checkpoint", "hand_deterministic", "--data-seed", "1", "--data", "ho3d",
                 "--root", str(tmp_path)]) == 2
    assert "read from files" in capsys.readouterr().err


# settings that do not change what a run computes
_RUN_ONLY = {("train", "progress"), ("train", "out_dir"), ("", "device")}


@pytest.mark.parametrize("name", [f"hand_{n}" for n in HAND_OBJECTIVES + HAND_VARIANTS + HAND_IMAGE_MODELS]
                         + [f"body_{n}" for n in BODY_MODELS])
def test_shipped_checkpoints_come_from_the_packaged_configs(name):
    from mhe.lab.checkpoint import checkpoint_config, checkpoint_dir
    from mhe.lab.config_io import config_to_dict, load_config

    ckpt = torch.load(checkpoint_dir() / f"{name}.pt", weights_only=True)
    want = config_to_dict(load_config(name))
    got = config_to_dict(checkpoint_config(ckpt))  # keys added since it was trained take their defaults

    def flat(d):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update({(k, kk): vv for kk, vv in v.items()})
            else:
                out[("", k)] = v
        return out

    a, b = flat(got), flat(want)
    differ = sorted(f"{s}.{k}: shipped {a.get((s, k))!r} vs config {b.get((s, k))!r}"
                    for (s, k) in set(a) | set(b) if (s, k) not in _RUN_ONLY and a.get((s, k)) != b.get((s, k)))
    assert not differ, (f"mhe/checkpoints/{name}.pt is stale; retrain it with `mhe train --config {name}` "
                        f"and export it: {differ}")
    assert ckpt["step"] == want["train"]["steps"] and ckpt["optimizer"] is None


def test_rotation_in_the_flow_decodes_the_dataset_and_trains_by_every_objective(items):
    from mhe.geometry import axis_angle_to_matrix, matrix_to_rot6d

    _, batch = items
    model = MultiHypothesisHand(ModelConfig(**SMALL, rotation_in_flow=True, head_rotation="6d"))
    B = batch["obs"].shape[0]
    assert model.flow_dim == 51 and model.rot_dim == 0
    rot = matrix_to_rot6d(axis_angle_to_matrix(batch["global_orient"]))
    theta = torch.cat([rot, batch["params"]], dim=-1)[:, None]
    head = {k: v for k, v in _gt_head(batch).items() if k != "global_orient"}
    hyp = model.decode(theta, torch.zeros(B, 1), head)
    torch.testing.assert_close(hyp.pred_obs[:, 0], batch["obs"], atol=1e-5, rtol=0)
    assert hyp.head["global_orient"].shape == (B, 1, 3)
    assert hyp.log_prior.abs().max() < 1e-3  # orthonormal 6D, hands inside the box: (almost) no penalty
    # a stretched 6D column costs the orthonormality term
    stretched = theta.clone()
    stretched[..., 0:3] *= 2
    assert (model.decode(stretched, torch.zeros(B, 1), head).log_prior < -10).all()
    with torch.no_grad():
        hyps = model.hypotheses(batch, num_samples=5)
    assert hyps.head["global_orient"].shape == (B, 5, 3)
    assert not torch.allclose(hyps.head["global_orient"][:, 0], hyps.head["global_orient"][:, 1])
    for name in ("mhentropy", "nll"):
        model.zero_grad()
        loss, _ = OBJECTIVES[name](model, batch, num_samples=4)
        loss.backward()
        assert model.flow.parameters().__next__().grad is not None
    with pytest.raises(KeyError, match="global_orient"):
        model.log_prob({k: v for k, v in batch.items() if k != "global_orient"}, batch["params"])


def test_flip_mixture_mirrors_the_palm_with_a_unit_jacobian(items):
    from mhe.geometry import axis_angle_to_matrix, matrix_to_rot6d
    from mhe.metrics import depth_flip

    _, batch = items
    torch.manual_seed(0)
    model = MultiHypothesisHand(ModelConfig(**SMALL, rotation_in_flow=True, flip_mixture=True))
    B = batch["obs"].shape[0]
    # an involution with |det J| = 1, also off the rotation manifold (stretched, skewed 6D vectors)
    mixture = model.flow  # the flow wrapped into the depth-flip mixture (mhe.models.flip)
    assert isinstance(mixture, DepthFlipMixture) and isinstance(mixture.base, ConditionalFlow)
    x = torch.randn(5, model.flow_dim, dtype=torch.float64)
    mixture.reflection = mixture.reflection.double()
    torch.testing.assert_close(mixture.flip(mixture.flip(x)), x)
    for row in x:
        jac = torch.autograd.functional.jacobian(mixture.flip, row)
        assert abs(torch.linalg.det(jac).abs().item() - 1) < 1e-6  # the reflection is stored in float32
    mixture.reflection = mixture.reflection.float()
    # the flipped ground truth puts the palm at its depth mirror image
    rot = matrix_to_rot6d(axis_angle_to_matrix(batch["global_orient"]))
    theta = torch.cat([rot, batch["params"]], dim=-1)[:, None]
    head = {k: v for k, v in _gt_head(batch).items() if k != "global_orient"}
    gt = model.decode(theta, torch.zeros(B, 1), head).joints_metric
    flipped = model.decode(mixture.flip(theta), torch.zeros(B, 1), head).joints_metric
    palm = list(model.spec.flip_keypoints)
    assert depth_flip(flipped, gt[:, 0], palm).all() and not depth_flip(gt, gt[:, 0], palm).any()
    mirrored = gt[:, 0, palm] * torch.tensor([1.0, 1.0, -1.0])
    assert (flipped[:, 0, palm] - mirrored).norm(dim=-1).max() < 0.006  # the palm is flat to a few mm
    # training enumerates both branches with weights summing to one; evaluation samples a branch
    model.train()
    hyp = model.hypotheses(batch, num_samples=3)
    assert hyp.params.shape[1] == 6 and torch.allclose(hyp.weights.sum(-1), torch.ones(B))
    loss, _ = OBJECTIVES["mhentropy"](model, batch, num_samples=3)
    loss.backward()
    assert model.flip_head.bias.grad is not None and model.flip_head.bias.grad.abs() > 0
    model.eval()
    with torch.no_grad():
        assert model.hypotheses(batch, num_samples=3).weights is None
        assert torch.isfinite(model.log_prob(batch, batch["params"])).all()


def test_flip_branches_have_their_own_pose_and_a_consistent_density(items):
    _, batch = items
    B = batch["obs"].shape[0]
    torch.manual_seed(0)
    cond = MultiHypothesisHand(ModelConfig(**SMALL, rotation_in_flow=True, flip_mixture=True)).eval()
    mix = cond.flow
    with torch.no_grad():
        cond.flip_head.bias.fill_(0.7)  # P(flipped) ≈ 0.67: both branches matter
        mix.branch_context.copy_(torch.randn(2, SMALL["context_dim"]))
        # the density of sampled hypotheses is the mixture's, computed directly from the base flow
        hyp = cond.hypotheses(batch, num_samples=5)
        ctx = cond.context(batch)
        log_p0, log_p1 = cond.flip_log_weights(ctx)
        c0, c1 = ctx + mix.branch_context[0], ctx + mix.branch_context[1]
        direct = torch.logaddexp(log_p0 + mix.base.log_prob(hyp.params, c0),
                                 log_p1 + mix.base.log_prob(mix.flip(hyp.params), c1))
        torch.testing.assert_close(hyp.log_q, direct, rtol=1e-4, atol=1e-3)
        # the flipped branch has a pose of its own: its pose is not the unflipped draw's
        torch.manual_seed(1)
        x0, _, x1, _, _ = mix.branches(ctx, 4, 1.0)
        assert not torch.allclose(x0[..., 6:], x1[..., 6:])
    # training enumerates both branches; the branch vectors get gradients
    cond.train()
    hyp = cond.hypotheses(batch, num_samples=3)
    assert hyp.params.shape[1] == 6 and torch.allclose(hyp.weights.sum(-1), torch.ones(B))
    loss, _ = OBJECTIVES["mhentropy"](cond, batch, num_samples=3)
    loss.backward()
    assert mix.branch_context.grad is not None and mix.branch_context.grad.abs().sum() > 0


def test_checkpoints_of_the_inline_flip_mixture_load_under_the_module_names(items):
    """Checkpoints written before the mixture was its own module keep ``flip_head.*``, ``branch_context`` and
    the flow at the model's top level; they load into the wrapped flow unchanged, by either route."""
    from mhe.lab.checkpoint import load_model_state

    _, batch = items
    torch.manual_seed(0)
    model = MultiHypothesisHand(ModelConfig(**SMALL, rotation_in_flow=True, flip_mixture=True)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    new = model.state_dict()
    assert "flow.flip_head.weight" in new and "flow.branch_context" in new
    assert any(k.startswith("flow.base.") for k in new)
    old = {}  # the old layout, written by hand
    for key, value in new.items():
        if key.startswith("flow.base."):
            old["flow." + key[len("flow.base."):]] = value
        elif key.startswith("flow."):
            old[key[len("flow."):]] = value
        else:
            old[key] = value
    assert upgrade_state_dict(old) == new and upgrade_state_dict(new) == new
    for route in ("load_state_dict", "load_model_state"):
        torch.manual_seed(5)
        fresh = MultiHypothesisHand(ModelConfig(**SMALL, rotation_in_flow=True, flip_mixture=True)).eval()
        if route == "load_state_dict":
            fresh.load_state_dict(old)
        else:
            load_model_state(fresh, {"model": old, "config": {}})
        with torch.no_grad():
            torch.testing.assert_close(fresh.log_prob(batch, batch["params"]), model.log_prob(batch, batch["params"]),
                                       rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["realnvp", "nsf_coupling"])
def test_flow_kind_reaches_the_flow_and_its_density_is_consistent(items, kind):
    _, batch = items
    torch.manual_seed(0)
    model = MultiHypothesisHand(ModelConfig(**SMALL, flow_kind=kind)).eval()
    assert model.flow.kind == kind
    with torch.no_grad():
        # perturb the near-identity start so that the check below is not trivially true
        for p in model.flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
        ctx = model.context(batch)
        theta, log_q = model.flow.rsample_and_log_prob(ctx, 4, 1.0)
        again = torch.stack([model.flow.log_prob(theta[:, s], ctx) for s in range(4)], 1)
    torch.testing.assert_close(log_q, again, atol=1e-4, rtol=1e-4)


def test_flip_temperature_calibrates_the_branch_weight_at_evaluation_only(items):
    _, batch = items
    B = batch["obs"].shape[0]
    torch.manual_seed(0)
    plain = MultiHypothesisHand(ModelConfig(**SMALL, rotation_in_flow=True, flip_mixture=True))
    hot = MultiHypothesisHand(ModelConfig(**SMALL, rotation_in_flow=True, flip_mixture=True, flip_temperature=4.0))
    hot.load_state_dict(plain.state_dict())
    with torch.no_grad():
        for m in (plain, hot):
            m.flip_head.bias.fill_(3.0)  # P(flipped) = sigmoid(3) = 0.95 as learned; sigmoid(3/4) = 0.68 calibrated
            m.flow.branch_context.copy_(torch.randn(2, SMALL["context_dim"],
                                                    generator=torch.Generator().manual_seed(1)))
    ctx = plain.context(batch).detach()
    # training keeps the learned weight: the same loss weights in both models
    plain.train(), hot.train()
    torch.testing.assert_close(hot.flip_log_weights(ctx)[1], plain.flip_log_weights(ctx)[1])
    torch.testing.assert_close(plain.flip_log_weights(ctx)[1], F.logsigmoid(plain.flip_head(ctx)))
    plain.eval(), hot.eval()
    with torch.no_grad():
        logit = hot.flip_head(ctx)
        torch.testing.assert_close(hot.flip_log_weights(ctx)[1], F.logsigmoid(logit / 4.0))
        torch.testing.assert_close(hot.flip_log_weights(ctx)[0], F.logsigmoid(-logit / 4.0))
        torch.testing.assert_close(plain.flip_log_weights(ctx)[1], F.logsigmoid(logit))
        # the density of the ground truth is the calibrated mixture's, computed directly from the flow
        theta = hot.flow_target(batch, batch["params"])
        c0, c1 = ctx + hot.flow.branch_context[0], ctx + hot.flow.branch_context[1]
        direct = torch.logaddexp(F.logsigmoid(-logit[:, 0] / 4) + hot.flow.base.log_prob(theta, c0),
                                 F.logsigmoid(logit[:, 0] / 4) + hot.flow.base.log_prob(hot.flow.flip(theta), c1))
        torch.testing.assert_close(hot.log_prob(batch, batch["params"]), direct, rtol=1e-5, atol=1e-4)
        # sampled branches follow the calibrated weight: 0.68 of 4000 draws per item (sd 0.007), not 0.95
        torch.manual_seed(2)
        x0, _, x1, _, log_p1 = hot.flow.branches(ctx, 1, 1.0)
        assert torch.allclose(log_p1.exp(), torch.sigmoid(torch.tensor(0.75)).expand(B, 1), atol=1e-5)
        # the same random numbers as hypotheses() draws: both branches, then the branch choice
        torch.manual_seed(3)
        x0, _, x1, _, _ = hot.flow.branches(ctx, 2000, 1.0)
        torch.manual_seed(3)
        hyp = hot.hypotheses(batch, num_samples=2000)
        took_flipped = (hyp.params - x1).abs().amax(-1) == 0
        assert (took_flipped | ((hyp.params - x0).abs().amax(-1) == 0)).all()
        # 2000 draws per item: sd 0.01 of the calibrated 0.68 (the learned weight would give 0.95)
        assert abs(took_flipped.double().mean().item() - torch.sigmoid(torch.tensor(0.75)).item()) < 0.05
    with pytest.raises(ValueError, match="flip_temperature"):
        MultiHypothesisHand(ModelConfig(**SMALL, rotation_in_flow=True, flip_mixture=True, flip_temperature=0.0))
