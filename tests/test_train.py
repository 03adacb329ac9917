"""The trainer on a tiny Gaussian model: determinism, exact resume, clipping, logs, errors, registry."""

from __future__ import annotations

import csv
import json
import math

import dummy_experiment as dummy
import pytest
import torch

from mhe.config import ConfigError, ObjectiveConfig
from mhe.lab.builders import EXPERIMENTS, Experiment, build_experiment, register_experiment
from mhe.lab.checkpoint import CheckpointMismatchError, load_checkpoint
from mhe.lab.experiments import evaluate_checkpoint, train_experiment
from mhe.lab.train import (
    DeviceLoader,
    ResumableSampler,
    RunLogger,
    Trainer,
    objective_kwargs,
    resolve_objective,
    tempered_weights,
)
from mhe.rng import isolated_rng
from mhe.utils import seed_everything


def make_trainer(cfg, objective=dummy.reverse_kl, evaluate=dummy.evaluate, seed=0, model_seed=None):
    seed_everything(seed if model_seed is None else model_seed)
    model = dummy.GaussianModel()
    return Trainer.from_config(model, dummy.DictDataset(40), cfg, objective=objective,
                               val_set=dummy.DictDataset(16, seed=1), evaluate_fn=evaluate)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_same_seed_same_parameters_different_seed_differs(tmp_path):
    a = make_trainer(dummy.small_config(tmp_path / "a"))
    a.fit()
    b = make_trainer(dummy.small_config(tmp_path / "b"))
    b.fit()
    assert torch.equal(dummy.flat_params(a.model), dummy.flat_params(b.model))
    cfg = dummy.small_config(tmp_path / "c")
    cfg.seed = 1
    c = make_trainer(cfg)
    c.fit()
    assert not torch.allclose(dummy.flat_params(a.model), dummy.flat_params(c.model))


def test_training_reaches_the_closed_form_optimum(tmp_path):
    # reverse KL to N(A x, I) is minimised by mean A x and unit scale; the model is linear in x, so it can
    # represent the optimum exactly
    cfg = dummy.small_config(tmp_path, epochs=300, lr=5e-3, num_samples=64, eval_every=0)
    tr = make_trainer(cfg)
    tr.fit()
    data = dummy.DictDataset(64, seed=5)
    batch = {"obs": data.obs, "visible": data.visible}
    with torch.no_grad():
        mu, log_s = tr.model._dist(batch)
    assert (mu - data.params).abs().max() < 0.15
    assert log_s.abs().max() < 0.15


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path):
    steps = 13  # 5 batches per epoch: the crash and the checkpoint both fall mid-epoch
    straight = make_trainer(dummy.small_config(tmp_path / "straight", steps=steps, checkpoint_every=3))
    straight.fit()

    calls = {"n": 0}

    def crashing(model, batch, **kw):
        calls["n"] += 1
        if calls["n"] == 9:
            raise KeyboardInterrupt("killed")
        return dummy.reverse_kl(model, batch, **kw)

    cfg = dummy.small_config(tmp_path / "resumed", steps=steps, checkpoint_every=3)
    first = make_trainer(cfg, objective=crashing)
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    assert load_checkpoint(cfg.out_path() / "last.pt")["step"] == 6  # last checkpoint before the crash
    # a new process would start from another RNG state and a freshly initialised model
    second = make_trainer(cfg, model_seed=99)
    torch.manual_seed(12345)
    result = second.fit(resume=True)
    assert result.step == steps
    assert torch.equal(dummy.flat_params(second.model), dummy.flat_params(straight.model))
    s_opt, r_opt = straight.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    assert all(torch.equal(s_opt[k]["exp_avg_sq"], r_opt[k]["exp_avg_sq"]) for k in s_opt)
    # the logs read like one run: one row per step, and the same losses as the straight run
    a = read_csv(straight.out_dir / "train_log.csv")
    b = read_csv(second.out_dir / "train_log.csv")
    assert [int(r["step"]) for r in b] == list(range(1, steps + 1))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert read_csv(straight.out_dir / "val_log.csv") == read_csv(second.out_dir / "val_log.csv")


