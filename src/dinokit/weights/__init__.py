"""Checkpoint formats, published names, downloads and the Hugging Face layout."""
from .checkpoint import (
    CheckpointFileError,
    CheckpointMismatchError,
    infer_config,
    load_converted,
    read_state_dict,
    state_dict_from_file,
    weights_fingerprint,
)
from .download import WeightsNotAvailableError
from .formats import detect_format, to_dinokit, to_hf, to_mmpretrain, to_timm, unwrap_checkpoint
from .names import MODEL_SOURCES, available_models, official_url
from .pretrained import PretrainedMixin, model_identity, resolve_checkpoint

__all__ = [
    "CheckpointFileError", "CheckpointMismatchError", "WeightsNotAvailableError", "PretrainedMixin", "resolve_checkpoint",
    "model_identity",
    "detect_format", "to_dinokit", "to_hf", "to_timm", "to_mmpretrain", "unwrap_checkpoint",
    "infer_config", "weights_fingerprint", "load_converted", "read_state_dict", "state_dict_from_file",
    "MODEL_SOURCES", "available_models", "official_url",
]
