"""dinokit: DINOv2 and DINOv3 models, weights in every published format, and the jobs built on their features."""
from .lazy import lazy_exports

__version__ = "0.1.0"

DINOV3_HUB_NAMES = ("dinov3_vits16", "dinov3_vits16plus", "dinov3_vitb16", "dinov3_vitl16", "dinov3_vitl16plus",
                    "dinov3_vith16plus", "dinov3_vit7b16", "dinov3_convnext_tiny", "dinov3_convnext_small",
                    "dinov3_convnext_base", "dinov3_convnext_large")

_EXPORTS = {  # module → the names it gives the package, imported on first use
    ".data": ["AutoImageProcessor", "Dinov2ImageProcessor", "DINOv3ImageProcessor", "ImageFiles", "ImageLoadError", "load_image"],
    ".models": ["BaseModelOutputWithPooling", "Dinov2Config", "Dinov2WithRegistersConfig", "preset_config",
                "DINOv3ViTConfig", "DINOv3ConvNextConfig"],
    ".pretrained": ["DinoTxtModel", "AutoBackbone", "AutoConfig", "AutoModel", "AutoModelForImageClassification",
                    "Dinov2Backbone", "Dinov2ForImageClassification", "Dinov2Model", "MMPretrainFeatureModel", "get_model",
                    "load_model", "DINOv3ViTModel", "DINOv3ConvNextModel", "DINOv3ViTBackbone", *DINOV3_HUB_NAMES,
                    *(f"dinov2_vit{size}14{reg}{lc}" for size in "sblg" for reg in ("", "_reg") for lc in ("", "_lc"))],
    ".runtime": ["accelerate", "fast_path"],
    ".weights": ["CheckpointMismatchError", "WeightsNotAvailableError", "available_models"],
    ".features": ["embed", "search", "dedup", "build_index"],
    ".zeroshot": ["zero_shot_classify"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "embed", "search", "dedup", "build_index", "accelerate", "fast_path", "DinoTxtModel", "zero_shot_classify",
    "AutoModel", "AutoModelForImageClassification", "AutoBackbone", "AutoConfig",
    "AutoImageProcessor", "Dinov2ImageProcessor", "DINOv3ImageProcessor", "ImageFiles", "ImageLoadError", "load_image",
    "Dinov2Config", "Dinov2WithRegistersConfig", "Dinov2Model", "Dinov2ForImageClassification", "Dinov2Backbone",
    "BaseModelOutputWithPooling", "preset_config", "load_model", "get_model",
    "MMPretrainFeatureModel", "CheckpointMismatchError", "WeightsNotAvailableError", "available_models",
    "dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vitg14",
    "dinov2_vits14_reg", "dinov2_vitb14_reg", "dinov2_vitl14_reg", "dinov2_vitg14_reg",
    "dinov2_vits14_lc", "dinov2_vitb14_lc", "dinov2_vitl14_lc", "dinov2_vitg14_lc",
    "dinov2_vits14_reg_lc", "dinov2_vitb14_reg_lc", "dinov2_vitl14_reg_lc", "dinov2_vitg14_reg_lc",
    "DINOv3ViTConfig", "DINOv3ConvNextConfig", "DINOv3ViTModel", "DINOv3ConvNextModel", "DINOv3ViTBackbone",
    *DINOV3_HUB_NAMES,
]
