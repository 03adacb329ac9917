"""Encoders: turn a batch (2D keypoints + visibility, or an image crop) into a context vector (B, C).

The multi-hypothesis model conditions its flow and deterministic head on this context; which encoder
is used is a config choice (``model.encoder``), not a code fork. :class:`KeypointEncoder` is an MLP on
visible 2D keypoints and the visibility mask (occluded coordinates zeroed, so they carry no
information), in the spirit of ProHMR's skeleton model; :class:`ResidualKeypointEncoder` (``resmlp``)
normalises the visible keypoints for position and size and runs a residual MLP on them. :class:`CNNEncoder` is a
small convolutional network on rendered crops. :class:`ResNetEncoder` wraps a torchvision ResNet
(the official MHEntropy backbone is ResNet-50) and needs the optional ``vision`` extra. Each encoder
names the batch keys it reads in ``input_keys``; :func:`encode` feeds them from a batch dict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mhe.utils import has_values

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class KeypointEncoder(nn.Module):
    """MLP on observed keypoints and their visibility: ``obs (B, K, 2), visible (B, K) -> context (B, C)``.

    Occluded coordinates are zeroed and the mask is concatenated, so the output depends only on the
    visible keypoints and on which ones are visible (an occluded keypoint's position is unknown, and
    the model must not read it).

    Args:
        num_keypoints: K (21 for hands).
        context_dim: C.
        hidden: widths of the hidden layers.
        obs_dim: coordinates per keypoint (2 for 2D keypoints).
    """

    input_keys: tuple[str, ...] = ("obs", "visible")

    def __init__(
        self,
        num_keypoints: int = 21,
        context_dim: int = 128,
        hidden: Sequence[int] = (256, 256),
        obs_dim: int = 2,
    ) -> None:
        super().__init__()
        if num_keypoints < 1 or context_dim < 1 or obs_dim < 1 or any(h < 1 for h in hidden):
            raise ValueError(
                f"num_keypoints ({num_keypoints}), context_dim ({context_dim}), obs_dim ({obs_dim}) and "
                f"hidden widths {tuple(hidden)} must all be positive"
            )
        self.num_keypoints = num_keypoints
        self.obs_dim = obs_dim
        self.context_dim = context_dim
        self.net = _mlp([num_keypoints * (obs_dim + 1), *hidden, context_dim])

    def _check_inputs(self, obs: Tensor, visible: Tensor) -> Tensor:
        """Check shapes and values; return ``visible`` as a bool mask ``(B, K)``."""
        k, d = self.num_keypoints, self.obs_dim
        if obs.dim() != 3 or obs.shape[1:] != (k, d):
            raise ValueError(f"obs must have shape (B, {k}, {d}), got {tuple(obs.shape)}")
        if visible.shape != obs.shape[:2]:
            raise ValueError(f"visible must have shape {tuple(obs.shape[:2])} (B, K), got {tuple(visible.shape)}")
        if not has_values(obs):  # shapes only (meta or fake tensors): no values to check
            return visible.bool()
        if visible.dtype != torch.bool:
            if visible.is_complex() or not ((visible == 0) | (visible == 1)).all():
                raise ValueError(
                    f"visible must be a bool mask (or hold only 0 and 1), got dtype {visible.dtype} with other "
                    "values; threshold it first, e.g. visible > 0.5"
                )
            visible = visible.bool()
        bad = visible & ~torch.isfinite(obs).all(-1)
        if bad.any():
            item, joint = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"obs holds a non-finite value at a visible keypoint (item {item}, keypoint {joint}; "
                f"{int(bad.sum())} in all); mark such keypoints as not visible or fix the input"
            )
        return visible

    @staticmethod
    def _select(obs: Tensor, visible: Tensor) -> Tensor:
        """``obs`` with occluded coordinates replaced by 0 (selected, not multiplied: a NaN there never leaks)."""
        return torch.where(visible[..., None], obs, obs.new_zeros(()))

    def forward(self, obs: Tensor, visible: Tensor) -> Tensor:
        """``obs (B, K, 2)``, ``visible (B, K)`` bool (or only 0 and 1) -> context ``(B, C)``.

        Occluded coordinates never reach the network: they may hold anything, NaN included."""
        visible = self._check_inputs(obs, visible)
        mask = visible.to(obs.dtype)
        x = torch.cat([self._select(obs, visible).flatten(1), mask], dim=1)
        return self.net(x)


class _ResidualBlock(nn.Module):
    """Pre-norm residual MLP block: ``x + W2 · GELU(W1 · LayerNorm(x))``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fc2(nn.functional.gelu(self.fc1(self.norm(x))))


