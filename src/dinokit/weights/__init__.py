"""Checkpoint formats, published names, downloads and the Hugging Face layout."""
from ..lazy import lazy_exports

_EXPORTS = {  # module → the names it gives the package, imported on first use
    ".checkpoint": ["CheckpointFileError", "CheckpointMismatchError", "infer_config", "load_converted", "read_state_dict",
                    "state_dict_from_file", "weights_fingerprint"],
    ".download": ["WeightsNotAvailableError"],
    ".formats": ["detect_format", "to_dinokit", "to_hf", "to_mmpretrain", "to_timm", "unwrap_checkpoint"],
    ".names": ["MODEL_SOURCES", "available_models", "official_url"],
    ".pretrained": ["PretrainedMixin", "model_identity", "resolve_checkpoint"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "CheckpointFileError", "CheckpointMismatchError", "WeightsNotAvailableError", "PretrainedMixin", "resolve_checkpoint",
    "model_identity",
    "detect_format", "to_dinokit", "to_hf", "to_timm", "to_mmpretrain", "unwrap_checkpoint",
    "infer_config", "weights_fingerprint", "load_converted", "read_state_dict", "state_dict_from_file",
    "MODEL_SOURCES", "available_models", "official_url",
]
