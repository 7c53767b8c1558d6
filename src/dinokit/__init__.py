"""dinokit: DINOv2 models, weights in every published format, and the jobs built on their features."""
from .data import AutoImageProcessor, Dinov2ImageProcessor, ImageFiles, ImageLoadError, load_image
from .models import BaseModelOutputWithPooling, Dinov2Config, Dinov2WithRegistersConfig, preset_config
from .pretrained import (
    AutoBackbone,
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    Dinov2Backbone,
    Dinov2ForImageClassification,
    Dinov2Model,
    MMPretrainFeatureModel,
    dinov2_vitb14,
    dinov2_vitb14_lc,
    dinov2_vitb14_reg,
    dinov2_vitb14_reg_lc,
    dinov2_vitg14,
    dinov2_vitg14_lc,
    dinov2_vitg14_reg,
    dinov2_vitg14_reg_lc,
    dinov2_vitl14,
    dinov2_vitl14_lc,
    dinov2_vitl14_reg,
    dinov2_vitl14_reg_lc,
    dinov2_vits14,
    dinov2_vits14_lc,
    dinov2_vits14_reg,
    dinov2_vits14_reg_lc,
    get_model,
    load_model,
)
from .runtime import accelerate, fast_path
from .weights import CheckpointMismatchError, WeightsNotAvailableError, available_models

__version__ = "0.1.0"

_JOBS = {"embed": "features", "search": "features", "dedup": "features", "build_index": "features"}


def __getattr__(name: str):
    """The jobs load on first use: `import dinokit` stays light (no pyarrow or faiss until a job needs them)."""
    if name in _JOBS:
        import importlib

        return getattr(importlib.import_module(f".{_JOBS[name]}", __name__), name)
    raise AttributeError(f"module 'dinokit' has no attribute {name!r}")

__all__ = [
    "embed", "search", "dedup", "build_index", "accelerate", "fast_path",
    "AutoModel", "AutoModelForImageClassification", "AutoBackbone", "AutoConfig",
    "AutoImageProcessor", "Dinov2ImageProcessor", "ImageFiles", "ImageLoadError", "load_image",
    "Dinov2Config", "Dinov2WithRegistersConfig", "Dinov2Model", "Dinov2ForImageClassification", "Dinov2Backbone",
    "BaseModelOutputWithPooling", "preset_config", "load_model", "get_model",
    "MMPretrainFeatureModel", "CheckpointMismatchError", "WeightsNotAvailableError", "available_models",
    "dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vitg14",
    "dinov2_vits14_reg", "dinov2_vitb14_reg", "dinov2_vitl14_reg", "dinov2_vitg14_reg",
    "dinov2_vits14_lc", "dinov2_vitb14_lc", "dinov2_vitl14_lc", "dinov2_vitg14_lc",
    "dinov2_vits14_reg_lc", "dinov2_vitb14_reg_lc", "dinov2_vitl14_reg_lc", "dinov2_vitg14_reg_lc",
]