class ResidualKeypointEncoder(KeypointEncoder):
    """Residual MLP on *normalised* visible keypoints: ``obs (B, K, 2), visible (B, K) -> context (B, C)``.

    The visible keypoints are centred on their mean and divided by their RMS spread, so the network
    sees the hand's shape independently of where and how large it is in the crop; the centre and the
    log spread are appended as four extra features, from which the head reads the camera. A linear
    stem is followed by pre-norm residual blocks (LayerNorm → Linear → GELU → Linear) and a final
    LayerNorm + Linear. As in :class:`KeypointEncoder`, occluded coordinates never reach the network.

    Args:
        num_keypoints: K (21 for hands).
        context_dim: C.
        hidden: the first entry is the block width, the number of entries the number of blocks.
        obs_dim: coordinates per keypoint.
    """

    def __init__(
        self,
        num_keypoints: int = 21,
        context_dim: int = 128,
        hidden: Sequence[int] = (256, 256),
        obs_dim: int = 2,
    ) -> None:
        super().__init__(num_keypoints, context_dim, hidden, obs_dim)
        if not hidden:
            raise ValueError("the residual keypoint encoder needs at least one hidden width (model.encoder_hidden)")
        width = hidden[0]
        in_dim = num_keypoints * (obs_dim + 1) + obs_dim + 1
        self.net = nn.Sequential(
            nn.Linear(in_dim, width),
            *[_ResidualBlock(width) for _ in hidden],
            nn.LayerNorm(width),
            nn.Linear(width, context_dim),
        )

    def forward(self, obs: Tensor, visible: Tensor) -> Tensor:
        """``obs (B, K, 2)``, ``visible (B, K)`` bool (or only 0 and 1) -> context ``(B, C)``."""
        visible = self._check_inputs(obs, visible)
        mask = visible.to(obs.dtype)[..., None]
        count = mask.sum(1).clamp_min(1.0)  # (B, 1); an all-occluded item gets centre 0, spread 1e-3
        masked = self._select(obs, visible)  # occluded coordinates are dropped before anything reads them
        centre = masked.sum(1) / count
        offset = (masked - centre[:, None]) * mask
        spread = (offset.square().sum((1, 2)) / count[:, 0]).sqrt().clamp_min(1e-3)
        x = torch.cat(
            [(offset / spread[:, None, None]).flatten(1), mask.flatten(1), centre, spread.log()[:, None]], dim=1
        )
        return self.net(x)


