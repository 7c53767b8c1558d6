"""The DINOv2 and DINOv3 ViTs, the DINOv3 ConvNeXt and their configs: pure modules, nothing about files or the command line."""
from ..lazy import lazy_exports

_EXPORTS = {  # module → the names it gives the package, imported on first use
    ".config": ["Dinov2Config", "Dinov2WithRegistersConfig", "preset_config"],
    ".outputs": ["BaseModelOutputWithPooling", "ModelOutput"],
    ".vit": ["DinoVisionTransformer"],
    ".dinov3": ["DINOv3ViTConfig", "DINOv3VisionTransformer", "dinov3_vit_config"],
    ".convnext": ["DINOv3ConvNextConfig", "ConvNeXt", "dinov3_convnext_config"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["Dinov2Config", "Dinov2WithRegistersConfig", "preset_config", "DinoVisionTransformer",
           "BaseModelOutputWithPooling", "ModelOutput", "DINOv3ViTConfig", "DINOv3VisionTransformer", "dinov3_vit_config",
           "DINOv3ConvNextConfig", "ConvNeXt", "dinov3_convnext_config"]
