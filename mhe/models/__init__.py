"""Models: encoders that turn a batch into a context, and (in ``mhe.models.hand``) the multi-hypothesis
hand model built from an encoder, a conditional flow, a deterministic head and the body model."""

from mhe.models.encoders import CNNEncoder, KeypointEncoder, ResNetEncoder, build_encoder, encode

__all__ = ["CNNEncoder", "KeypointEncoder", "ResNetEncoder", "build_encoder", "encode"]