class CNNEncoder(nn.Module):
    """Small CNN on image crops: ``image (B, 3, H, W) -> context (B, C)`` with H = W = ``image_size``.

    Stride-2 conv stages (3×3, GroupNorm, ReLU) halve the resolution each; the final feature map is
    flattened rather than averaged so the context keeps *where* things are in the crop, which a
    keypoint-regressing model needs. uint8 images are scaled to [0, 1].

    Args:
        image_size: side of the square input crop in pixels.
        context_dim: C.
        channels: output channels of each stage (one stage per entry).
        in_channels: 3 for RGB.
    """

    input_keys: tuple[str, ...] = ("image",)

    def __init__(
        self,
        image_size: int = 64,
        context_dim: int = 128,
        channels: Sequence[int] = (32, 64, 128, 128),
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if not channels or any(c < 1 for c in channels):
            raise ValueError(f"channels must be a non-empty list of positive counts, got {tuple(channels)}")
        side = image_size
        for _ in channels:
            side = (side + 1) // 2  # 3×3 conv, stride 2, padding 1
        if image_size < 1 or side < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.image_size = image_size
        self.in_channels = in_channels
        self.context_dim = context_dim
        layers: list[nn.Module] = []
        prev = in_channels
        for c in channels:
            groups = 8 if c % 8 == 0 else 1
            layers += [nn.Conv2d(prev, c, 3, stride=2, padding=1), nn.GroupNorm(groups, c), nn.ReLU()]
            prev = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(prev * side * side, context_dim)

    def forward(self, image: Tensor) -> Tensor:
        """``image (B, 3, H, W)`` float in [0, 1] (or uint8) -> context ``(B, C)``."""
        expected = (self.in_channels, self.image_size, self.image_size)
        if image.dim() != 4 or tuple(image.shape[1:]) != expected:
            raise ValueError(
                f"image must have shape (B, {expected[0]}, {expected[1]}, {expected[2]}), got {tuple(image.shape)}; "
                "set model.image_size to the crop size of the data (channels first)"
            )
        if image.dtype == torch.uint8:
            image = image.float() / 255.0
        return self.head(self.features(image).flatten(1))


_RESNETS = {18: "resnet18", 34: "resnet34", 50: "resnet50"}


class ResNetEncoder(nn.Module):
    """torchvision ResNet backbone: ``image (B, 3, H, W) -> context (B, C)``.

    The classifier is replaced by a linear layer to C features (the official hand model: ResNet-50 →
    512). Images in [0, 1] are normalised with the ImageNet statistics inside, as pretrained weights
    expect. Needs ``torchvision`` (``pip install torchvision`` or the ``vision`` extra:
    ``pip install -e ".[vision]"``).

    Args:
        context_dim: C.
        depth: 18, 34 or 50.
        pretrained: start from torchvision's ImageNet weights (must already be in the torch cache
            when the machine is offline).
    """

    input_keys: tuple[str, ...] = ("image",)

    def __init__(self, context_dim: int = 512, depth: int = 50, pretrained: bool = False) -> None:
        super().__init__()
        if depth not in _RESNETS:
            raise ValueError(f"ResNet depth must be one of {sorted(_RESNETS)}, got {depth}")
        models = _import_torchvision_models()
        builder = getattr(models, _RESNETS[depth])
        weights = "DEFAULT" if pretrained else None
        backbone = builder(weights=weights)
        self.feature_dim = backbone.fc.in_features
        backbone.fc = nn.Identity()
        self.backbone = backbone
        self.head = nn.Linear(self.feature_dim, context_dim)
        self.context_dim = context_dim
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: Tensor) -> Tensor:
        """``image (B, 3, H, W)`` float in [0, 1] (or uint8) -> context ``(B, C)``."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must have shape (B, 3, H, W), got {tuple(image.shape)}")
        if image.dtype == torch.uint8:
            image = image.float() / 255.0
        return self.head(self.backbone((image - self.mean) / self.std))


def _import_torchvision_models() -> Any:
    try:
        import torchvision.models as models
    except ImportError as e:
        raise ImportError(
            "the 'resnet' encoder needs torchvision, which is not installed (or does not match this torch): "
            "`pip install torchvision` (the build matching your torch), or `pip install -e \".[vision]\"`; "
            "or choose model.encoder=mlp / cnn"
        ) from e
    return models


def build_encoder(cfg: Any, num_keypoints: int = 21, obs_dim: int = 2) -> nn.Module:
    """The encoder ``cfg.encoder`` names, sized from a :class:`mhe.config.ModelConfig`.

    ``num_keypoints`` (K) and ``obs_dim`` size the keypoint encoder; image encoders read
    ``cfg.image_size`` (CNN), ``cfg.resnet_depth`` and ``cfg.pretrained`` (ResNet).
    """
    kind = cfg.encoder
    if kind == "mlp":
        return KeypointEncoder(num_keypoints, cfg.context_dim, tuple(cfg.encoder_hidden), obs_dim)
    if kind == "resmlp":
        return ResidualKeypointEncoder(num_keypoints, cfg.context_dim, tuple(cfg.encoder_hidden), obs_dim)
    if kind == "cnn":
        return CNNEncoder(cfg.image_size, cfg.context_dim, tuple(cfg.cnn_channels))
    if kind == "resnet":
        return ResNetEncoder(cfg.context_dim, cfg.resnet_depth, cfg.pretrained)
    raise ValueError(f"unknown model.encoder={kind!r}; choose 'mlp', 'resmlp', 'cnn' or 'resnet'")


def encode(encoder: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """Run ``encoder`` on the batch keys it names in ``input_keys``: context ``(B, C)``."""
    keys = getattr(encoder, "input_keys", None)
    if keys is None:
        raise TypeError(f"{type(encoder).__name__} has no input_keys telling which batch keys it reads")
    missing = [k for k in keys if k not in batch]
    if missing:
        hint = " (image encoders need data.images=true)" if "image" in missing else ""
        raise KeyError(
            f"{type(encoder).__name__} reads batch keys {list(keys)} but the batch lacks {missing}{hint}; "
            f"it has {sorted(batch)}"
        )
    return encoder(*(batch[k] for k in keys))
