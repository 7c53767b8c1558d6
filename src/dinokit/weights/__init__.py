"""Checkpoint formats, published names, downloads and the Hugging Face layout."""
from .checkpoint import CheckpointMismatchError, infer_config, load_converted, read_state_dict, state_dict_from_file
from .download import WeightsNotAvailableError
from .formats import detect_format, to_dinokit, to_hf, to_mmpretrain, to_timm, unwrap_checkpoint
from .names import MODEL_SOURCES, available_models, official_url
from .pretrained import PretrainedMixin, resolve_checkpoint

__all__ = [
    "CheckpointMismatchError", "WeightsNotAvailableError", "PretrainedMixin", "resolve_checkpoint",
    "detect_format", "to_dinokit", "to_hf", "to_timm", "to_mmpretrain", "unwrap_checkpoint",
    "infer_config", "load_converted", "read_state_dict", "state_dict_from_file",
    "MODEL_SOURCES", "available_models", "official_url",
]
