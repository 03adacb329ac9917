"""Issue 27: every setting applies or is refused, nothing is clobbered, distributed start-up fails fast,
and the messages say what to do. Each refusal is one line with exit status 2 (or a clear exception from
the library call), checked before any work where the input allows it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dummy_experiment as dummy
import pytest
import torch
from test_user_errors import one_line_error

from mhe.errors import DistributedSetupError
from mhe.lab.checkpoint import SHIPPED_DIR, load_checkpoint
from mhe.lab.cli import main

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


@pytest.fixture
def no_work(monkeypatch):
    """Evaluation, mesh export and training fail the test if they start."""
    import mhe.lab.experiments

    for name in ("evaluate_checkpoint", "export_checkpoint_meshes", "train_experiment"):
        monkeypatch.setattr(mhe.lab.experiments, name, lambda *a, **k: pytest.fail("work started"))


@pytest.fixture
def dummy_run(registered, config_file, tmp_path, capsys):
    """A finished 10-step run of the dummy experiment: its last.pt."""
    assert main(["train", "--config", str(config_file), "train.epochs=2", "--no-progress"]) == 0
    capsys.readouterr()
    return tmp_path / "run" / "last.pt"


@pytest.fixture(scope="module")
def prohmr_val_only(tmp_path_factory):
    """A ProHMR-format folder holding only val.npz (3 bodies)."""
    from mhe.data.prohmr import write_prohmr_npz

    root = tmp_path_factory.mktemp("prohmr_val_only")
    write_prohmr_npz(root / "val.npz", 3, seed=0)
    return root


# -- every setting applies or is refused -----------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        # the flip temperature scales the depth-flip mixture's weight: models without it would ignore it
        (["--checkpoint", "body_mhentropy", "model.flip_temperature=0.01"], "model.flip_mixture is false"),
        (["--checkpoint", "hand_mhentropy", "model.flip_temperature=50"], "would change nothing"),
        (["--checkpoint", "hand_mhentropy", "model.flip_temperature=1"], "this model has none"),
        # data keys only the generated hands read
        (["--checkpoint", "body_mhentropy", "data.rotation=ho3d"],
         "data.rotation is not read by data.dataset=synthetic-bodies"),
        (["--checkpoint", "body_mhentropy", "data.visibility=official"], "(it is a setting of synthetic-hands)"),
        (["--checkpoint", "hand_mhentropy", "data.truncation=0.5"], "data.truncation is not read"),
        # a folder for a generated dataset would be ignored: say which dataset it holds
        (["--checkpoint", "body_mhentropy", "--root", "/some/folder"], "--data prohmr"),
        (["--checkpoint", "hand_mhentropy", "--root", "/some/folder"], "--data ho3d"),
    ],
)
def test_settings_that_cannot_apply_are_refused(argv, message, capsys):
    err = one_line_error(capsys, main(["evaluate", *argv, "--max-items", "1", "--samples", "1", "--device", "cpu"]))
    assert message in err


def test_training_overrides_the_dataset_does_not_read_are_refused(capsys):
    err = one_line_error(capsys, main(["train", "--config", "body_mhentropy", "data.rotation=ho3d", "--print-config"]))
    assert "data.rotation is not read by data.dataset=synthetic-bodies" in err and "drop it" in err
    err = one_line_error(capsys, main(["train", "--config", "hand_mhentropy", "model.flip_temperature=2",
                                       "--print-config"]))
    assert "model.flip_mixture=true" in err
    # a setting the dataset reads passes
    assert main(["train", "--config", "body_mhentropy", "data.truncation=0.1", "--print-config"]) == 0
    assert "truncation: 0.1" in capsys.readouterr().out


def test_a_split_the_folder_lacks_is_refused_with_what_to_add(prohmr_val_only, tmp_path, capsys):
    base = ["evaluate", "--checkpoint", "body_mhentropy", "--data", "prohmr", "--samples", "1", "--device", "cpu"]
    # before: the test split fell back to val.npz and was printed as "test split"
    err = one_line_error(capsys, main([*base, "--root", str(prohmr_val_only), "--split", "test"]))
    assert "holds no test.npz" in err and "add test.npz there" in err and "--split val" in err
    assert main([*base, "--root", str(prohmr_val_only), "--split", "val"]) == 0
    assert "val split" in capsys.readouterr().out
    only_test = tmp_path / "only_test"
    only_test.mkdir()
    os.symlink(prohmr_val_only / "val.npz", only_test / "test.npz")
    err = one_line_error(capsys, main([*base, "--root", str(only_test), "--split", "val"]))
    assert "add val.npz there" in err
    err = one_line_error(capsys, main([*base, "--root", str(tmp_path / "nowhere")]))
    assert "no such folder" in err and "train.npz, val.npz and/or test.npz" in err
    (tmp_path / "empty").mkdir()
    err = one_line_error(capsys, main([*base, "--root", str(tmp_path / "empty")]))
    assert "holds no split of a prohmr dataset" in err and "it holds: nothing" in err
    with pytest.raises(SystemExit):  # checked by the argument parser
        main(["evaluate", "--checkpoint", "body_mhentropy", "--data", "prohmr"])
    assert "--data prohmr needs --root <folder of the dataset> (the folder holding train.npz" in capsys.readouterr().err


def test_a_hand_checkpoint_on_body_files_says_what_would_work(prohmr_val_only, capsys):
    err = one_line_error(capsys, main(["evaluate", "--checkpoint", "hand_mhentropy", "--data", "prohmr", "--root",
                                       str(prohmr_val_only), "--split", "val", "--device", "cpu"]))
    assert "holds bodies, but this is a hand model" in err and "use a body checkpoint" in err
    assert "bodys" not in err and "set model.body" not in err  # evaluate refuses model.* overrides


def test_the_header_says_what_was_skipped_and_where(monkeypatch, capsys):
    import mhe.lab.experiments

    result = {"checkpoint": "ck.pt", "dataset": "prohmr", "input": "visible 2D keypoints", "root": "/data/h36m",
              "split": "test", "num_samples": 25, "temperature": 0.8, "batch_size": 50, "seed": 0,
              "data_overrides": [], "data_seed": None, "step": 7, "items": 5, "skipped_items": 3,
              "metrics": {"mpjpe_bh": 12.5}}
    monkeypatch.setattr(mhe.lab.experiments, "evaluate_checkpoint", lambda *a, **k: result)
    assert main(["evaluate", "--checkpoint", "ck.pt"]) == 0
    out = capsys.readouterr().out
    assert "on prohmr at /data/h36m, test split: 5 items (3 more skipped: nothing usable in them)" in out


def test_skipped_items_looks_through_subsets():
    from torch.utils.data import Subset

    from mhe.lab.builders import skipped_items

    class Reader(dummy.DictDataset):
        skipped_items = 4

    assert skipped_items(Subset(Subset(Reader(6), range(4)), range(2))) == 4
    assert skipped_items(dummy.DictDataset(3)) == 0


# -- nothing is clobbered ----------------------------------------------------------------------------


def test_json_output_is_never_clobbered(tmp_path, capsys, no_work):
    base = ["evaluate", "--checkpoint", "hand_mhentropy", "--device", "cpu"]
    existing = tmp_path / "m.json"
    existing.write_text("keep me")
    err = one_line_error(capsys, main([*base, "--json", str(existing)]))
    assert "already exists; pass --overwrite" in err and existing.read_text() == "keep me"
    link = tmp_path / "link.json"
    link.symlink_to(existing)
    for extra in ([], ["--overwrite"]):  # a link (like /dev/stdout) is never replaced
        err = one_line_error(capsys, main([*base, "--json", str(link), *extra]))
        assert "is a link" in err and "- for standard output" in err and link.is_symlink()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    err = one_line_error(capsys, main([*base, "--json", str(fifo), "--overwrite"]))
    assert "not a regular file" in err
    err = one_line_error(capsys, main([*base, "--json", ""]))
    assert "--json is empty" in err
    err = one_line_error(capsys, main([*base, "--json", str(existing / "sub.json")]))
    assert "is a file, not a folder" in err
    err = one_line_error(capsys, main([*base, "--json", str(tmp_path)]))
    assert "is a folder" in err


def test_json_to_stdout_and_overwrite(dummy_run, tmp_path, capsys):
    argv = ["evaluate", "--checkpoint", str(dummy_run), "--samples", "4", "--max-items", "6"]
    assert main([*argv, "--json", "-"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # standard output holds the JSON alone; the table went to stderr
    assert result["items"] == 6 and "mean_err" in captured.err
    out = tmp_path / "m.json"
    out.write_text("old")
    assert main([*argv, "--json", str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text()) == result


def test_mesh_output_is_checked_before_sampling(tmp_path, capsys, no_work):
    base = ["meshes", "--checkpoint", "hand_mhentropy", "--device", "cpu"]
    existing = tmp_path / "hand.obj"
    existing.write_text("keep me")
    err = one_line_error(capsys, main([*base, "--out", str(existing)]))
    assert "already exists; pass --overwrite" in err and existing.read_text() == "keep me"
    (tmp_path / "folder.ply").mkdir()
    assert "is a folder" in one_line_error(capsys, main([*base, "--out", str(tmp_path / "folder.ply")]))
    err = one_line_error(capsys, main([*base, "--out", str(existing / "x.ply")]))
    assert "is a file, not a folder" in err
    assert "give a file ending in .ply" in one_line_error(capsys, main([*base, "--out", str(tmp_path / "a.stl")]))


def test_exported_checkpoints_are_not_replaced_without_overwrite(dummy_run, tmp_path):
    from mhe.lab.experiments import export_checkpoint, export_checkpoint_meshes

    dst = tmp_path / "shipped.pt"
    export_checkpoint(dummy_run, dst)
    before = dst.read_bytes()
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        export_checkpoint(dummy_run, dst, name="renamed")
    assert dst.read_bytes() == before
    export_checkpoint(dummy_run, dst, name="renamed", overwrite=True)
    assert load_checkpoint(dst)["config"]["name"] == "renamed"
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_checkpoint_meshes("hand_mhentropy", _touch(tmp_path / "m.ply"))


def _touch(path: Path) -> Path:
    path.write_text("x")
    return path


def test_a_resume_that_would_shorten_the_run_is_refused(dummy_run, config_file, capsys):
    run = dummy_run.parent
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    err = one_line_error(capsys, main(["train", "--config", str(config_file), "train.steps=3", "--resume"]))
    assert "is at step 10, past the end of this config's run (train.steps=3)" in err
    assert "train.steps of at least 10" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # config.yaml, logs intact
    # as long as the run, or longer: fine
    assert main(["train", "--config", str(config_file), "train.steps=12", "--resume", "--no-progress"]) == 0
    assert load_checkpoint(dummy_run)["step"] == 12


def test_load_or_train_with_overrides_never_touches_the_package_or_a_run(tmp_path, monkeypatch):
    import mhe.lab.experiments

    monkeypatch.setenv("MHE_DATA", str(tmp_path / "data"))
    calls = []

    class Stop(Exception):
        pass

    def fake_train(cfg, resume=False, overwrite=False, dist=None):
        calls.append((cfg.out_path(), resume, overwrite))
        raise Stop

    monkeypatch.setattr(mhe.lab.experiments, "train_experiment", fake_train)
    for _ in range(2):
        with pytest.raises(Stop):
            mhe.lab.experiments.load_or_train("mhentropy", overrides=["train.steps=3"], progress=False)
    out, resume, overwrite = calls[0]
    assert out == tmp_path / "data" / "runs" / "mhentropy" and not resume and not overwrite
    assert SHIPPED_DIR not in out.parents
    (out).mkdir(parents=True)
    (out / "last.pt").write_bytes(b"a run")
    with pytest.raises(Stop):
        mhe.lab.experiments.load_or_train("mhentropy", overrides=["train.steps=3"], progress=False)
    assert calls[-1][1:] == (True, False)  # continued, never overwritten
    with pytest.raises(TypeError, match="not a single string"):
        mhe.lab.experiments.load_or_train("mhentropy", overrides="train.steps=3")


def test_smoke_runs_leave_no_temporary_folder(tmp_path, monkeypatch):
    import tempfile

    from mhe.lab.experiments import load_or_train

    monkeypatch.setenv("MHE_DATA", str(tmp_path / "data"))
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    small = ["model.context_dim=8", "model.encoder_hidden=[8]", "model.flow_transforms=1", "model.flow_hidden=[8]",
             "model.head_hidden=8"]
    model, cfg = load_or_train("mhentropy", smoke=True, overrides=small, progress=False, device="cpu")
    assert cfg.train.steps == 4 and sum(p.numel() for p in model.parameters()) > 0
    assert list(temp.iterdir()) == []


# -- distributed start-up --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env, message",
    [
        ({"WORLD_SIZE": "2"}, "MASTER_ADDR, MASTER_PORT, RANK are not set"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),
        ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}, "ranks are 0 to 1"),
        ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "port"}, "MASTER_PORT='port'"),
        ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "x", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "LOCAL_RANK="),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0 must be at least 1"),
        ({"WORLD_SIZE": "2", "RANK": "-1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"},
         "RANK=-1 must be at least 0"),
        ({"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "no-such-host.invalid", "MASTER_PORT": "29500"},
         "MASTER_ADDR='no-such-host.invalid' cannot be resolved"),
        ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500",
          "MHE_DIST_TIMEOUT": "abc"},
         "MHE_DIST_TIMEOUT='abc' is not a number of seconds"),
    ],
)
def test_a_malformed_rendezvous_is_one_line(env, message, registered, config_file, monkeypatch, capsys):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "MHE_DIST_TIMEOUT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    err = one_line_error(capsys, main(["train", "--config", str(config_file), "--no-progress"]))
    assert message in err


WAIT = """
import mhe.lab.distributed as d
d.NOTICE_AFTER_S = 0.2
d.init_distributed("cpu")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.xdist_group("ddp")  # its free ports are picked on the DDP tests' worker, never at the same moment
def test_waiting_for_peers_says_what_it_waits_for_times_out_and_stops_on_ctrl_c():
    def start(timeout: str) -> subprocess.Popen:
        env = dict(os.environ, WORLD_SIZE="2", RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
                   MHE_DIST_TIMEOUT=timeout, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
        # SIGINT as a terminal delivers it: a suite started in the background by a shell without job control
        # inherits SIGINT ignored, and an ignored signal stays ignored in the children
        return subprocess.Popen([sys.executable, "-c", textwrap.dedent(WAIT)], env=env, stderr=subprocess.PIPE,
                                text=True, cwd=ROOT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    timing_out, interrupted = start("2"), start("600")
    # the second one: Ctrl-C once it says it is waiting
    line = ""
    while "waiting" not in line:
        line = interrupted.stderr.readline()
        assert line, "the waiting process ended without saying what it waits for"
    assert "waiting for the 2 processes (WORLD_SIZE=2) to meet at 127.0.0.1:" in line and "Ctrl-C" in line
    sent = time.monotonic()
    interrupted.send_signal(signal.SIGINT)
    interrupted.communicate(timeout=60)
    assert interrupted.returncode != 0 and time.monotonic() - sent < 30
    _, err = timing_out.communicate(timeout=120)
    assert timing_out.returncode == 1 and "DistributedSetupError: gave up after 2 s waiting for the 2 processes" in err


def test_the_setup_error_is_a_user_error():
    from mhe.errors import UserError

    assert issubclass(DistributedSetupError, UserError) and issubclass(DistributedSetupError, RuntimeError)


# -- messages and API arguments --------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["meshes", "--checkpoint", "x", "--out", "a.ply", "--data-s", "3"], "unrecognized arguments: --data-s 3"),
        (["evaluate", "--checkpoint", "x", "--temp", "0.5"], "unrecognized arguments: --temp"),
        (["train", "--conf", "hand_mhentropy"], "--config"),
    ],
)
def test_options_are_never_abbreviated(argv, message, capsys, no_work):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_meshes_takes_data_and_root_as_options(capsys, no_work):
    # `--data prohmr` was taken for --data-seed; now it is the dataset, and needs its folder
    with pytest.raises(SystemExit):
        main(["meshes", "--checkpoint", "body_mhentropy", "--out", "b.ply", "--data", "prohmr"])
    assert "--data prohmr needs --root" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"data_overrides": "data.occlusion=0.5"}, TypeError, "not a single string"),
        ({"data_overrides": [0.5]}, TypeError, "0.5 is a float"),
        ({"temperature": "0.8"}, TypeError, "temperature must be a number, e.g. 0.8, got str"),
        ({"num_samples": 2.5}, TypeError, "num_samples must be an int"),
        ({"batch_size": 0}, ValueError, "batch_size must be at least 1"),
        ({"data_seed": "1"}, TypeError, "data_seed must be a non-negative int"),
    ],
)
def test_library_arguments_are_checked_for_type(kwargs, error, message):
    from mhe.lab.experiments import evaluate_checkpoint

    with pytest.raises(error, match=message):
        evaluate_checkpoint("hand_mhentropy", **kwargs)


