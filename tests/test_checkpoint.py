"""Checkpoints: weights_only loading, RNG capture, atomic writes, clear mismatch errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from mhe.config import ExperimentConfig
from mhe.lab.checkpoint import (
    CheckpointMismatchError,
    capture_rng_state,
    check_resume_config,
    load_checkpoint,
    load_model_state,
    resolve_checkpoint_path,
    restore_rng_state,
    save_checkpoint,
)
from mhe.lab.config_io import config_to_dict, load_config


def _draws() -> tuple:
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), np.random.randn(1).tolist(),
            [random.random() for _ in range(3)], random.gauss(0, 1))


def test_rng_state_restores_every_generator():
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    np.random.randn()  # leave a cached Gaussian in NumPy's state
    random.gauss(0, 1)
    state = capture_rng_state()
    first = _draws()
    _draws()
    restore_rng_state(state)
    assert _draws() == first


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    model = nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    cfg = config_to_dict(ExperimentConfig())
    torch.manual_seed(11)
    rng = capture_rng_state()
    expected_next = torch.rand(2)
    path = save_checkpoint(tmp_path / "c.pt", model=model, optimizer=opt, config=cfg, step=7, epoch=1,
                           batch_in_epoch=2, rng=[rng], metrics={"val": {"mpjpe": 1.5}})
    # plain torch.load with weights_only=True must accept the file: no pickled objects inside
    raw = torch.load(path, weights_only=True)
    assert raw["step"] == 7 and raw["epoch"] == 1 and raw["batch_in_epoch"] == 2
    assert raw["config"] == cfg and raw["metrics"]["val"]["mpjpe"] == 1.5
    ckpt = load_checkpoint(path)
    fresh = nn.Linear(3, 2)
    load_model_state(fresh, ckpt)
    assert torch.equal(fresh.weight, model.weight) and torch.equal(fresh.bias, model.bias)
    opt2 = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    opt2.load_state_dict(ckpt["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    torch.manual_seed(0)
    restore_rng_state(ckpt["rng"][0])
    assert torch.equal(torch.rand(2), expected_next)


def test_write_is_atomic(tmp_path, monkeypatch):
    model = nn.Linear(2, 2)
    cfg = config_to_dict(ExperimentConfig())
    path = save_checkpoint(tmp_path / "c.pt", model=model, config=cfg, step=1)

    def torn_save(obj, f, *args, **kwargs):
        if hasattr(f, "write"):
            f.write(b"half a checkpoint")
        else:
            with open(f, "wb") as handle:
                handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model=model, config=cfg, step=2)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1  # the old checkpoint survives intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temp file left behind


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; train one"):
        load_checkpoint(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointMismatchError, match="could not be read as a checkpoint"):
        load_checkpoint(junk)
    plain = tmp_path / "plain.pt"
    torch.save(nn.Linear(2, 2).state_dict(), plain)
    with pytest.raises(CheckpointMismatchError, match="not an mhe checkpoint"):
        load_checkpoint(plain)
    cfg = config_to_dict(ExperimentConfig())
    newer = tmp_path / "newer.pt"
    save_checkpoint(newer, model=nn.Linear(2, 2), config=cfg)
    state = torch.load(newer, weights_only=True)
    state["format_version"] = 99
    torch.save(state, newer)
    with pytest.raises(CheckpointMismatchError, match="newer mhe"):
        load_checkpoint(newer)
    del state["rng"]
    state["format_version"] = 1
    torch.save(state, newer)
    with pytest.raises(CheckpointMismatchError, match=r"lacks the entries \['rng'\]"):
        load_checkpoint(newer)


def test_resolve_checkpoint_path_file_run_folder_and_shipped_name(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(FileNotFoundError, match="folder without a last.pt"):
        resolve_checkpoint_path(run)
    save_checkpoint(run / "last.pt", model=nn.Linear(2, 2), config=config_to_dict(ExperimentConfig()))
    assert resolve_checkpoint_path(run) == run / "last.pt"
    assert resolve_checkpoint_path(run / "last.pt") == run / "last.pt"
    assert resolve_checkpoint_path("hand_mhentropy").name == "hand_mhentropy.pt"
    with pytest.raises(FileNotFoundError, match="neither a file nor a shipped checkpoint"):
        resolve_checkpoint_path(tmp_path / "nope.pt")


def test_model_mismatch_names_keys_and_shapes(tmp_path):
    cfg = config_to_dict(ExperimentConfig())
    path = save_checkpoint(tmp_path / "c.pt", model=nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), config=cfg)
    ckpt = load_checkpoint(path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_model_state(nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2), nn.Linear(2, 2)), ckpt)
    msg = str(info.value)
    assert "missing in checkpoint: 2.bias, 2.weight" in msg
    assert "0.weight: saved (4, 3) vs model (5, 3)" in msg
    with pytest.raises(CheckpointMismatchError, match="not in the model: 1.bias, 1.weight"):
        load_model_state(nn.Sequential(nn.Linear(3, 4)), ckpt)


def test_resume_config_check():
    saved = config_to_dict(ExperimentConfig())
    # changes that do not alter what a run computes are allowed
    check_resume_config(saved, config_to_dict(load_config(overrides=["train.epochs=40", "train.progress=false",
                                                                      "train.out_dir=elsewhere"])))
    with pytest.raises(CheckpointMismatchError) as info:
        check_resume_config(saved, config_to_dict(load_config(overrides=["train.lr=1e-3", "model.context_dim=8"])))
    msg = str(info.value)
    assert "model.context_dim: 128 -> 8" in msg and "train.lr: 0.0002 -> 0.001" in msg
    assert "train.epochs" not in msg
