"""Every class of bad input gives one line that says what is wrong and how to fix it (exit status 2, no
traceback), and an interrupted run loses nothing: arguments, files, data, configs, checkpoints, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dummy_experiment as dummy
import pytest
import torch

from mhe.lab.checkpoint import load_checkpoint, save_checkpoint
from mhe.lab.cli import main
from mhe.lab.config_io import config_to_dict, dump_config
from mhe.lab.train import Trainer, TrainingInterrupted
from mhe.utils import seed_everything

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def one_line_error(capsys, code: int) -> str:
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


# -- arguments: checked before any work starts ------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "--checkpoint", "hand_mhentropy", "--samples", "0"],
         "--samples: must be a positive integer, got 0"),
        (["evaluate", "--checkpoint", "hand_mhentropy", "--batch-size", "0"],
         "--batch-size: must be a positive integer"),
        (["evaluate", "--checkpoint", "hand_mhentropy", "--max-items", "-3"],
         "--max-items: must be a positive integer"),
        (["evaluate", "--checkpoint", "hand_mhentropy", "--temperature", "0"],
         "--temperature: must be a positive number"),
        (["evaluate", "--checkpoint", "hand_mhentropy", "--samples", "ten"], "must be a positive integer, got 'ten'"),
        (["evaluate", "--checkpoint", "hand_mhentropy", "--data", "ho3d"], "--data ho3d needs --root"),
        (["evaluate", "--checkpoint", "hand_mhentropy", "--split", "train"], "invalid choice: 'train'"),
        (["train", "--config", "hand_mhentropy", "--device", "cpu", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments_stop_before_any_work(argv, message, capsys, monkeypatch):
    import mhe.lab.experiments

    monkeypatch.setattr(mhe.lab.experiments, "evaluate_checkpoint", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_overrides_may_follow_options(config_file, capsys):
    assert main(["train", "--config", str(config_file), "--device", "cpu", "train.lr=0.125", "--print-config"]) == 0
    assert "lr: 0.125" in capsys.readouterr().out


def test_help_does_not_load_torch():
    code = "import sys; from mhe.lab.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr


def test_cli_defaults_equal_the_evaluation_defaults():
    from mhe import evaluation
    from mhe.lab import cli

    assert (cli.EVAL_SAMPLES, cli.EVAL_TEMPERATURE, cli.EVAL_BATCH_SIZE) == (
        evaluation.EVAL_SAMPLES, evaluation.EVAL_TEMPERATURE, evaluation.EVAL_BATCH_SIZE)


# -- configs -------------------------------------------------------------------------------------


def test_config_errors_are_one_line(registered, config_file, tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert "is empty" in one_line_error(capsys, main(["train", "--config", str(empty)]))
    assert "--resume continues a run and --overwrite" in one_line_error(
        capsys, main(["train", "--config", str(config_file), "--resume", "--overwrite"]))
    assert "nothing to resume" in one_line_error(capsys, main(["train", "--config", str(config_file), "--resume"]))
    err = one_line_error(capsys, main(["train", "--config", "hand_mhentropy", "objective.name=deterministic",
                                       "--print-config"]))
    assert "model.deterministic=true" in err
    assert "--plugin no_such_mod_xyz: no such module" in one_line_error(capsys,
                                                                         main(["--plugin", "no_such_mod_xyz", "info"]))


# -- checkpoints ---------------------------------------------------------------------------------


def test_damaged_checkpoints_are_one_line_and_name_the_file(registered, tmp_path, capsys):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    err = one_line_error(capsys, main(["evaluate", "--checkpoint", str(empty)]))
    assert "empty.pt is an empty file (0 bytes)" in err
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x80\x04not a torch file at all" * 10)
    err = one_line_error(capsys, main(["evaluate", "--checkpoint", str(garbage)]))
    assert "garbage.pt could not be read as a checkpoint" in err and "weights_only=False" not in err
    # a diverged run's weights are refused on load
    model = dummy.GaussianModel()
    with torch.no_grad():
        model.mean.weight[0, 0] = float("nan")
    nan = save_checkpoint(tmp_path / "nan.pt", model=model, config=config_to_dict(dummy.small_config(tmp_path)))
    err = one_line_error(capsys, main(["evaluate", "--checkpoint", str(nan), "--split", "val"]))
    assert "non-finite weights (NaN or inf) in mean.weight" in err


def test_init_from_refuses_another_model_config_unless_partial(tmp_path, capsys):
    pytest.importorskip("mhe.models.hand")
    small = ["model.context_dim=16", "model.encoder_hidden=[16]", "model.flow_transforms=2", "model.flow_hidden=[16]",
             "model.head_hidden=16", "train.steps=1", "data.train_size=8", "data.val_size=4", "data.test_size=4",
             "train.batch_size=4", "train.eval_every=0", "--no-progress", "--device", "cpu"]
    assert main(["train", "--config", "hand_mhentropy", f"train.out_dir={tmp_path / 'pca'}", *small]) == 0
    capsys.readouterr()
    source = tmp_path / "pca" / "last.pt"
    # PCA weights into an axis-angle flow: every tensor's shape matches, the meaning does not
    argv = ["train", "--config", "hand_mhentropy_aa", f"train.out_dir={tmp_path / 'aa'}", f"train.init_from={source}",
            *small]
    err = one_line_error(capsys, main(argv))
    assert "model.pose_repr: 'pca' -> 'axis_angle'" in err and "train.init_partial=true" in err
    assert not (tmp_path / "aa" / "last.pt").exists()
    assert main([*argv, "train.init_partial=true", "train.lr=1e-12"]) == 0
    a, b = load_checkpoint(source)["model"], load_checkpoint(tmp_path / "aa" / "last.pt")["model"]
    enc = [k for k in a if k.startswith("encoder.")]
    assert enc and all(torch.allclose(a[k], b[k], atol=1e-9) for k in enc)  # the matching tensors were copied


# -- data ----------------------------------------------------------------------------------------


def test_damaged_dataset_and_body_model_files_name_the_file(tmp_path, capsys, monkeypatch):
    from mhe.data.fake_ho3d import write_fake_ho3d

    root = tmp_path / "ho3d"
    write_fake_ho3d(root, frames_per_sequence=1)
    meta = next((root / "train" / "MC5" / "meta").glob("*.pkl"))
    meta.write_bytes(b"\x00garbage")
    err = one_line_error(capsys, main(["evaluate", "--checkpoint", "hand_mhentropy", "--data", "ho3d", "--root",
                                       str(root), "--samples", "2", "--device", "cpu"]))
    assert f"HO3D meta file {meta} cannot be read" in err
    models = tmp_path / "models"
    (models / "mano").mkdir(parents=True)
    (models / "mano" / "MANO_RIGHT.pkl").write_bytes(b"not a pickle")
    monkeypatch.setenv("MHE_BODY_MODELS", str(models))
    err = one_line_error(capsys, main(["evaluate", "--checkpoint", "hand_mhentropy", "--max-items", "2",
                                       "--samples", "2", "--device", "cpu"]))
    assert "MANO_RIGHT.pkl could not be unpickled" in err


def test_the_model_checks_its_input():
    pytest.importorskip("mhe.models.hand")
    from mhe.config import ModelConfig
    from mhe.models.hand import MultiHypothesisHand

    model = MultiHypothesisHand(ModelConfig(encoder="resmlp", context_dim=16, encoder_hidden=(16,), flow_transforms=2,
                                            flow_hidden=(16,), head_hidden=16))
    obs, vis = torch.rand(2, 21, 2) * 2 - 1, torch.rand(2, 21) > 0.4
    vis[:, 0] = True
    hidden = obs.clone()
    hidden[~vis] = float("nan")  # occluded coordinates are unknown: NaN there is fine
    torch.manual_seed(0)
    a = model.hypotheses({"obs": obs, "visible": vis}, 3).pred_obs
    torch.manual_seed(0)
    b = model.hypotheses({"obs": hidden, "visible": vis}, 3).pred_obs
    assert torch.isfinite(b).all() and torch.equal(a, b)
    with pytest.raises(ValueError, match="non-finite value at a visible keypoint"):
        model.hypotheses({"obs": torch.where(vis[..., None], hidden * float("nan"), hidden), "visible": vis}, 2)
    with pytest.raises(ValueError, match=r"obs must have shape \(B, 21, 2\)"):
        model.mode({"obs": obs[:, :20], "visible": vis[:, :20]})


# -- interrupts ----------------------------------------------------------------------------------


def test_a_stop_request_saves_and_resumes_exactly(tmp_path):
    """The trainer's stop path without real signals: the step in flight ends, a checkpoint is written,
    TrainingInterrupted says how to resume, and the resumed run equals an uninterrupted one."""
    straight_cfg = dummy.small_config(tmp_path / "a", steps=12)
    seed_everything(0)
    straight = Trainer.from_config(dummy.GaussianModel(), dummy.DictDataset(40), straight_cfg,
                                   objective=dummy.reverse_kl)
    straight.fit()

    cfg = dummy.small_config(tmp_path / "b", steps=12, checkpoint_minutes=0)
    calls = {"n": 0}
    seed_everything(0)
    trainer = Trainer.from_config(dummy.GaussianModel(), dummy.DictDataset(40), cfg, objective=None or dummy.reverse_kl)

    def stopping(model, batch, **kw):
        calls["n"] += 1
        if calls["n"] == 7:
            trainer._stop_signal = signal.SIGTERM  # what the handler records
        return dummy.reverse_kl(model, batch, **kw)

    trainer.objective = stopping
    trainer.step_module.objective = stopping
    with pytest.raises(TrainingInterrupted, match=r"SIGTERM at step 7 of 12: saved .*last.pt.* --resume") as info:
        trainer.fit()
    assert isinstance(info.value, KeyboardInterrupt) and load_checkpoint(info.value.checkpoint)["step"] == 7
    seed_everything(5)
    resumed = Trainer.from_config(dummy.GaussianModel(), dummy.DictDataset(40), cfg, objective=dummy.reverse_kl)
    resumed.fit(resume=True)
    assert torch.equal(dummy.flat_params(resumed.model), dummy.flat_params(straight.model))


def test_time_cadence_checkpoints_survive_a_crash(tmp_path):
    calls = {"n": 0}

    def crashing(model, batch, **kw):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("power cut")
        return dummy.reverse_kl(model, batch, **kw)

    for minutes, expect in ((1e-9, 3), (0, None)):
        calls["n"] = 0
        cfg = dummy.small_config(tmp_path / f"m{minutes}", steps=10, checkpoint_minutes=minutes)
        with pytest.raises(RuntimeError, match="power cut"):
            Trainer.from_config(dummy.GaussianModel(), dummy.DictDataset(40), cfg, objective=crashing).fit()
        path = cfg.out_path() / "last.pt"
        assert (load_checkpoint(path)["step"] if path.exists() else None) == expect


PLUGIN = """
    import os, time
    import dummy_experiment
    from mhe.objectives import OBJECTIVES

    dummy_experiment.register()

    def slow(model, batch, **kw):
        time.sleep(float(os.environ.get("SLOW_STEP", "0")))
        return dummy_experiment.reverse_kl(model, batch, **kw)

    OBJECTIVES["dummy"] = slow