def test_config_overrides_must_be_a_list():
    from mhe.lab.config_io import load_config

    with pytest.raises(TypeError, match="not a single string"):
        load_config("hand_mhentropy", "train.lr=1e-3")


def test_partial_init_says_what_it_copied_even_without_progress(tmp_path, capsys):
    tiny = ["model.context_dim=8", "model.encoder_hidden=[8]", "model.flow_transforms=1", "model.flow_hidden=[8]",
            "model.head_hidden=8", "train.steps=1", "data.train_size=4", "data.val_size=2", "data.test_size=2",
            "train.batch_size=4", "train.eval_every=0", "--no-progress", "--device", "cpu"]
    assert main(["train", "--config", "hand_mhentropy", f"train.out_dir={tmp_path / 'hand'}", *tiny]) == 0
    capsys.readouterr()
    hand = tmp_path / "hand" / "last.pt"
    assert main(["train", "--config", "body_mhentropy", f"train.out_dir={tmp_path / 'body'}", f"train.init_from={hand}",
                 "train.init_partial=true", *tiny]) == 0
    out = capsys.readouterr().out
    total = len(load_checkpoint(tmp_path / "body" / "last.pt")["model"])
    line = next(x for x in out.splitlines() if x.startswith("[mhe] initialised"))
    copied = int(line.split()[2])
    assert 0 < copied < total and f"of {total} tensors from {hand}" in line
    assert f"{total - copied} keep their fresh initialisation: " in line
    # a checkpoint with nothing in common is refused, not silently "used"
    other = dummy.GaussianModel()
    from mhe.lab.checkpoint import save_checkpoint

    gauss = save_checkpoint(tmp_path / "gauss.pt", model=other, config={"name": "g"})
    err = one_line_error(capsys, main(["train", "--config", "hand_mhentropy", f"train.out_dir={tmp_path / 'h2'}",
                                       f"train.init_from={gauss}", "train.init_partial=true", *tiny]))
    assert "none of this model's" in err and "nothing would be copied" in err
    assert torch.is_tensor(next(iter(load_checkpoint(hand)["model"].values())))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data-seed", "4", "data.data_seed=3"], "--data-seed 4 and data.data_seed=3 both set data.data_seed"),
        (["--data", "synthetic-hands", "data.dataset=synthetic-bodies"], "both set data.dataset: give it once"),
        (["--root", "/a", "data.root=/b"], "--root /a and data.root=/b"),
    ],
)
def test_a_setting_given_twice_is_refused_not_silently_resolved(argv, message, capsys):
    err = one_line_error(capsys, main(["evaluate", "--checkpoint", "hand_deterministic", *argv, "--device", "cpu"]))
    assert message in err