def test_resume_at_an_epoch_boundary_and_with_more_epochs(tmp_path):
    straight = make_trainer(dummy.small_config(tmp_path / "s", epochs=3))
    straight.fit()
    cfg = dummy.small_config(tmp_path / "r", epochs=2)
    make_trainer(cfg).fit()
    cfg.train.epochs = 3  # extending a finished run is allowed and continues where it stopped
    again = make_trainer(cfg, model_seed=7)
    result = again.fit(resume=True)
    assert result.epoch == 3 and result.step == 15
    assert torch.equal(dummy.flat_params(again.model), dummy.flat_params(straight.model))


def test_validation_does_not_disturb_training(tmp_path):
    with_eval = make_trainer(dummy.small_config(tmp_path / "a"))
    res = with_eval.fit()
    without = make_trainer(dummy.small_config(tmp_path / "b", eval_every=0), evaluate=None)
    without.fit()
    assert torch.equal(dummy.flat_params(with_eval.model), dummy.flat_params(without.model))
    assert [h["epoch"] for h in res.history] == [1, 2]
    rows = read_csv(with_eval.out_dir / "val_log.csv")
    assert [int(r["step"]) for r in rows] == [5, 10] and set(rows[0]) == {"step", "epoch", "mean_err", "scale"}
    assert not (without.out_dir / "val_log.csv").exists()


def test_evaluate_fn_gets_samples_and_temperature(tmp_path):
    seen = []

    def spy(model, loader, num_samples, temperature):
        assert not model.training and not torch.is_grad_enabled()
        seen.append((num_samples, temperature, sum(len(b["obs"]) for b in loader)))
        return {"m": 1}

    cfg = dummy.small_config(tmp_path, eval_samples=7, eval_temperature=0.5, eval_max_items=10, eval_every=2,
                             epochs=3)
    make_trainer(cfg, evaluate=spy).fit()
    # epochs 2 and 3 (the last is always validated), 10 items each
    assert seen == [(7, 0.5, 10), (7, 0.5, 10)]


def test_gradient_clipping_and_logged_norm(tmp_path):
    cfg = dummy.small_config(tmp_path, grad_clip=0.05)
    tr = make_trainer(cfg)
    batch = next(iter(tr.train_loader(0)))
    # the gradient an independent autograd call computes before the step
    torch.manual_seed(5)
    loss, _ = dummy.reverse_kl(tr.model, batch, num_samples=cfg.train.num_samples)
    grads = torch.autograd.grad(loss, list(tr.model.parameters()))
    expected = math.sqrt(sum(float((g**2).sum()) for g in grads))
    torch.manual_seed(5)
    terms = tr.train_step(batch)
    assert terms["grad_norm"] == pytest.approx(expected, rel=1e-5)
    assert expected > 0.05
    clipped = math.sqrt(sum(float((p.grad**2).sum()) for p in tr.model.parameters()))
    assert clipped == pytest.approx(0.05, rel=1e-4)
    # without clipping the gradients keep their norm
    tr2 = make_trainer(dummy.small_config(tmp_path / "b", grad_clip=None))
    torch.manual_seed(5)
    terms2 = tr2.train_step(batch)
    norm2 = math.sqrt(sum(float((p.grad**2).sum()) for p in tr2.model.parameters()))
    assert norm2 == pytest.approx(terms2["grad_norm"], rel=1e-5) and norm2 == pytest.approx(expected, rel=1e-5)


def test_logs_and_checkpoint_contents(tmp_path):
    cfg = dummy.small_config(tmp_path, log_every=2)
    res = make_trainer(cfg).fit()
    rows = read_csv(res.out_dir / "train_log.csv")
    # 10 steps logged every 2 -> 5 rows, each the mean of its window
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8, 10]
    assert set(rows[0]) == {"step", "epoch", "loss", "reconstruction", "entropy", "grad_norm", "lr"}
    records = [json.loads(line) for line in (res.out_dir / "log.jsonl").read_text().splitlines()]
    assert sum(r["kind"] == "train" for r in records) == 5 and sum(r["kind"] == "val" for r in records) == 2
    assert (res.out_dir / "config.yaml").exists()
    ckpt = load_checkpoint(res.checkpoint)
    assert ckpt["step"] == 10 and ckpt["epoch"] == 2 and ckpt["batch_in_epoch"] == 0
    assert ckpt["config"]["train"]["log_every"] == 2
    assert set(ckpt["metrics"]["val"]) == {"step", "epoch", "mean_err", "scale"}
    assert set(ckpt["rng"][0]) >= {"torch", "numpy", "python"}