"""


RUN = ["train.steps=40", "train.log_every=1"]
TRAIN = ["-m", "mhe.lab.cli", "--plugin", "slow_plugin", "train", "--no-progress", *RUN]


def _train_env(folder: Path) -> dict[str, str]:
    """The environment of an ``mhe train`` run with the slow plugin (written to ``folder``)."""
    (folder / "slow_plugin.py").write_text(textwrap.dedent(PLUGIN))
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder), str(TESTS), str(ROOT)]), OMP_NUM_THREADS="1")


def _config(folder: Path, name: str) -> str:
    path = folder / f"{name}.yaml"
    dump_config(dummy.small_config(folder / name), path)
    return str(path)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory) -> Path:
    """The final weights of ``mhe train`` run straight through its 40 steps, the same for every signal: run once,
    in this process, through the console script's entry point (the plugin's objective without its sleep)."""
    from mhe.objectives import OBJECTIVES

    folder = tmp_path_factory.mktemp("straight")
    dummy.register()
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(OBJECTIVES, "dummy", dummy.reverse_kl)
        assert main(["train", "--no-progress", "--config", _config(folder, "straight"), *RUN]) == 0
    return folder / "straight" / "run" / "last.pt"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_a_running_mhe_train_saves_and_resumes_to_the_same_parameters(sig, tmp_path, straight_run):
    env = _train_env(tmp_path)
    cmd = [sys.executable, *TRAIN]
    proc = subprocess.Popen([*cmd, "--config", _config(tmp_path, "cut")], env=dict(env, SLOW_STEP="0.1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "cut" / "run" / "train_log.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not log.exists() or log.read_text().count("\n") < 4):
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-2000:]
    assert "Traceback" not in err and f"{signal.Signals(sig).name} at step" in err and "--resume" in err
    step = load_checkpoint(tmp_path / "cut" / "run" / "last.pt")["step"]
    assert 3 <= step < 40

    resumed = subprocess.run([*cmd, "--config", str(tmp_path / "cut" / "run" / "config.yaml"), "--resume"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = load_checkpoint(straight_run)["model"]
    b = load_checkpoint(tmp_path / "cut" / "run" / "last.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "cut" / "run" / "log.jsonl").read_text().splitlines()[-1])["step"] == 40


def test_messages_show_paths_inside_the_repository_relative_to_it(tmp_path):
    """Cache paths in messages and notebook outputs read the same on every machine (data/cache/...)."""
    from mhe.utils import REPO_ROOT, display_path

    assert display_path(REPO_ROOT / "data" / "cache" / "x.pt") == str(Path("data") / "cache" / "x.pt")
    outside = tmp_path / "y.pt"
    assert display_path(outside) == str(outside)
