"""DDP on CPU: two gloo processes started the way torchrun starts them (environment variables)."""

from __future__ import annotations

import csv
import os
import socket
from pathlib import Path

import dummy_experiment as dummy
import pytest
import torch
import torch.multiprocessing as mp

from mhe.lab.distributed import DistInfo, all_gather_objects, all_reduce_mean, broadcast_object, init_distributed
from mhe.lab.train import Trainer
from mhe.utils import seed_everything

WORLD = 2
pytestmark = pytest.mark.xdist_group("ddp")  # one worker runs the spawned processes once


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _trainer(cfg, objective, data_size, info, perturb=False):
    seed_everything(cfg.seed)
    model = dummy.GaussianModel()
    if perturb:  # DDP must replace this rank's initial weights by rank 0's
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
    return Trainer.from_config(model, dummy.DictDataset(data_size), cfg, objective=objective,
                               val_set=dummy.DictDataset(8, seed=1), evaluate_fn=dummy.evaluate, dist=info)


def _worker(rank: int, port: int, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from mhe.lab.distributed import cleanup_distributed

    root = Path(root)
    info = init_distributed("cpu")
    assert (info.rank, info.world_size) == (rank, WORLD)
    # 1. a deterministic objective, 4 items per rank per step
    cfg = dummy.small_config(root / "mse", epochs=2, batch_size=4)
    tr = _trainer(cfg, dummy.mse, 32, info, perturb=rank == 1)
    tr.fit()
    torch.save(dummy.flat_params(tr.model), root / f"mse_{rank}.pt")
    # 2. a sampling objective: the ranks draw different noise, DDP keeps the weights identical
    cfg = dummy.small_config(root / "kl", steps=8)
    tr = _trainer(cfg, dummy.reverse_kl, 40, info)
    tr.fit()
    torch.save(dummy.flat_params(tr.model), root / f"kl_{rank}.pt")
    # 3. the same run stopped after 5 steps and resumed by new trainers to 8
    cfg = dummy.small_config(root / "kl_resumed", steps=5)
    _trainer(cfg, dummy.reverse_kl, 40, info).fit()
    cfg.train.steps = 8
    tr = _trainer(cfg, dummy.reverse_kl, 40, info, perturb=True)
    torch.manual_seed(100 + rank)
    tr.fit(resume=True)
    torch.save(dummy.flat_params(tr.model), root / f"kl_resumed_{rank}.pt")
    # 4. the collective helpers
    assert all_reduce_mean({"x": float(rank)}, info) == {"x": 0.5}
    assert all_gather_objects(rank * 10, info) == [0, 10]
    assert broadcast_object("r" + str(rank), info) == "r0"
    cleanup_distributed()


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(root)), nprocs=WORLD, join=True)
    return root


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_ranks_end_with_identical_parameters(ddp_run):
    for name in ("mse", "kl", "kl_resumed"):
        p0, p1 = (torch.load(ddp_run / f"{name}_{r}.pt") for r in range(WORLD))
        assert torch.equal(p0, p1), name


def test_two_ranks_equal_one_process_with_the_combined_batch(ddp_run, tmp_path):
    # rank r takes items perm[r::2] of the epoch's permutation, so the two 4-item batches of a step are
    # the 8-item batch a single process takes; averaged gradients then equal the 8-item gradient
    cfg = dummy.small_config(tmp_path / "single", epochs=2, batch_size=8)
    single = _trainer(cfg, dummy.mse, 32, DistInfo())
    single.fit()
    ddp = torch.load(ddp_run / "mse_0.pt")
    assert torch.allclose(ddp, dummy.flat_params(single.model), atol=1e-6, rtol=0)
    assert not torch.allclose(ddp, dummy.flat_params(dummy.GaussianModel()), atol=1e-3)
    # the logged loss is the mean over ranks, i.e. the combined batch's loss
    a, b = _rows(ddp_run / "mse" / "run" / "train_log.csv"), _rows(cfg.out_path() / "train_log.csv")
    assert len(a) == len(b) == 8
    for ra, rb in zip(a, b, strict=True):
        assert float(ra["loss"]) == pytest.approx(float(rb["loss"]), rel=1e-5)


def test_resume_under_ddp_is_exact(ddp_run):
    assert torch.equal(torch.load(ddp_run / "kl_0.pt"), torch.load(ddp_run / "kl_resumed_0.pt"))


def test_only_rank_zero_writes(ddp_run):
    run = ddp_run / "kl" / "run"
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["config.yaml", "last.pt", "log.jsonl", "train_log.csv", "val_log.csv"]
    )
    steps = [int(r["step"]) for r in _rows(run / "train_log.csv")]
    assert steps == list(range(1, 9))  # one row per step, not one per rank
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert len(ckpt["rng"]) == WORLD and ckpt["extra"]["world_size"] == WORLD


def test_single_process_without_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = init_distributed("cpu")
    assert info == DistInfo(device=torch.device("cpu")) and info.is_main and not info.distributed


def test_missing_rendezvous_variables_are_explained(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK"):
        monkeypatch.delenv(key, raising=False)
    from mhe.errors import DistributedSetupError

    # one line from `mhe` (a UserError), still a RuntimeError for library callers
    missing = "MASTER_ADDR, MASTER_PORT, RANK are not set; launch with `torchrun"
    with pytest.raises(DistributedSetupError, match=missing):
        init_distributed("cpu")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(RuntimeError, match="WORLD_SIZE='two' is not an integer"):
        init_distributed("cpu")