def test_settings_no_model_or_dataset_would_use_are_refused(capsys, tmp_path, prohmr_val_only):
    common = ["--print-config", "--device", "cpu"]
    err = one_line_error(capsys, main(["train", "--config", "hand_mhentropy", "model.encoder=cnn", *common]))
    assert "set data.images=true" in err  # before: a KeyError at the first batch
    err = one_line_error(capsys, main(["train", "--config", "hand_mhentropy", "data.images=true", *common]))
    assert "nothing would read them" in err  # before: crops rendered for nobody
    err = one_line_error(capsys, main(["train", "--config", "hand_mhentropy", "name=", *common]))
    assert "name is empty" in err
    afile = tmp_path / "afile"
    afile.write_text("x")
    err = one_line_error(capsys, main(["train", "--config", "hand_mhentropy", f"train.out_dir={afile}", "train.steps=1",
                                       "data.train_size=4", "data.val_size=2", "data.test_size=2", "--no-progress",
                                       "--device", "cpu"]))
    assert "is a file, not a folder; choose another train.out_dir" in err  # before: [Errno 17]
    err = one_line_error(capsys, main(["train", "--config", "body_mhentropy", "data.dataset=prohmr",
                                       f"data.root={prohmr_val_only}", f"train.out_dir={tmp_path / 'r'}",
                                       "--no-progress", "--device", "cpu"]))
    assert "holds no train.npz, so there is no train split: add train.npz there" in err  # before: raw ValueError
    assert "--split" not in err


