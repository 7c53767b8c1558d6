"""One YAML per run: the defaults (the official ssl_default_config.yaml), a preset or file on top, then
`key.sub=value` overrides from the command line (values parsed as YAML: numbers, lists, booleans)."""
from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import yaml

from ..io import read_yaml

PRESETS = ("vitl16_short", "vitl14", "vitg14", "distill_vits14", "distill_vitb14", "distill_vitl14", "smoke")
ARCHS = {"vit_small": (384, 12, 6), "vit_base": (768, 12, 12), "vit_large": (1024, 24, 16),
         "vit_giant2": (1536, 40, 24)}  # (embed_dim, depth, heads)


def _preset(name: str) -> dict:
    return yaml.safe_load(resources.files(__package__).joinpath("configs", f"{name}.yaml").read_text()) or {}


def merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (top or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


FREE_SECTIONS = ("student",)  # may also set embed_dim, depth and num_heads of a custom (tiny) architecture


def unknown_keys(base: dict, top: dict, prefix: str = "") -> list[str]:
    """Dotted names of the keys in `top` that `base` (the defaults) does not have, at any depth."""
    unknown = []
    for key, value in (top or {}).items():
        name = f"{prefix}{key}"
        if key not in base:
            if prefix.rstrip(".") not in FREE_SECTIONS:
                unknown.append(name)
        elif isinstance(value, dict) and isinstance(base[key], dict):
            unknown += unknown_keys(base[key], value, name + ".")
    return unknown


def apply_override(config: dict, override: str) -> dict:
    if "=" not in override:
        raise ValueError(f"override {override!r} is not KEY=VALUE (e.g. train.batch_size_per_gpu=64)")
    key, value = override.split("=", 1)
    node = config
    parts = key.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise ValueError(f"override {override!r}: no section {part!r} in the configuration")
        node = node[part]
    if parts[-1] not in node and parts[0] not in FREE_SECTIONS:
        raise ValueError(f"override {override!r}: unknown key {key!r} (see `dinokit train --print-config`)")
    node[parts[-1]] = yaml.safe_load(value)
    return config


def load_config(config: str | Path | None = None, overrides: list[str] = ()) -> dict:
    """config: a preset name (see PRESETS) or a YAML file; None: the defaults."""
    cfg = _preset("default")
    if config:
        if Path(config).is_file():
            top = read_yaml(config) or {}
        elif str(config) in PRESETS:
            top = _preset(str(config))
        else:
            raise ValueError(f"{config}: neither a YAML file nor a preset ({', '.join(PRESETS)})")
        unknown = unknown_keys(cfg, top)
        if unknown:
            raise ValueError(f"{config}: unknown keys {', '.join(unknown)} (see `dinokit train --print-config`)")
        cfg = merge(cfg, top)
    for o in overrides:
        apply_override(cfg, o)
    return cfg


def student_dims(student: dict) -> tuple[int, int, int]:
    """(embed_dim, depth, heads): the arch's, or those set explicitly (for tiny smoke-test models)."""
    if student["arch"] not in ARCHS and not all(k in student for k in ("embed_dim", "depth", "num_heads")):
        raise ValueError(f"student.arch {student['arch']!r} is not one of {sorted(ARCHS)}; "
                         "or give student.embed_dim, student.depth and student.num_heads")
    dim, depth, heads = ARCHS.get(student["arch"], (None, None, None))
    return student.get("embed_dim", dim), student.get("depth", depth), student.get("num_heads", heads)
