"""The hand models that read pixels: their configs, the cached crops they train on, what the network may
read (the image only), a training step on the CPU, and the CUDA checks the GPU script runs."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mhe.lab.builders import build_model
from mhe.lab.config_io import config_to_dict, load_config
from mhe.lab.experiments import HAND_IMAGE_MODELS, HAND_VARIANTS, SHIPPED
from mhe.models.encoders import CNNEncoder, encode

REPO = Path(__file__).resolve().parent.parent
IMAGE_CONFIGS = {"mhentropy_image": "mhentropy", "nll_image": "nll", "deterministic_image": "deterministic"}
# a small model of the image configs' kind, cheap enough for a unit test
SMALL = ["model.context_dim=16", "model.flow_transforms=2", "model.flow_hidden=[16]", "model.head_hidden=16",
         "model.image_size=32", "model.cnn_channels=[8,8]"]


def _torchvision_ok() -> bool:
    try:
        import torchvision.models  # noqa: F401
    except Exception:
        return False
    return True


@pytest.fixture(scope="module")
def crops(mano, tmp_path_factory):
    """Six cached 32 px training crops (a fresh cache folder) and the same hands without images."""
    from mhe.data import SyntheticHands

    cache = tmp_path_factory.mktemp("crops")
    images = SyntheticHands("train", size=6, occlusion=0.4, images=True, image_size=32, mano=mano,
                            cache_dir=cache, progress=False)
    return images, cache


def _batch(dataset, n=None):
    items = [dataset[i] for i in range(n or len(dataset))]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


# ---------------------------------------------------------------------------------------------------
# configs


@pytest.mark.parametrize("name", list(IMAGE_CONFIGS))
def test_image_configs_change_only_the_input(name):
    """Each image config is its keypoint counterpart with a CNN on 64 px crops in place of the keypoint
    encoder: the objective, flow, head, prior, data and optimisation settings are the same."""
    img = config_to_dict(load_config(f"hand_{name}"))
    ref = config_to_dict(load_config(f"hand_{IMAGE_CONFIGS[name]}"))
    assert img["name"] == f"hand_{name}"
    assert img["objective"] == ref["objective"]
    assert img["model"]["encoder"] == "cnn" and img["model"]["image_size"] == 64
    assert img["data"]["images"] is True
    input_keys = {"encoder", "image_size", "encoder_hidden", "cnn_channels"}
    assert {k: v for k, v in img["model"].items() if k not in input_keys} == \
        {k: v for k, v in ref["model"].items() if k not in input_keys}
    assert {k: v for k, v in img["data"].items() if k != "images"} == \
        {k: v for k, v in ref["data"].items() if k != "images"}
    assert {k: v for k, v in img["train"].items() if k != "steps"} == \
        {k: v for k, v in ref["train"].items() if k != "steps"}


@pytest.mark.parametrize("name", list(IMAGE_CONFIGS))
def test_image_configs_build_a_model_that_reads_the_image_only(name):
    cfg = load_config(f"hand_{name}")
    model = build_model(cfg)
    assert isinstance(model.encoder, CNNEncoder) and model.encoder.input_keys == ("image",)
    assert model.encoder.image_size == 64
    assert model.deterministic == (name == "deterministic_image")


def test_image_models_are_registered_apart_from_the_keypoint_variants():
    assert set(HAND_IMAGE_MODELS) == set(IMAGE_CONFIGS)
    assert set(HAND_IMAGE_MODELS) <= set(SHIPPED["hand"])
    assert not set(HAND_IMAGE_MODELS) & set(HAND_VARIANTS)  # the notebooks' keypoint tables loop over those


def test_tables_say_what_each_model_reads():
    from mhe.lab.builders import input_label

    assert input_label(load_config("hand_mhentropy_image")) == "image (64 px crop)"
    assert input_label(load_config("hand_mhentropy_image", ["model.image_size=32"])) == "image (32 px crop)"
    assert input_label(load_config("hand_mhentropy")) == "visible 2D keypoints"


def test_load_or_train_knows_the_image_models():
    from mhe.lab.experiments import load_or_train

    model, cfg = load_or_train("mhentropy_image", smoke=True, overrides=SMALL, progress=False, device="cpu")
    assert cfg.name == "hand_mhentropy_image" and cfg.data.images and isinstance(model.encoder, CNNEncoder)


def test_gpu_config_loads_and_builds():
    cfg = load_config("hand_mhentropy_image_gpu")
    m, t = cfg.model, cfg.train
    assert m.encoder == "resnet" and m.resnet_depth in (18, 50) and 128 <= m.image_size <= 256
    assert t.batch_size == 64 and t.num_samples == 10 and cfg.data.images
    assert config_to_dict(cfg)["objective"] == config_to_dict(load_config("hand_mhentropy"))["objective"]
    if _torchvision_ok():
        model = build_model(cfg)
        assert model.encoder.input_keys == ("image",)
    else:  # PyPI's torchvision does not load against the CPU torch wheel pinned here: a clear error
        with pytest.raises(ImportError, match=r"pip install torchvision"):
            build_model(cfg)
    # with the CNN in place of the ResNet the rest of the GPU model builds anywhere
    small = load_config("hand_mhentropy_image_gpu", ["model.encoder=cnn", "model.cnn_channels=[8,8,8]"])
    assert build_model(small).encoder.image_size == 128


# ---------------------------------------------------------------------------------------------------
# the data path


def test_crops_are_cached_on_disk_and_equal_the_one_by_one_renders(crops, mano):
    from mhe.data import SyntheticHands

    images, cache = crops
    batch = _batch(images)
    files = list(cache.glob("synthetic_hands_train_*img32*.pt"))
    assert len(files) == 1
    stored = torch.load(files[0], weights_only=True)
    assert stored["image"].shape == (6, 3, 32, 32) and stored["image"].dtype == torch.float32
    assert 0 <= stored["image"].min() and stored["image"].max() <= 1
    # a second dataset reads the file instead of rendering (the crops are the stored ones)
    again = SyntheticHands("train", size=6, occlusion=0.4, images=True, image_size=32, mano=mano,
                           cache_dir=cache, progress=False)
    torch.testing.assert_close(_batch(again)["image"], stored["image"], rtol=0, atol=0)
    # the reference: each item rendered on its own by generate()
    for i in range(6):
        one = images.generate(i)
        assert torch.equal(one["visible"], batch["visible"][i])
        diff = (one["image"] - batch["image"][i]).abs()
        assert diff.mean() < 2e-3 and (diff > 0.05).float().mean() < 0.01  # float rounding at a few edges


def test_64px_crops_keep_the_keypoint_benchmarks_hands_and_visibility(mano):
    """At 64 px the self-occlusion raster is the keypoint benchmark's, so an image model is scored on the
    very same visible joints as the keypoint models."""
    from mhe.data import SyntheticHands

    with_images = SyntheticHands("val", size=8, occlusion=0.4, images=True, image_size=64, mano=mano)
    keypoints = SyntheticHands("val", size=8, occlusion=0.4, mano=mano)
    a, b = with_images.generate_many(), keypoints.generate_many()
    assert torch.equal(a["visible"], b["visible"])
    torch.testing.assert_close(a["obs"], b["obs"])
    torch.testing.assert_close(a["joints_3d_mm"], b["joints_3d_mm"])
    assert a["image"].shape == (8, 3, 64, 64) and "image" not in b


# ---------------------------------------------------------------------------------------------------
# the model


def _reference_cnn(enc: CNNEncoder, image: torch.Tensor) -> torch.Tensor:
    """CNNEncoder written out with torch.nn.functional: stride-2 3x3 convs, GroupNorm, ReLU, flatten, linear."""
    x = image
    mods = list(enc.features)
    for conv, norm in zip(mods[0::3], mods[1::3], strict=True):
        x = F.conv2d(x, conv.weight, conv.bias, stride=2, padding=1)
        x = F.relu(F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps))
    return x.flatten(1) @ enc.head.weight.T + enc.head.bias


def test_cnn_encoder_matches_a_functional_reference(crops):
    torch.manual_seed(0)
    enc = CNNEncoder(image_size=32, context_dim=16, channels=(8, 16))
    image = _batch(crops[0])["image"]
    torch.testing.assert_close(enc(image), _reference_cnn(enc, image))
    torch.testing.assert_close(enc((image * 255).round().to(torch.uint8)),
                               _reference_cnn(enc, (image * 255).round() / 255))


def _small_model(name="mhentropy_image"):
    cfg = load_config(f"hand_{name}", SMALL)
    torch.manual_seed(0)
    return build_model(cfg), cfg


def test_the_network_reads_the_image_only_and_the_likelihood_the_visible_joints(crops):
    from mhe.objectives import mhentropy

    model, _ = _small_model()
    batch = _batch(crops[0])
    scrambled = dict(batch, obs=torch.randn_like(batch["obs"]), visible=torch.ones_like(batch["visible"]))
    # the context (what the flow and the head are conditioned on) ignores the keypoints and the mask
    torch.testing.assert_close(model.context(scrambled), model.context(batch), rtol=0, atol=0)
    torch.testing.assert_close(encode(model.encoder, scrambled), encode(model.encoder, batch), rtol=0, atol=0)
    with pytest.raises(KeyError, match="image"):
        model.context({k: v for k, v in batch.items() if k != "image"})

    def loss(b):
        torch.manual_seed(1)
        return mhentropy(model, b, num_samples=3)[0]

    base = loss(batch)
    hidden = ~batch["visible"]
    assert hidden.any()
    moved_hidden = dict(batch, obs=torch.where(hidden[..., None], batch["obs"] + 0.5, batch["obs"]))
    torch.testing.assert_close(loss(moved_hidden), base)  # occluded joints: the likelihood is flat
    moved_visible = dict(batch, obs=torch.where(batch["visible"][..., None], batch["obs"] + 0.5, batch["obs"]))
    assert loss(moved_visible) > base + 1  # visible joints: it is not


@pytest.mark.parametrize("name", list(IMAGE_CONFIGS))
def test_two_training_steps_on_the_cpu(name, crops, tmp_path):
    from mhe.lab.train import Trainer

    model, cfg = _small_model(name)
    cfg = dataclasses.replace(cfg, device="cpu")
    cfg.train = dataclasses.replace(cfg.train, steps=2, batch_size=3, eval_every=0, progress=False,
                                    out_dir=str(tmp_path / name))
    before = [p.detach().clone() for p in model.encoder.parameters()]
    result = Trainer.from_config(model, crops[0], cfg).fit()
    assert result.step == 2 and all(v == v and abs(v) < float("inf") for v in result.train_terms.values())
    changed = [not torch.equal(a, b.detach()) for a, b in zip(before, model.encoder.parameters(), strict=True)]
    assert all(changed)  # the CNN gets gradients from the objective
    assert (tmp_path / name / "last.pt").exists()


# ---------------------------------------------------------------------------------------------------
# CUDA (run by benchmarks/gpu_check.sh: `pytest -m cuda`)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.cuda
@needs_cuda
def test_image_model_on_cuda_matches_the_cpu(crops):
    model, _ = _small_model()
    batch = _batch(crops[0])
    cpu = model.context(batch)
    gpu_model = model.cuda()
    gpu_batch = {k: v.cuda() for k, v in batch.items()}
    torch.testing.assert_close(gpu_model.context(gpu_batch).cpu(), cpu, rtol=1e-4, atol=1e-4)
    from mhe.objectives import mhentropy

    loss, _ = mhentropy(gpu_model, gpu_batch, num_samples=4)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is None or torch.isfinite(p.grad).all() for p in gpu_model.parameters())


@pytest.mark.cuda
@needs_cuda
def test_resnet_encoder_on_cuda():
    if not _torchvision_ok():
        pytest.skip("torchvision not importable: the GPU config needs the build matching this torch")
    from mhe.models.encoders import ResNetEncoder

    enc = ResNetEncoder(context_dim=8, depth=18).cuda().eval()
    x = torch.rand(2, 3, 128, 128, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(enc(x).cpu(), enc.cpu()(x.cpu()), rtol=1e-3, atol=1e-3)


# ---------------------------------------------------------------------------------------------------
# the GPU check script


def test_gpu_check_dry_run_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        [str(REPO / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--dry-run", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    stages = report["stages"]
    assert report["ok"] and list(stages) == ["environment", "cuda_tests", "throughput", "ddp", "gpu_config"]
    assert all(s["status"] == "ok" for s in stages.values())
    # without CUDA the CUDA-marked tests are collected and skipped, none fails
    assert "tests/test_image_models.py" in stages["cuda_tests"]["files"]
    assert stages["cuda_tests"]["failed"] == 0 and stages["cuda_tests"]["skipped"] >= 2
    for key in ("keypoint", "image_cpu_config", "image_gpu_config"):
        r = stages["throughput"][key]
        assert r["items_per_s"] > 0 and r["data_items_per_s"] > 0 and r["peak_rss_mb"] > 0
    assert stages["ddp"]["processes"] == 2 and stages["ddp"]["backend"] == "gloo"
    assert stages["gpu_config"]["steps"] == 3 and stages["gpu_config"]["loss_last"] is not None
    assert "mpjpe_bh" in stages["gpu_config"]["val_metrics"]
