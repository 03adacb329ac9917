"""Encoders: shapes, gradients, what they may and may not read, the torchvision dependency, the factory."""

from __future__ import annotations

import math
import sys
import types

import pytest
import torch
from torch import nn

from mhe.config import ModelConfig
from mhe.models import CNNEncoder, KeypointEncoder, ResNetEncoder, build_encoder, encode
from mhe.models.encoders import IMAGENET_MEAN, IMAGENET_STD, ResidualKeypointEncoder


def _all_params_get_gradient(module: nn.Module, out: torch.Tensor) -> None:
    out.square().sum().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


KEYPOINT_ENCODERS = [KeypointEncoder, ResidualKeypointEncoder]


@pytest.mark.parametrize("cls", KEYPOINT_ENCODERS)
def test_keypoint_encoder_shapes_and_gradients(cls):
    enc = cls(num_keypoints=21, context_dim=16, hidden=(32,))
    obs, vis = torch.randn(5, 21, 2), torch.rand(5, 21) > 0.3
    out = enc(obs, vis)
    assert out.shape == (5, 16)
    _all_params_get_gradient(enc, out)


@pytest.mark.parametrize("cls", KEYPOINT_ENCODERS)
def test_keypoint_encoder_ignores_occluded_coordinates(cls):
    enc = cls(num_keypoints=6, context_dim=8, hidden=(16, 16))
    obs = torch.randn(4, 6, 2)
    vis = torch.tensor([[1, 1, 0, 1, 0, 1]] * 4, dtype=torch.bool)
    base = enc(obs, vis)
    moved_hidden = obs.clone()
    moved_hidden[:, [2, 4]] += 10.0 * torch.randn(4, 2, 2)
    assert torch.equal(enc(moved_hidden, vis), base)  # an occluded keypoint's position is unknown
    moved_visible = obs.clone()
    moved_visible[:, 0] += 0.5
    assert not torch.allclose(enc(moved_visible, vis), base)
    flipped = vis.clone()
    flipped[:, 2] = True
    assert not torch.allclose(enc(obs, flipped), base)  # which joints are seen is information too
    assert torch.equal(enc(obs, vis.float()), base)  # a {0, 1} float mask reads like a bool mask


@pytest.mark.parametrize(
    "obs_shape, vis_shape, message",
    [
        ((4, 20, 2), (4, 20), r"obs must have shape \(B, 21, 2\), got \(4, 20, 2\)"),
        ((4, 21, 3), (4, 21), r"obs must have shape \(B, 21, 2\)"),
        ((21, 2), (21,), r"obs must have shape \(B, 21, 2\), got \(21, 2\)"),
        ((4, 21, 2), (4, 20), r"visible must have shape \(4, 21\) \(B, K\), got \(4, 20\)"),
    ],
)
def test_keypoint_encoder_shape_errors(obs_shape, vis_shape, message):
    enc = KeypointEncoder()
    with pytest.raises(ValueError, match=message):
        enc(torch.zeros(obs_shape), torch.ones(vis_shape, dtype=torch.bool))


def test_constructor_errors():
    with pytest.raises(ValueError, match="must all be positive"):
        KeypointEncoder(num_keypoints=0)
    with pytest.raises(ValueError, match="must all be positive"):
        KeypointEncoder(hidden=(8, 0))
    with pytest.raises(ValueError, match="non-empty list of positive counts"):
        CNNEncoder(channels=())
    with pytest.raises(ValueError, match="image_size must be positive"):
        CNNEncoder(image_size=0)
    with pytest.raises(ValueError, match=r"ResNet depth must be one of \[18, 34, 50\], got 101"):
        ResNetEncoder(depth=101)


@pytest.mark.parametrize("size, channels", [(64, (8, 16, 16, 16)), (50, (8, 8, 8, 8)), (33, (8, 16))])
def test_cnn_encoder_shapes_for_any_crop_size(size, channels):
    # odd sizes round up at each stride-2 stage (50 -> 25 -> 13 -> 7 -> 4); a wrong count would break the head
    enc = CNNEncoder(image_size=size, context_dim=12, channels=channels)
    out = enc(torch.rand(3, 3, size, size))
    assert out.shape == (3, 12)
    _all_params_get_gradient(enc, out)


