"""The DINOv2 ViT and its config: pure modules, nothing about files or the command line."""
from ..lazy import lazy_exports

_EXPORTS = {  # module → the names it gives the package, imported on first use
    ".config": ["Dinov2Config", "Dinov2WithRegistersConfig", "preset_config"],
    ".outputs": ["BaseModelOutputWithPooling", "ModelOutput"],
    ".vit": ["DinoVisionTransformer"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["Dinov2Config", "Dinov2WithRegistersConfig", "preset_config", "DinoVisionTransformer",
           "BaseModelOutputWithPooling", "ModelOutput"]
