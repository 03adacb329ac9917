"""The ``mhe`` command on the dummy experiment: train, resume, evaluate, info, reproduce, torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dummy_experiment as dummy
import pytest
import torch
import yaml

from mhe.lab.checkpoint import load_checkpoint
from mhe.lab.cli import main
from mhe.lab.config_io import dump_config, load_config

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def test_train_then_evaluate(registered, config_file, tmp_path, capsys):
    assert main(["train", "--config", str(config_file), "train.epochs=1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    ckpt_path = tmp_path / "run" / "last.pt"
    assert "5 steps (1 epochs)" in out and str(ckpt_path) in out and "validation: mean_err=" in out
    ckpt = load_checkpoint(ckpt_path)
    assert ckpt["step"] == 5 and ckpt["config"]["train"]["epochs"] == 1  # the override reached the run

    out_json = tmp_path / "eval" / "metrics.json"
    assert main(["evaluate", "--checkpoint", str(ckpt_path), "--samples", "8", "--temperature", "0.5",
                 "--max-items", "12", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out_json.read_text())
    assert result["num_samples"] == 8 and result["temperature"] == 0.5 and result["items"] == 12
    assert result["dataset"] == "dummy-gaussian" and result["step"] == 5
    assert set(result["metrics"]) == {"mean_err", "scale"}
    assert f"scale     {result['metrics']['scale']:.4f}" in printed


def test_resume_and_overwrite(registered, config_file, tmp_path, capsys):
    assert main(["train", "--config", str(config_file), "train.epochs=1"]) == 0
    # a second fresh run would overwrite the first: refused with a hint
    assert main(["train", "--config", str(config_file), "train.epochs=1"]) == 2
    assert "already holds a run (last.pt); pass --resume" in capsys.readouterr().err
    assert main(["train", "--config", str(config_file), "train.epochs=2", "--resume"]) == 0
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 10
    # resuming with a different learning rate would not continue the same run
    assert main(["train", "--config", str(config_file), "train.epochs=3", "train.lr=0.5", "--resume"]) == 2
    assert "train.lr: 0.01 -> 0.5" in capsys.readouterr().err
    assert main(["train", "--config", str(config_file), "train.epochs=1", "--overwrite"]) == 0
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 5


def test_print_config_applies_overrides(config_file, capsys):
    assert main(["train", "--config", str(config_file), "train.lr=1e-3", "--device", "cpu", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["lr"] == 1e-3 and printed["device"] == "cpu"
    assert load_config(config_file, ["train.lr=1e-3", "device=cpu"]).train.lr == 1e-3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--config", "CFG", "train.lrr=1"], "unknown key(s) train.lrr"),
        (["train", "--config", "CFG", "--device", "cuda:7"] if not torch.cuda.is_available()
         else ["train", "--config", "CFG", "device=nonsense"], "device"),
        (["train", "--config", "missing.yaml"], "config file 'missing.yaml' not found"),
        (["train", "--config", "CFG", "data.dataset=nowhere"], "no experiment builder for data.dataset='nowhere'"),
        (["evaluate", "--checkpoint", "nope.pt"],
         "no checkpoint 'nope.pt': it is neither a file nor a shipped checkpoint"),
        (["--plugin", "no_such_module_xyz", "info"], "--plugin no_such_module_xyz: no such module"),
    ],
)
def test_user_errors_exit_2_with_a_message(argv, message, registered, config_file, capsys):
    argv = [str(config_file) if a == "CFG" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("mhe ") and message in err and "Traceback" not in err


def test_evaluate_on_another_dataset_and_bad_values(registered, config_file, tmp_path, capsys):
    assert main(["train", "--config", str(config_file), "train.epochs=1"]) == 0
    ckpt = str(tmp_path / "run" / "last.pt")
    assert main(["evaluate", "--checkpoint", ckpt, "--data", "ho9d"]) == 2
    assert "no experiment builder for data.dataset='ho9d'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # checked by the argument parser, before any work
        main(["evaluate", "--checkpoint", ckpt, "--temperature", "0"])
    assert "--temperature: must be a positive number" in capsys.readouterr().err
    with pytest.raises(ValueError, match="temperature must be positive"):  # and by the library call
        from mhe.lab.experiments import evaluate_checkpoint

        evaluate_checkpoint(ckpt, temperature=0.0)


def test_plugins_register_experiments(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_plugin.py").write_text(textwrap.dedent("""
        from mhe.lab.builders import register_experiment
        register_experiment("plugin-exp", lambda cfg: None, overwrite=True)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["--plugin", "my_plugin", "info"]) == 0
    out = capsys.readouterr().out
    assert "plugin-exp" in out.split("experiments (data.dataset):")[1].splitlines()[0]
    for expected in ("torch ", "zuko", "devices:", "body models:", "MANO_RIGHT", "packaged configs: "):
        assert expected in out
    configs = out.split("packaged configs: ")[1].splitlines()[0].split(", ")
    assert {f"hand_{n}" for n in ("mhentropy", "no_entropy", "nll", "min_of_n", "deterministic")} <= set(configs)
    from mhe.lab.builders import EXPERIMENTS

    del EXPERIMENTS["plugin-exp"]


