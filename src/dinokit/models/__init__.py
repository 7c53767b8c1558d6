"""The DINOv2 ViT and its config: pure modules, nothing about files or the command line."""
from .config import Dinov2Config, Dinov2WithRegistersConfig, preset_config
from .outputs import BaseModelOutputWithPooling, ModelOutput
from .vit import DinoVisionTransformer

__all__ = ["Dinov2Config", "Dinov2WithRegistersConfig", "preset_config", "DinoVisionTransformer",
           "BaseModelOutputWithPooling", "ModelOutput"]
