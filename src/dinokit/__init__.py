"""dinokit: DINOv2 models, weights in every published format, and the jobs built on their features."""
from .runtime import accelerate, fast_path
from .data import AutoImageProcessor, Dinov2ImageProcessor, ImageFiles, ImageLoadError, load_image
from .features import build_index, dedup, embed, search
from .models import BaseModelOutputWithPooling, Dinov2Config, Dinov2WithRegistersConfig, preset_config
from .pretrained import (
    AutoBackbone, AutoConfig, AutoModel, AutoModelForImageClassification, Dinov2Backbone, Dinov2ForImageClassification, Dinov2Model, dinov2_vitb14_lc, dinov2_vitb14_reg_lc,
    dinov2_vitg14_lc, dinov2_vitg14_reg_lc, dinov2_vitl14_lc, dinov2_vitl14_reg_lc, dinov2_vits14_lc,
    dinov2_vits14_reg_lc, MMPretrainFeatureModel, dinov2_vitb14, dinov2_vitb14_reg, dinov2_vitg14, dinov2_vitg14_reg,
    dinov2_vitl14, dinov2_vitl14_reg, dinov2_vits14, dinov2_vits14_reg, get_model, load_model,
)
from .weights import CheckpointMismatchError, WeightsNotAvailableError, available_models

__version__ = "0.1.0"

__all__ = [
    "embed", "search", "dedup", "build_index", "accelerate", "fast_path",
    "AutoModel", "AutoModelForImageClassification", "AutoBackbone", "AutoConfig",
    "AutoImageProcessor", "Dinov2ImageProcessor", "ImageFiles", "ImageLoadError", "load_image",
    "Dinov2Config", "Dinov2WithRegistersConfig", "Dinov2Model", "Dinov2ForImageClassification", "Dinov2Backbone", "BaseModelOutputWithPooling", "preset_config", "load_model", "get_model",
    "MMPretrainFeatureModel", "CheckpointMismatchError", "WeightsNotAvailableError", "available_models",
    "dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vitg14",
    "dinov2_vits14_reg", "dinov2_vitb14_reg", "dinov2_vitl14_reg", "dinov2_vitg14_reg",
    "dinov2_vits14_lc", "dinov2_vitb14_lc", "dinov2_vitl14_lc", "dinov2_vitg14_lc",
    "dinov2_vits14_reg_lc", "dinov2_vitb14_reg_lc", "dinov2_vitl14_reg_lc", "dinov2_vitg14_reg_lc",
]
