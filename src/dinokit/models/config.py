"""Configs with the fields, defaults and methods of transformers' configs: `HubConfig` holds what they all
share (outputs, labels, stages, config.json); `Dinov2Config` is `transformers.Dinov2Config` (and
`Dinov2WithRegistersConfig`: `num_register_tokens` > 0). The DINOv3 configs live beside their models.

The class defaults follow transformers (image_size 224, two labels, the last stage as backbone output);
the presets of the released models use 518. `num_register_tokens` and `interpolate_mode` are dinokit's
additions.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

INTERPOLATE_MODES = ("official", "hf", "timm")
_NOT_STORED = {"stage_names", "model_type", "transformers_version", "_name_or_path", "_attn_implementation_autoset"}


@dataclass
class HubConfig:
    """What every dinokit config shares with transformers' `PretrainedConfig`: the output switches, labels,
    dtype, backbone stages, config.json reading and writing. Subclasses add the architecture fields."""

    # transformers' PretrainedConfig fields that a model reads.
    output_hidden_states: bool = False
    output_attentions: bool = False
    return_dict: bool = True
    dtype: str | None = None
    chunk_size_feed_forward: int = 0
    is_encoder_decoder: bool = False
    architectures: list[str] | None = None
    num_labels: int | None = None  # None: len(id2label), else 2, as transformers
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None
    problem_type: str | None = None
    out_features: list[str] | None = None  # None: aligned with out_indices, or the last stage (transformers' rule)
    out_indices: list[int] | None = None
    # Keys of a config.json that dinokit does not interpret, kept so that a round trip loses nothing.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    model_type = "base"  # each subclass names its own (a class attribute or a property)
    _OPTIONAL_KEYS = ("problem_type", "dtype", "architectures")  # written only when set

    def __post_init__(self):
        self._check_values()
        if self.id2label is None:
            self.id2label = {i: f"LABEL_{i}" for i in range(2 if self.num_labels is None else self.num_labels)}
            self.label2id = None
        self.id2label = {int(k): v for k, v in self.id2label.items()}
        self.num_labels = len(self.id2label)
        if self.label2id is None:
            self.label2id = {v: k for k, v in self.id2label.items()}
        if isinstance(self.dtype, str) and self.dtype.startswith("torch."):
            self.dtype = self.dtype[len("torch."):]
        elif self.dtype is not None and not isinstance(self.dtype, str):
            self.dtype = str(self.dtype).removeprefix("torch.")  # a torch.dtype
        self._align_outputs()

    def _check_values(self) -> None:
        """A ValueError naming the field and what it accepts, before any layer is built from it."""

    def _check_whole_numbers(self, *names: str, least: int = 1) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be a whole number ≥ {least}, got {value!r}")

    def _check_numbers(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")

    def _check_rates(self, *names: str) -> None:
        self._check_numbers(*names)
        for name in names:
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")

    def _check_activation(self, name: str = "hidden_act") -> None:
        from .activations import ACTIVATIONS, activation  # torch: not needed to read a config

        value = getattr(self, name)
        if not isinstance(value, str):
            raise ValueError(f"{name} must be one of {', '.join(ACTIVATIONS)}, got {value!r}")
        if value not in ACTIVATIONS:
            activation(value)  # its ValueError names the allowed values

    def _align_outputs(self) -> None:
        """transformers' `out_features` / `out_indices` alignment: either gives the other; neither, the last stage."""
        names = self.stage_names
        features, indices = self.out_features, self.out_indices
        if features is None and indices is None:
            features, indices = [names[-1]], [len(names) - 1]
        elif features is None:
            indices = list(indices)
            if any(not -len(names) <= i < len(names) for i in indices):
                raise ValueError(f"out_indices {indices} out of range for stages {names[0]}…{names[-1]}")
            features = [names[i] for i in indices]
        elif indices is None:
            features = list(features)
            unknown = [f for f in features if f not in names]
            if unknown:
                raise ValueError(f"out_features {unknown} are not stages of this model ({names[0]}…{names[-1]})")
            indices = [names.index(f) for f in features]
        elif any(not -len(names) <= i < len(names) for i in indices) or [names[i] for i in indices] != list(features):
            raise ValueError(f"out_features {features} and out_indices {indices} name different stages")
        self.out_features, self.out_indices = list(features), list(indices)

    @property
    def stage_names(self) -> list[str]:
        return ["stem"] + [f"stage{i}" for i in range(1, self.num_stages + 1)]

    @property
    def num_stages(self) -> int:
        return self.num_hidden_layers

    @property
    def backbone_out_indices(self) -> list[int]:
        """Stages a backbone returns, as indices into `stage_names`."""
        return [self.stage_names.index(name) for name in self.out_features]

    @property
    def use_return_dict(self) -> bool:
        return self.return_dict

    @property
    def torch_dtype(self):
        """transformers 4.x's name for `dtype`, as a `torch.dtype` (or None)."""
        import torch

        return getattr(torch, self.dtype) if self.dtype else None

    def _default_outputs(self) -> bool:
        return self.out_indices == [self.num_stages] and self.out_features == [f"stage{self.num_stages}"]

    def replace(self, **changes):
        if ("num_hidden_layers" in changes or "depths" in changes) and self._default_outputs():
            changes.setdefault("out_features", None)
            changes.setdefault("out_indices", None)
        if ("out_features" in changes) != ("out_indices" in changes):  # the one given decides the other
            changes.setdefault("out_features", None)
            changes.setdefault("out_indices", None)
        if "num_labels" in changes and "id2label" not in changes:
            changes.update(id2label=None, label2id=None)
        return dataclasses.replace(self, **changes)

    def update(self, config_dict: dict[str, Any]) -> None:
        """transformers' `update`: set the given attributes (unknown keys are kept in `extra`)."""
        known = {f.name for f in dataclasses.fields(self)} - {"extra"}
        changes = {k: v for k, v in config_dict.items() if k in known}
        self.extra.update({k: v for k, v in config_dict.items() if k not in known and k not in _NOT_STORED})
        updated = self.replace(**changes)
        self.__dict__.update(updated.__dict__)

    # --- config.json as the hub repositories have it -------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "extra"}
        d.update(copy.deepcopy(self.extra))
        for key in self._OPTIONAL_KEYS:
            if d[key] is None:
                del d[key]
        d["id2label"] = {str(k): v for k, v in d["id2label"].items()}
        d.pop("num_labels")  # transformers derives it from id2label
        d["stage_names"] = self.stage_names
        d["model_type"] = self.model_type
        return d

    def _defaults(self) -> HubConfig:
        return type(self)()

    def to_diff_dict(self) -> dict[str, Any]:
        """Only what differs from the defaults (and the model type), as transformers' `to_diff_dict`."""
        default = self._defaults().to_dict()
        return {k: v for k, v in self.to_dict().items() if k == "model_type" or default.get(k, object()) != v}

    def to_json_string(self, use_diff: bool = True) -> str:
        d = self.to_diff_dict() if use_diff else self.to_dict()
        return json.dumps(d, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        d = dict(d)
        if "torch_dtype" in d and d.get("dtype") is None:
            d["dtype"] = d.pop("torch_dtype")
        d.pop("torch_dtype", None)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names and k not in _NOT_STORED}
        return cls(**known, extra=extra)

    # transformers' file methods: the files themselves are read and written by `dinokit.weights` (imported
    # when called, so that this module stays free of files and the rest of dinokit)
    def to_json_file(self, path: str | os.PathLike, architectures: list[str] | None = None) -> None:
        from ..weights.config_files import write_config

        write_config(self, path, architectures)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike):
        from ..weights.config_files import read_config

        return read_config(cls, path)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """config.json in `save_directory`, as transformers writes it."""
        from ..weights.config_files import save_config

        save_config(self, save_directory)

    @classmethod
    def from_pretrained(cls, name_or_path, **kwargs):
        """The config of a name, folder, file or hub id (see `dinokit.AutoConfig`); keyword arguments that
        are config fields override it, hub options (`revision`, `cache_dir`, …) are passed on."""
        from ..weights.pretrained import config_from_pretrained

        return config_from_pretrained(name_or_path, **kwargs)

    def __eq__(self, other):
        if not isinstance(other, HubConfig):
            return NotImplemented
        return self.to_dict() == other.to_dict()