def test_shipped_checkpoints_stay_reachable_with_a_data_folder(monkeypatch, tmp_path):
    from mhe.lab.checkpoint import resolve_checkpoint_path

    monkeypatch.setenv("MHE_DATA", str(tmp_path))  # its checkpoints/ is empty: the package's are found
    assert resolve_checkpoint_path("hand_mhentropy") == SHIPPED_DIR / "hand_mhentropy.pt"
    (tmp_path / "checkpoints").mkdir()
    mine = tmp_path / "checkpoints" / "hand_mhentropy.pt"
    mine.write_bytes((SHIPPED_DIR / "hand_mhentropy.pt").read_bytes())
    assert resolve_checkpoint_path("hand_mhentropy") == mine  # $MHE_DATA's first


def test_plugin_files_and_config_folders_get_a_usable_message(tmp_path, capsys):
    err = one_line_error(capsys, main(["--plugin", "my_plugin.py", "info"]))
    assert "give a module name (--plugin my_plugin), not a file" in err  # before: No module named 'my_plugin'
    (tmp_path / "cfg.yaml").mkdir()
    err = one_line_error(capsys, main(["train", "--config", str(tmp_path / "cfg.yaml")]))
    assert "is a folder; give a YAML file" in err  # before: [Errno 21] Is a directory