def test_cnn_encoder_reads_uint8_as_unit_range():
    enc = CNNEncoder(image_size=16, context_dim=4, channels=(8,))
    img = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert torch.allclose(enc(img), enc(img.float() / 255.0))


def test_cnn_encoder_shape_error_names_the_setting():
    enc = CNNEncoder(image_size=32)
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\), got \(2, 3, 64, 64\); set model.image_size"):
        enc(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match="channels first"):
        enc(torch.rand(2, 32, 32, 3))


def test_encoders_follow_the_input_device():
    # the meta device stands in for CUDA: nothing may be created on a fixed device
    kp = KeypointEncoder(num_keypoints=4, context_dim=3, hidden=(5,)).to("meta")
    out = kp(torch.zeros(2, 4, 2, device="meta"), torch.ones(2, 4, dtype=torch.bool, device="meta"))
    assert out.device.type == "meta"
    cnn = CNNEncoder(image_size=8, context_dim=3, channels=(8,)).to("meta")
    assert cnn(torch.zeros(2, 3, 8, 8, device="meta")).shape == (2, 3)


def test_resnet_without_torchvision_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(ImportError, match=r"pip install torchvision.*\[vision\]"):
        ResNetEncoder(context_dim=8, depth=18)
    with pytest.raises(ImportError, match="model.encoder=mlp / cnn"):
        build_encoder(ModelConfig(encoder="resnet"))


class _StubResNet(nn.Module):
    """Stands in for a torchvision ResNet: records its input, pools, and has an ``fc`` classifier."""

    def __init__(self, weights=None):
        super().__init__()
        self.weights = weights
        self.conv = nn.Conv2d(3, 6, 1)
        self.fc = nn.Linear(6, 1000)
        self.seen = None

    def forward(self, x):
        self.seen = x
        return self.fc(self.conv(x).mean(dim=(2, 3)))


@pytest.fixture
def stub_torchvision(monkeypatch):
    models = types.ModuleType("torchvision.models")
    built = []

    def make(depth):
        def builder(weights=None):
            net = _StubResNet(weights)
            built.append((depth, net))
            return net

        return builder

    models.resnet18, models.resnet34, models.resnet50 = make(18), make(34), make(50)
    tv = types.ModuleType("torchvision")
    tv.models = models
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    return built


def test_resnet_encoder_wraps_the_backbone(stub_torchvision):
    enc = ResNetEncoder(context_dim=7, depth=50, pretrained=True)
    depth, backbone = stub_torchvision[-1]
    assert depth == 50 and backbone.weights == "DEFAULT" and isinstance(backbone.fc, nn.Identity)
    img = torch.rand(2, 3, 20, 20)
    out = enc(img)
    assert out.shape == (2, 7)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(backbone.seen, (img - mean) / std)  # ImageNet normalisation inside
    _all_params_get_gradient(enc, out)
    assert "mean" not in enc.state_dict()  # constants are not checkpointed
    build_encoder(ModelConfig(encoder="resnet", resnet_depth=18, pretrained=False))
    assert stub_torchvision[-1][0] == 18 and stub_torchvision[-1][1].weights is None
    with pytest.raises(ValueError, match=r"image must have shape \(B, 3, H, W\)"):
        enc(torch.rand(2, 1, 20, 20))


def test_real_torchvision_resnet18():
    try:
        import torchvision  # noqa: F401
    except Exception:
        pytest.skip("torchvision not installed (optional `vision` extra)")
    enc = ResNetEncoder(context_dim=5, depth=18)
    assert enc(torch.rand(1, 3, 64, 64)).shape == (1, 5)