def test_body_model_status_reports_real_files(tmp_path, monkeypatch):
    pytest.importorskip("mhe.body")
    from mhe.lab.cli import body_model_status

    monkeypatch.setenv("MHE_BODY_MODELS", str(tmp_path))
    assert all("stand-in" in line for line in body_model_status())
    (tmp_path / "mano").mkdir()
    (tmp_path / "mano" / "MANO_RIGHT.pkl").write_bytes(b"garbage")
    line = body_model_status()[0]
    assert line.startswith("MANO_RIGHT: ") and "cannot be read" in line


def test_reproduce_calls_the_notebook_runner(monkeypatch):
    import mhe.lab.notebooks

    calls = []
    monkeypatch.setattr(mhe.lab.notebooks, "reproduce", lambda seed, only: calls.append((seed, only)))
    assert main(["reproduce", "--seed", "3", "--only", "01", "04"]) == 0
    assert calls == [(3, ["01", "04"])]


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "mhe.lab.cli", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and all(c in out.stdout for c in ("train", "evaluate", "reproduce", "info"))
    out = subprocess.run([sys.executable, "-m", "mhe.lab.cli", "train"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "--config" in out.stderr  # argparse names the missing option


def test_train_under_torchrun(tmp_path):
    # the real launcher: two processes, gloo, environment rendezvous, rank 0 writing the checkpoint
    (tmp_path / "ddp_plugin.py").write_text(textwrap.dedent("""
        import dummy_experiment
        from mhe.objectives import OBJECTIVES
        dummy_experiment.register()
        OBJECTIVES["dummy"] = dummy_experiment.reverse_kl
    """))
    cfg = tmp_path / "c.yaml"
    dump_config(dummy.small_config(tmp_path), cfg)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(TESTS), str(ROOT)]), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mhe.lab.cli", "--plugin", "ddp_plugin", "train", "--config", str(cfg), "--no-progress",
           "train.epochs=2", "train.batch_size=4"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "on 2 process(es)" in out.stdout and out.stdout.count("[mhe] checkpoint:") == 1
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    # 40 items, 20 per rank, 4 per step -> 5 steps per epoch
    assert ckpt["step"] == 10 and len(ckpt["rng"]) == 2 and ckpt["extra"]["world_size"] == 2


def test_meshes_writes_a_shipped_models_hypotheses(tmp_path, capsys):
    """`mhe meshes`: S hypotheses and the ground truth of one test hand, one colour each, readable by trimesh."""
    import trimesh

    out = tmp_path / "hand.ply"
    assert main(["meshes", "--checkpoint", "hand_mhentropy", "--item", "2", "--samples", "3", "--out", str(out)]) == 0
    assert "written" in capsys.readouterr().out
    mesh = trimesh.load(out, process=False)
    assert mesh.vertices.shape == (4 * 778, 3)
    assert len({tuple(c) for c in mesh.visual.vertex_colors[::778, :3].tolist()}) == 4
    # the hand is root-relative in mm: tens of millimetres across, centred near the middle knuckle
    assert 30 < float(mesh.vertices.max(0)[0] - mesh.vertices.min(0)[0]) < 400
    assert main(["meshes", "--checkpoint", "hand_mhentropy", "--out", str(tmp_path / "hand.stl")]) == 2
    assert "give a file ending in .ply" in capsys.readouterr().err