def test_steps_override_epochs_and_stop_mid_epoch(tmp_path):
    res = make_trainer(dummy.small_config(tmp_path, steps=7, epochs=100)).fit()
    assert res.step == 7
    ckpt = load_checkpoint(res.checkpoint)
    assert (ckpt["epoch"], ckpt["batch_in_epoch"]) == (1, 2)
    assert res.history[-1]["step"] == 7  # the end of training is validated


def test_fresh_run_refuses_to_overwrite_and_resume_checks_config(tmp_path):
    cfg = dummy.small_config(tmp_path, epochs=1)
    make_trainer(cfg).fit()
    with pytest.raises(FileExistsError, match="already holds a run"):
        make_trainer(cfg).fit()
    make_trainer(cfg).fit(overwrite=True)
    cfg.train.lr = 0.5
    with pytest.raises(CheckpointMismatchError, match="train.lr: 0.01 -> 0.5"):
        make_trainer(cfg).fit(resume=True)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        make_trainer(cfg).fit(resume=tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="nothing to resume: .*last.pt does not exist"):
        make_trainer(dummy.small_config(tmp_path / "new", epochs=1)).fit(resume=True)
    assert not (tmp_path / "new" / "run").exists()  # it stopped before doing anything


def test_non_finite_loss_and_bad_objective_output(tmp_path):
    def nan_loss(model, batch, num_samples):
        loss, _ = dummy.mse(model, batch)
        return loss * float("nan"), {"mse": 0.0}

    with pytest.raises(FloatingPointError, match="non-finite loss .* at step 1"):
        make_trainer(dummy.small_config(tmp_path / "a"), objective=nan_loss).fit()

    def vector_loss(model, batch, num_samples):
        mu, _ = model._dist(batch)
        return mu.sum(-1), {}

    with pytest.raises(TypeError, match=r"scalar loss tensor.*shape \(8,\)"):
        make_trainer(dummy.small_config(tmp_path / "b"), objective=vector_loss).fit()


def test_data_size_errors(tmp_path):
    cfg = dummy.small_config(tmp_path, batch_size=64, drop_last=True)
    with pytest.raises(ConfigError, match="leaves no batch"):
        make_trainer(cfg)
    with pytest.raises(ValueError, match="training set is empty"):
        Trainer.from_config(dummy.GaussianModel(), dummy.DictDataset(0), dummy.small_config(tmp_path),
                            objective=dummy.mse)
    frozen = dummy.GaussianModel().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        Trainer.from_config(frozen, dummy.DictDataset(8), dummy.small_config(tmp_path), objective=dummy.mse)


def test_objective_kwargs():
    takes = {"b": 0.03, "w_ent": 1.0}  # what an objective declares it takes
    assert objective_kwargs(ObjectiveConfig(w_ent=0.0), 10, takes=takes) == {"w_ent": 0.0, "b": 0.03, "num_samples": 10}
    assert objective_kwargs(ObjectiveConfig(w_ent=0.0), takes=takes) == {"w_ent": 0.0, "b": 0.03}
    no_b = {"w_nll": 1.0}
    # b left at its default is simply not passed to an objective without it; S always is
    assert objective_kwargs(ObjectiveConfig(w_nll=2.0), 10, takes=no_b) == {"w_nll": 2.0, "num_samples": 10}
    with pytest.raises(ConfigError, match=r"takes no argument 'b' \(set by objective.b\); it takes: w_nll"):
        objective_kwargs(ObjectiveConfig(b=0.1), 10, takes=no_b)
    with pytest.raises(ConfigError, match="set by objective.w_ortho"):
        objective_kwargs(ObjectiveConfig(w_ortho=1.0), 10, takes=no_b)