def test_residual_encoder_normalises_the_visible_keypoints():
    enc = ResidualKeypointEncoder(num_keypoints=3, context_dim=4, hidden=(8, 8))
    seen = {}
    enc.net[0].register_forward_pre_hook(lambda mod, args: seen.update(x=args[0].detach().clone()))
    # visible: (0, 0), (2, 0); occluded: (9, 9). Centre (1, 0); RMS distance from it 1.
    obs = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [9.0, 9.0]]])
    vis = torch.tensor([[True, True, False]])
    enc(obs, vis)
    expected = torch.tensor([[-1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0]])
    assert torch.allclose(seen["x"], expected)
    # moving and scaling the hand changes only the centre and log-spread features
    enc(obs * 3.0 + torch.tensor([0.5, -0.25]), vis)
    assert torch.allclose(seen["x"][:, :9], expected[:, :9])
    assert torch.allclose(seen["x"][:, 9:], torch.tensor([[3.5, -0.25, math.log(3.0)]]))
    # a fully occluded item stays finite
    assert enc(obs, torch.zeros(1, 3, dtype=torch.bool)).isfinite().all()


def test_build_encoder_follows_the_config():
    cfg = ModelConfig(encoder="mlp", context_dim=9, encoder_hidden=(11,))
    enc = build_encoder(cfg, num_keypoints=5)
    assert isinstance(enc, KeypointEncoder) and enc.input_keys == ("obs", "visible")
    assert enc(torch.zeros(2, 5, 2), torch.ones(2, 5)).shape == (2, 9)
    cnn = build_encoder(ModelConfig(encoder="cnn", image_size=16, context_dim=4, cnn_channels=(8, 8)))
    assert isinstance(cnn, CNNEncoder) and cnn.input_keys == ("image",)
    assert cnn(torch.zeros(1, 3, 16, 16)).shape == (1, 4)
    res = build_encoder(ModelConfig(encoder="resmlp", context_dim=9, encoder_hidden=(12, 12, 12)), num_keypoints=5)
    assert isinstance(res, ResidualKeypointEncoder) and res.input_keys == ("obs", "visible")
    assert sum(isinstance(m, nn.LayerNorm) for m in res.modules()) == 4  # 3 blocks + the final norm
    bad = ModelConfig()
    bad.encoder = "vit"  # bypasses the config's own check
    with pytest.raises(ValueError, match="unknown model.encoder='vit'"):
        build_encoder(bad)


def test_encode_reads_the_named_keys():
    enc = KeypointEncoder(num_keypoints=3, context_dim=2, hidden=(4,))
    batch = {"obs": torch.randn(2, 3, 2), "visible": torch.ones(2, 3, dtype=torch.bool), "image": None}
    assert torch.equal(encode(enc, batch), enc(batch["obs"], batch["visible"]))
    with pytest.raises(KeyError, match=r"lacks \['visible'\]"):
        encode(enc, {"obs": batch["obs"]})
    with pytest.raises(KeyError, match="image encoders need data.images=true"):
        encode(CNNEncoder(image_size=8, channels=(8,)), {"obs": batch["obs"]})
    with pytest.raises(TypeError, match="no input_keys"):
        encode(nn.Linear(2, 2), batch)


@pytest.mark.parametrize("cls", [KeypointEncoder, ResidualKeypointEncoder])
def test_keypoint_encoder_input_errors_and_nan_at_occluded_joints(cls):
    """A NaN at an occluded keypoint never reaches the network (selected, not multiplied); a NaN at a
    visible one, a soft mask or a wrong shape is a clear error."""
    enc = cls(num_keypoints=6, context_dim=8, hidden=(16, 16))
    obs = torch.randn(3, 6, 2)
    vis = torch.tensor([[1, 1, 0, 1, 0, 1]] * 3, dtype=torch.bool)
    base = enc(obs, vis)
    poisoned = obs.clone()
    poisoned[:, 2] = float("nan")
    poisoned[:, 4, 0] = float("inf")
    assert torch.equal(enc(poisoned, vis), base)
    bad = obs.clone()
    bad[1, 3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite value at a visible keypoint \(item 1, keypoint 3"):
        enc(bad, vis)
    with pytest.raises(ValueError, match="bool mask"):
        enc(obs, vis.float() * 0.7)
    with pytest.raises(ValueError, match=r"obs must have shape \(B, 6, 2\)"):
        enc(obs[:, :5], vis)
    with pytest.raises(ValueError, match="visible must have shape"):
        enc(obs, vis[:, :5])
