"""`Dinov2Config`: one config type with the fields and defaults of `transformers.Dinov2Config`.

The class defaults follow transformers (image_size 224); the presets of the released models use 518.
`num_register_tokens` and `interpolate_mode` are dinokit's additions.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

INTERPOLATE_MODES = ("official", "hf", "timm")


@dataclass
class Dinov2Config:
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    mlp_ratio: float = 4
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-6
    image_size: int = 224
    patch_size: int = 14
    num_channels: int = 3
    qkv_bias: bool = True
    layerscale_value: float = 1.0
    drop_path_rate: float = 0.0
    use_swiglu_ffn: bool = False
    use_mask_token: bool = True
    out_features: list[str] | None = None
    out_indices: list[int] | None = None
    apply_layernorm: bool = True
    reshape_hidden_states: bool = True
    num_register_tokens: int = 0
    interpolate_mode: str | None = None
    # Classification heads (transformers' PretrainedConfig fields).
    num_labels: int | None = None
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None
    problem_type: str | None = None
    # Keys of a config.json that dinokit does not interpret, kept so that a round trip loses nothing.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}"
            )
        if self.interpolate_mode is not None and self.interpolate_mode not in INTERPOLATE_MODES:
            raise ValueError(f"interpolate_mode must be one of {INTERPOLATE_MODES}, got {self.interpolate_mode!r}")
        if self.id2label is not None:
            self.id2label = {int(k): v for k, v in self.id2label.items()}
            self.num_labels = len(self.id2label)
            if self.label2id is None:
                self.label2id = {v: k for k, v in self.id2label.items()}

    @property
    def backbone_out_indices(self) -> list[int]:
        """Stages a backbone returns (transformers' rule: `out_indices`, else `out_features`, else the last)."""
        if self.out_indices is not None:
            return [i % (self.num_hidden_layers + 1) for i in self.out_indices]
        if self.out_features is not None:
            return [self.stage_names.index(name) for name in self.out_features]
        return [self.num_hidden_layers]

    @property
    def stage_names(self) -> list[str]:
        return ["stem"] + [f"stage{i}" for i in range(1, self.num_hidden_layers + 1)]

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def mlp_hidden_size(self) -> int:
        hidden = int(self.hidden_size * self.mlp_ratio)
        if self.use_swiglu_ffn:  # the official fused SwiGLU rounds 2/3 of the hidden size up to a multiple of 8
            hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        return hidden

    @property
    def grid_size(self) -> int:
        """Side of the position-embedding grid the weights were trained with (37 for 518 px)."""
        return self.image_size // self.patch_size

    def replace(self, **changes) -> "Dinov2Config":
        return dataclasses.replace(self, **changes)

    # --- config.json as the hub repositories have it -------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        d.update(self.extra)
        for key in ("num_labels", "id2label", "label2id", "problem_type", "interpolate_mode"):
            if d[key] is None:
                del d[key]
        if d.get("id2label") is not None:
            d["id2label"] = {str(k): v for k, v in d["id2label"].items()}
            d.pop("num_labels")  # transformers derives it from id2label
        if isinstance(d["mlp_ratio"], float) and d["mlp_ratio"].is_integer():
            d["mlp_ratio"] = int(d["mlp_ratio"])  # transformers 5 validates it as an int
        registers = self.num_register_tokens > 0
        d["out_indices"] = self.backbone_out_indices
        d["out_features"] = [self.stage_names[i] for i in d["out_indices"]]
        d["stage_names"] = self.stage_names
        d["model_type"] = "dinov2_with_registers" if registers else "dinov2"
        if not registers:
            del d["num_register_tokens"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Dinov2Config":
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        dropped = {"stage_names", "model_type", "transformers_version", "dtype", "torch_dtype"}
        extra = {k: v for k, v in d.items() if k not in names and k not in dropped}
        return cls(**known, extra=extra)

    def to_json_file(self, path: str | os.PathLike, architectures: list[str] | None = None) -> None:
        d = self.to_dict()
        if architectures:
            d["architectures"] = architectures
        with open(path, "w") as f:
            json.dump(d, f, indent=2, sort_keys=True)
            f.write("\n")

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "Dinov2Config":
        with open(path) as f:
            return cls.from_dict(json.load(f))


_SIZES = {  # (hidden_size, num_hidden_layers, num_attention_heads, use_swiglu_ffn)
    "s": (384, 12, 6, False),
    "b": (768, 12, 12, False),
    "l": (1024, 24, 16, False),
    "g": (1536, 40, 24, True),
}


def preset_config(size: str, registers: bool = False, **overrides) -> Dinov2Config:
    """Config of a released model: size in 's', 'b', 'l', 'g'; image_size 518 as the checkpoints were built."""
    try:
        dim, depth, heads, swiglu = _SIZES[size]
    except KeyError:
        raise ValueError(f"unknown model size {size!r}; expected one of {sorted(_SIZES)}") from None
    values = dict(
        hidden_size=dim, num_hidden_layers=depth, num_attention_heads=heads, use_swiglu_ffn=swiglu,
        image_size=518, num_register_tokens=4 if registers else 0,
    )
    values.update(overrides)
    return Dinov2Config(**values)
