"""What keeps the notebooks' smoke runs cheap, and changes no result: the narrow smoke models of
``load_or_train(smoke=True)``, model files read once per version, and one mean camera per training split."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch

from mhe.body import build_standin_mano, files, load_mano, load_smpl, read_model_file
from mhe.lab import builders
from mhe.lab.config_io import load_config
from mhe.lab.experiments import SHIPPED, SMOKE_SETTINGS


@pytest.mark.parametrize("body", sorted(SHIPPED))
def test_every_shipped_config_takes_the_smoke_settings_and_builds_narrow(body):
    """The smoke settings apply to every shipped model (keypoint, image and body encoders alike) and leave
    its architecture: the same encoder, pose space and flow kind, with far fewer parameters."""
    for name in SHIPPED[body]:
        full, smoke = load_config(f"{body}_{name}"), load_config(f"{body}_{name}", list(SMOKE_SETTINGS))
        for key in ("body", "encoder", "pose_repr", "flow_kind", "rotation_in_flow", "flip_mixture", "pose_prior"):
            assert getattr(smoke.model, key) == getattr(full.model, key), (name, key)
        assert smoke.train.steps == 4 and smoke.data.train_size == 32 and smoke.model.flow_transforms == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        name = SHIPPED[body][0]
        sizes = [sum(p.numel() for p in builders.build_model(load_config(f"{body}_{name}", extra)).parameters())
                 for extra in ([], list(SMOKE_SETTINGS))]
    assert sizes[1] < sizes[0] / 10, sizes


def _count_reads(monkeypatch):
    reads = []
    original = files._read_model_file
    monkeypatch.setattr(files, "_read_model_file", lambda path: reads.append(path) or original(path))
    return reads


def test_a_model_file_is_read_once_per_version_and_its_reader_gets_its_own_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_RACY_NS", 0)  # a file just written counts as settled
    reads = _count_reads(monkeypatch)
    path = tmp_path / "MANO_RIGHT.pkl"
    data = build_standin_mano("right")
    path.write_bytes(pickle.dumps(data, protocol=4))
    first = read_model_file(path)
    first["v_template"][:] = 0.0  # the caller's arrays are its own
    again = read_model_file(path)
    assert len(reads) == 1
    np.testing.assert_array_equal(again["v_template"], data["v_template"])
    assert files.file_md5(path) == files.file_md5(path)
    # another version of the file (other content and size) is read anew, and so is its MD5
    data["v_template"] = data["v_template"][:-1]
    path.write_bytes(pickle.dumps(data, protocol=4))
    assert read_model_file(path)["v_template"].shape == (777, 3) and len(reads) == 2
    import hashlib

    assert files.file_md5(path) == hashlib.md5(path.read_bytes()).hexdigest()


def test_a_file_changed_within_the_last_second_is_not_kept(tmp_path, monkeypatch):
    """Its size and times could stay the same through a rewrite in the same clock tick: read it every time."""
    reads = _count_reads(monkeypatch)
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(pickle.dumps(build_standin_mano("right"), protocol=4))
    read_model_file(path)
    read_model_file(path)
    assert len(reads) == 2 and files.file_version(path) is None


def test_body_models_loaded_from_kept_files_are_bit_identical(monkeypatch):
    """load_smpl / load_mano through the kept reads give the buffers of a fresh read, bit for bit."""
    def buffers(model):
        return {k: v.clone() for k, v in model.named_buffers()}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_smpl(), load_mano()  # reads (and keeps, once the stand-ins are settled) both files
        kept = buffers(load_smpl()), buffers(load_mano())
        monkeypatch.setattr(files, "_READ", {})
        monkeypatch.setattr(files, "_MD5", {})
        fresh = buffers(load_smpl()), buffers(load_mano())
    for a, b in zip(kept, fresh, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_the_mean_camera_is_computed_once_per_split_and_is_the_same(monkeypatch):
    from mhe.data import SyntheticHands

    monkeypatch.setattr(builders, "_MEAN_CAMERAS", {})
    generated = []
    original = SyntheticHands.generate
    monkeypatch.setattr(SyntheticHands, "generate", lambda self, i: generated.append(i) or original(self, i))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = builders.mean_camera(SyntheticHands("train", size=6, seed=5), n=4)
        again = builders.mean_camera(SyntheticHands("train", size=6, seed=5), n=4)
        other = builders.mean_camera(SyntheticHands("train", size=6, seed=6), n=4)
    assert len(generated) == 2 * 5  # per split, once: item 0 (has it a camera?), then items 0-3
    assert first == again and first != other
    cams = torch.stack([original(SyntheticHands("train", size=6, seed=5), i)["camera"] for i in range(4)])
    assert first == tuple(float(x) for x in cams.mean(0))  # bit for bit what the items give