def test_objectives_from_the_registry(tmp_path):
    objectives = pytest.importorskip("mhe.objectives")
    assert resolve_objective("mhentropy") is objectives.OBJECTIVES["mhentropy"]
    with pytest.raises(ConfigError, match="unknown objective.name='nope'; available: .*mhentropy"):
        resolve_objective("nope")
    # the declarations accept what the default config passes
    kw = objective_kwargs(ObjectiveConfig(name="no_entropy"), 10)
    assert kw == {"b": 0.03, "num_samples": 10}
    assert objective_kwargs(ObjectiveConfig(name="nll"), 10) == {"b": 0.03, "num_samples": 10}
    assert objective_kwargs(ObjectiveConfig(name="prohmr", w_ortho=0.5)) == {"w_ortho": 0.5}  # prohmr has no b
    with pytest.raises(ConfigError, match="objective 'prohmr' takes no argument 'w_ent'"):
        objective_kwargs(ObjectiveConfig(name="prohmr", w_ent=0.0))
    # a config naming a declared objective gets exactly its weights, the declared full ones when tempering
    cfg = dummy.small_config(tmp_path, temper_steps=5)
    cfg.objective = ObjectiveConfig(name="no_reconstruction", w_prior=2.0)
    trainer = Trainer.from_config(dummy.GaussianModel(), dummy.DictDataset(8), cfg)
    assert trainer.weights == {"b": 0.03, "w_prior": 2.0, "w_rec": 0.0}
    assert trainer.tempered == {"w_rec": 0.0, "w_prior": 2.0}
    cfg.objective = ObjectiveConfig(name="nll")
    with pytest.raises(ConfigError, match="objective 'nll' takes no w_rec, w_prior; set train.temper_steps=0"):
        Trainer.from_config(dummy.GaussianModel(), dummy.DictDataset(8), cfg)


def test_resumable_sampler_shards_and_skips():
    full = list(ResumableSampler(10, seed=3, epoch=2))
    assert sorted(full) == list(range(10))
    assert full != list(ResumableSampler(10, seed=3, epoch=3))  # a new order each epoch
    assert full == list(ResumableSampler(10, seed=3, epoch=2))  # the same order for the same (seed, epoch)
    assert list(ResumableSampler(10, seed=3, epoch=2, start=4)) == full[4:]
    shards = [list(ResumableSampler(10, seed=3, epoch=2, rank=r, world_size=3)) for r in range(3)]
    # DistributedSampler pads to a multiple of the world size by repeating the start of the order
    assert [len(s) for s in shards] == [4, 4, 4]
    interleaved = [s[i] for i in range(4) for s in shards]
    assert interleaved == full + full[:2]


def test_isolated_rng_restores_the_outer_stream():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    with isolated_rng(42):
        inner = torch.rand(2)
    assert torch.equal(torch.rand(3), expected)
    with isolated_rng(42):
        assert torch.equal(torch.rand(2), inner)


def test_run_logger_grows_columns(tmp_path):
    log = RunLogger(tmp_path)
    log.log("train", {"step": 1, "a": 1.0})
    log.log("train", {"step": 2, "a": 2.0, "b": 5.0})
    rows = read_csv(tmp_path / "train_log.csv")
    assert rows == [{"step": "1", "a": "1.0", "b": ""}, {"step": "2", "a": "2.0", "b": "5.0"}]
    log2 = RunLogger(tmp_path)
    log2.resume_at(1)
    assert read_csv(tmp_path / "train_log.csv") == [{"step": "1", "a": "1.0"}]


def test_device_loader_moves_batches():
    loader = torch.utils.data.DataLoader(dummy.DictDataset(6), batch_size=4)
    moved = list(DeviceLoader(loader, torch.device("meta")))
    assert len(moved) == 2 and moved[0]["obs"].device.type == "meta" and moved[0]["obs"].shape == (4, 3, 2)


