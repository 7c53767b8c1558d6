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