def test_meshes_of_a_split_the_folder_lacks(prohmr_val_only, tmp_path, capsys):
    out = tmp_path / "b.ply"
    err = one_line_error(capsys, main(["meshes", "--checkpoint", "body_mhentropy", "--data", "prohmr", "--root",
                                       str(prohmr_val_only), "--out", str(out), "--device", "cpu"]))
    assert "holds no test.npz" in err and "or use --split val" in err and not out.exists()


def test_items_a_reader_skips_are_counted_in_the_headers(tmp_path, capsys):
    """A ProHMR file with one person whose 2D keypoints all have confidence 0: the reader skips it, and
    `mhe evaluate` / `mhe train` say so (helper datasets expose `skipped_items`)."""
    import numpy as np

    from mhe.data.prohmr import write_prohmr_npz

    root = tmp_path / "h36m"
    root.mkdir()
    write_prohmr_npz(root / "val.npz", 4, seed=3)
    with np.load(root / "val.npz") as f:
        data = dict(f)
    for key in ("body_keypoints_2d", "extra_keypoints_2d"):
        data[key][1, :, 2] = 0.0  # nothing known about person 1 in 2D
    np.savez(root / "val.npz", **data)
    os.symlink(root / "val.npz", root / "train.npz")
    out = tmp_path / "m.json"
    assert main(["evaluate", "--checkpoint", "body_mhentropy", "--data", "prohmr", "--root", str(root), "--split",
                 "val", "--samples", "2", "--device", "cpu", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"on prohmr at {root}, val split: 3 items (1 more skipped: nothing usable in them)" in printed
    assert json.loads(out.read_text())["skipped_items"] == 1
    assert main(["train", "--config", "body_mhentropy", "data.dataset=prohmr", f"data.root={root}", "train.steps=1",
                 "train.batch_size=4", "train.eval_every=0", f"train.out_dir={tmp_path / 'run'}", "--no-progress",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "[mhe] prohmr train split: 1 item skipped (nothing usable in them); 3 used" in printed


def test_an_override_given_twice_is_refused(capsys):
    err = one_line_error(capsys, main(["train", "--config", "hand_mhentropy", "train.steps=5", "train.steps=6",
                                       "--print-config"]))
    assert "train.steps is given twice (train.steps=5 and train.steps=6): give it once" in err
    err = one_line_error(capsys, main(["evaluate", "--checkpoint", "hand_deterministic", "data.occlusion=0.1",
                                       "data.occlusion=0.2", "--device", "cpu"]))
    assert "data.occlusion is given twice" in err
    assert main(["train", "--config", "hand_mhentropy", "train.steps=5", "train.steps=5", "--print-config"]) == 0


def test_smoke_defaults_do_not_override_the_callers_settings(tmp_path, monkeypatch):
    import mhe.lab.experiments

    seen = []

    class Stop(Exception):
        pass

    def fake_train(cfg, resume=False, overwrite=False, dist=None):
        seen.append(cfg)
        raise Stop

    monkeypatch.setattr(mhe.lab.experiments, "train_experiment", fake_train)
    with pytest.raises(Stop):
        mhe.lab.experiments.load_or_train("mhentropy", smoke=True, overrides=["train.steps=7"], progress=False)
    assert seen[0].train.steps == 7 and seen[0].data.train_size == 32  # before: the smoke run's 4 steps won