def test_registry_and_whole_runs(tmp_path):
    dummy.register()
    with pytest.raises(ValueError, match="already registered"):
        register_experiment("dummy-gaussian", lambda cfg: None)
    cfg = dummy.small_config(tmp_path, epochs=2)
    exp = build_experiment(cfg)
    assert len(exp.train_set) == 40 and len(exp.val_set) == 16 and exp.evaluate_fn is dummy.evaluate
    assert exp.split("test") is exp.test_set and len(exp.test_set) == 12
    with pytest.raises(ConfigError, match="split must be one of train, val, test"):
        exp.split("validation")
    cfg.data.dataset = "nothing-here"
    message = "no experiment builder for data.dataset='nothing-here'; known datasets: .*dummy-gaussian"
    with pytest.raises(ConfigError, match=message):
        build_experiment(cfg)

    cfg = dummy.small_config(tmp_path, epochs=2)
    # whole run through the registry, with the objective resolved by name from mhe.objectives
    objectives = pytest.importorskip("mhe.objectives")
    objectives.OBJECTIVES["dummy"] = dummy.reverse_kl
    try:
        res = train_experiment(cfg)
        out = evaluate_checkpoint(res.checkpoint, split="val", num_samples=8, temperature=0.5, max_items=12)
        on_test = evaluate_checkpoint(res.checkpoint, num_samples=8, temperature=0.5)
    finally:
        del objectives.OBJECTIVES["dummy"]
    assert res.step == 10
    assert out["items"] == 12 and out["num_samples"] == 8 and out["step"] == 10 and out["split"] == "val"
    assert on_test["split"] == "test" and on_test["items"] == 12 and on_test["metrics"] != out["metrics"]
    assert set(out["metrics"]) == {"mean_err", "scale"}
    # evaluation rebuilds the model from the checkpoint's own config and loads its weights
    ckpt = load_checkpoint(res.checkpoint)
    model = dummy.GaussianModel()
    model.load_state_dict(ckpt["model"])
    val = torch.utils.data.Subset(dummy.DictDataset(16, seed=1), range(12))
    batch = {k: torch.stack([val[i][k] for i in range(12)]) for k in ("obs", "visible")}
    scale = model._dist(batch)[1].exp().mean().item()
    assert out["metrics"]["scale"] == pytest.approx(scale, rel=1e-6)
    with pytest.raises(ValueError, match="num_samples must be at least 1"):
        evaluate_checkpoint(res.checkpoint, num_samples=0)


def test_evaluate_checkpoint_refuses_a_mismatched_builder(tmp_path):
    dummy.register()
    cfg = dummy.small_config(tmp_path, epochs=1)
    res = make_trainer(cfg).fit()

    def other(c):
        return Experiment(torch.nn.Linear(2, 2), dummy.DictDataset(4), dummy.DictDataset(4), dummy.evaluate)

    register_experiment("other", other)
    try:
        with pytest.raises(CheckpointMismatchError, match="missing in .*: bias, weight"):
            evaluate_checkpoint(res.checkpoint, dataset="other", split="val")
    finally:
        del EXPERIMENTS["other"]


