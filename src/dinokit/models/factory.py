"""The backbone module of a config, whatever its family: one place that knows which config builds what."""
from __future__ import annotations

from torch import nn

from .config import Dinov2Config, HubConfig


def build_backbone(config: HubConfig) -> nn.Module:
    """A randomly initialised DINOv2 ViT, DINOv3 ViT or DINOv3 ConvNeXt for `config`."""
    from .convnext import ConvNeXt, DINOv3ConvNextConfig
    from .dinov3 import DINOv3VisionTransformer, DINOv3ViTConfig
    from .vit import DinoVisionTransformer

    for config_type, module in ((Dinov2Config, DinoVisionTransformer), (DINOv3ViTConfig, DINOv3VisionTransformer),
                                (DINOv3ConvNextConfig, ConvNeXt)):
        if isinstance(config, config_type):
            return module(config)
    raise TypeError(f"no backbone for a {type(config).__name__}")
