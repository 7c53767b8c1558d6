"""config.json as transformers reads and writes it (sorted keys, two-space indent, a final newline)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..io import read_json, write_text_atomic
from .checkpoint import CONFIG_NAME


def write_config(config, path: str | os.PathLike, architectures: list[str] | None = None) -> Path:
    d = config.to_dict()
    if architectures:
        d["architectures"] = architectures
    return write_text_atomic(path, json.dumps(d, indent=2, sort_keys=True) + "\n")


def read_config(cls, path: str | os.PathLike):
    return cls.from_dict(read_json(path))


def save_config(config, directory: str | os.PathLike) -> Path:
    Path(directory).mkdir(parents=True, exist_ok=True)
    return write_config(config, Path(directory) / CONFIG_NAME)


CONFIG_TYPES = {  # config.json's model_type → the dinokit config class (imported when asked for)
    "dinov2": ("..models.config", "Dinov2Config"),
    "dinov2_with_registers": ("..models.config", "Dinov2Config"),
    "dinov3_vit": ("..models.dinov3", "DINOv3ViTConfig"),
    "dinov3_convnext": ("..models.convnext", "DINOv3ConvNextConfig"),
}


def config_class(model_type: str | None):
    """The config class of a config.json's `model_type` (a file without one is read as DINOv2's)."""
    import importlib

    if model_type is None:
        model_type = "dinov2"
    if model_type not in CONFIG_TYPES:
        raise ValueError(f"config.json names model_type {model_type!r}; dinokit reads {', '.join(CONFIG_TYPES)}")
    module, name = CONFIG_TYPES[model_type]
    return getattr(importlib.import_module(module, __package__), name)


def read_any_config(path: str | os.PathLike):
    """A config.json of any family, as its own config class."""
    d = read_json(path)
    return config_class(d.get("model_type")).from_dict(d)