@dataclass(eq=False)
class Dinov2Config(HubConfig):
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
    apply_layernorm: bool = True
    reshape_hidden_states: bool = True
    num_register_tokens: int = 0
    interpolate_mode: str | None = None

    _OPTIONAL_KEYS = ("problem_type", "interpolate_mode", "dtype", "architectures")

    @property
    def model_type(self) -> str:
        return "dinov2_with_registers" if self.num_register_tokens else "dinov2"

    def _check_values(self) -> None:
        self._check_whole_numbers("hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size", "image_size",
                                  "num_channels")
        self._check_whole_numbers("num_register_tokens", least=0)
        self._check_numbers("mlp_ratio", "layer_norm_eps", "layerscale_value", "initializer_range")
        self._check_rates("hidden_dropout_prob", "attention_probs_dropout_prob", "drop_path_rate")
        if not self.mlp_ratio > 0 or not self.layer_norm_eps > 0:
            name = "mlp_ratio" if not self.mlp_ratio > 0 else "layer_norm_eps"
            raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        self._check_activation()
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}"
            )
        if self.interpolate_mode is not None and self.interpolate_mode not in INTERPOLATE_MODES:
            raise ValueError(f"interpolate_mode must be one of {INTERPOLATE_MODES}, got {self.interpolate_mode!r}")

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

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if isinstance(d["mlp_ratio"], float) and d["mlp_ratio"].is_integer():
            d["mlp_ratio"] = int(d["mlp_ratio"])  # transformers 5 validates it as an int
        if not self.num_register_tokens:
            del d["num_register_tokens"]
        return d

    def _defaults(self) -> Dinov2Config:
        return type(self)(num_register_tokens=self.num_register_tokens)


@dataclass(eq=False)
class Dinov2WithRegistersConfig(Dinov2Config):
    """transformers' `Dinov2WithRegistersConfig`: the same fields, 4 registers, and its class default patch
    size of 16 (the released register models use 14, as their config.json says)."""

    patch_size: int = 16
    num_register_tokens: int = 4


def generic_labels(id2label: dict[int, str] | None) -> bool:
    """transformers' placeholder names (LABEL_0, LABEL_1, …): a config that names no classes."""
    return not id2label or all(v == f"LABEL_{k}" for k, v in id2label.items())


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