def test_cosine_schedule_closed_form_logged_and_resume_exact(tmp_path):
    steps = 12
    straight = make_trainer(dummy.small_config(tmp_path / "a", steps=steps, lr_schedule="cosine"))
    for k, expected in ((0, 1e-2), (steps // 2, 0.5e-2), (steps, 0.0), (3, 1e-2 * 0.5 * (1 + math.cos(math.pi / 4)))):
        assert straight.learning_rate(k) == pytest.approx(expected, abs=1e-12)
    straight.fit()
    logged = [float(r["lr"]) for r in read_csv(straight.out_dir / "train_log.csv")]
    assert logged == pytest.approx([straight.learning_rate(k) for k in range(steps)])

    calls = {"n": 0}

    def crashing(model, batch, **kw):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt("killed")
        return dummy.reverse_kl(model, batch, **kw)

    cfg = dummy.small_config(tmp_path / "b", steps=steps, lr_schedule="cosine", checkpoint_every=5)
    with pytest.raises(KeyboardInterrupt):
        make_trainer(cfg, objective=crashing).fit()
    resumed = make_trainer(cfg, model_seed=7)
    resumed.fit(resume=True)
    assert torch.equal(dummy.flat_params(resumed.model), dummy.flat_params(straight.model))


def test_init_from_copies_the_weights_and_starts_a_fresh_schedule(tmp_path):
    first = make_trainer(dummy.small_config(tmp_path / "first", steps=10)).fit()
    source = make_trainer(dummy.small_config(tmp_path / "ref", steps=10))
    source.fit()
    # a tiny learning rate: one step cannot move the copied weights measurably
    cfg = dummy.small_config(tmp_path / "tuned", steps=1, lr=1e-12, init_from=str(first.checkpoint))
    tuned = make_trainer(cfg, model_seed=7)
    res = tuned.fit()
    assert res.step == 1  # the step count starts from zero, not from the source's 10
    assert torch.allclose(dummy.flat_params(tuned.model), dummy.flat_params(source.model), atol=1e-9)
    untouched = make_trainer(dummy.small_config(tmp_path / "plain", steps=1, lr=1e-12), model_seed=7)
    untouched.fit()
    assert not torch.allclose(dummy.flat_params(untouched.model), dummy.flat_params(source.model), atol=1e-3)


def test_init_from_errors_name_the_problem(tmp_path):
    first = make_trainer(dummy.small_config(tmp_path / "first", steps=2)).fit()
    ckpt = load_checkpoint(first.checkpoint)
    ckpt["model"] = {f"renamed.{k}": v for k, v in ckpt["model"].items()}
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointMismatchError, match="missing in"):
        make_trainer(dummy.small_config(tmp_path / "a", steps=1, init_from=str(bad))).fit()
    with pytest.raises(FileNotFoundError, match="neither a file nor a shipped checkpoint"):
        make_trainer(dummy.small_config(tmp_path / "b", steps=1, init_from="no_such_model")).fit()


def test_tempering_ramps_w_rec_and_w_prior_then_holds_them(tmp_path):
    seen = []

    def recording(model, batch, num_samples=4, w_rec=1.0, w_prior=3.0, w_ent=1.0):
        seen.append((w_rec, w_prior, w_ent, num_samples))
        return dummy.reverse_kl(model, batch, num_samples, w_ent)

    cfg = dummy.small_config(tmp_path, steps=6, temper_steps=4)
    # the weights given are the full values; β multiplies w_rec and w_prior in each call and mutates nothing
    trainer = Trainer(dummy.GaussianModel(), recording, dummy.DictDataset(40), cfg.train,
                      weights={"w_rec": 2.0, "w_prior": 3.0, "w_ent": 0.5}, out_dir=cfg.out_path())
    trainer.fit()
    betas = [(k + 1) / 4 for k in range(4)] + [1.0, 1.0]
    assert seen == [pytest.approx((2.0 * b, 3.0 * b, 0.5, 4)) for b in betas]
    assert trainer.weights == {"w_rec": 2.0, "w_prior": 3.0, "w_ent": 0.5}


def test_tempering_needs_the_weights_it_ramps(tmp_path):
    cfg = dummy.small_config(tmp_path, steps=2, temper_steps=3)
    with pytest.raises(ConfigError, match="takes no w_rec, w_prior; set train.temper_steps=0"):
        make_trainer(cfg, objective=dummy.reverse_kl)
    with pytest.raises(ConfigError, match="objective reverse_kl takes no w_prior; set train.temper_steps=0"):
        Trainer(dummy.GaussianModel(), dummy.reverse_kl, dummy.DictDataset(8), cfg.train, weights={"w_rec": 1.0})
    assert tempered_weights({}, 0) == {}
    assert tempered_weights({"w_rec": 2.0}, 3, {"w_rec": 1.0, "w_prior": 0.5}) == {"w_rec": 2.0, "w_prior": 0.5}


def test_a_trainer_without_an_experiment_config(tmp_path):
    """The trainer needs a model, an objective, data and a train section; no experiment config."""
    cfg = dummy.small_config(tmp_path / "cfg", steps=7)
    seed_everything(0)
    a = Trainer(dummy.GaussianModel(), dummy.reverse_kl, dummy.DictDataset(40), cfg.train, out_dir=tmp_path / "a")
    res = a.fit()
    assert res.step == 7 and res.checkpoint == tmp_path / "a" / "last.pt"
    ckpt = load_checkpoint(res.checkpoint)
    assert ckpt["config"]["train"]["steps"] == 7 and ckpt["config"]["seed"] == 0
    assert (tmp_path / "a" / "config.yaml").exists()
    # the same run through from_config: the same training stream, the same parameters
    b = make_trainer(dummy.small_config(tmp_path / "b", steps=7), evaluate=None)
    b.fit()
    assert torch.equal(dummy.flat_params(a.model), dummy.flat_params(b.model))
    # a resume must match the recorded settings
    cfg.train.lr = 0.5
    again = Trainer(dummy.GaussianModel(), dummy.reverse_kl, dummy.DictDataset(40), cfg.train, out_dir=tmp_path / "a")
    with pytest.raises(CheckpointMismatchError, match="train.lr: 0.01 -> 0.5"):
        again.fit(resume=True)
    assert "fit(resume=True)" in again.resume_hint() and "mhe train" in b.resume_hint()
