"""The DINOv3 ViT and its config: the DINOv2 ViT's blocks with axial RoPE instead of learned position
embeddings, storage (register) tokens, the key bias held at zero, and optionally SwiGLU.

Token order is [CLS, storage tokens, patches]; RoPE rotates the patch queries and keys only. Parameter names
follow the official checkpoints (`storage_tokens`, `blocks.{i}.attn.qkv`, `mlp.w1/w2/w3`); other layouts are
translated in `dinokit.weights`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import HubConfig
from .layers import Block, reset_parameters
from .rope import augment_coordinates, patch_coordinates, rope_sin_cos
from .vit import VisionTransformerBase


@dataclass(eq=False)
class DINOv3ViTConfig(HubConfig):
    """transformers' `DINOv3ViTConfig`: the same fields and defaults (ViT-S/16 without registers; the released
    models have 4)."""

    patch_size: int = 16
    hidden_size: int = 384
    intermediate_size: int = 1536
    num_hidden_layers: int = 12
    num_attention_heads: int = 6
    hidden_act: str = "gelu"
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    rope_theta: float = 100.0
    image_size: int = 224
    num_channels: int = 3
    query_bias: bool = True
    key_bias: bool = False
    value_bias: bool = True
    proj_bias: bool = True
    mlp_bias: bool = True
    layerscale_value: float = 1.0
    drop_path_rate: float = 0.0
    use_gated_mlp: bool = False
    num_register_tokens: int = 0
    pos_embed_shift: float | None = None
    pos_embed_jitter: float | None = None
    pos_embed_rescale: float | None = 2.0
    apply_layernorm: bool = True
    reshape_hidden_states: bool = True

    model_type = "dinov3_vit"
    interpolate_mode = None  # RoPE: nothing to interpolate (kept so that code reading the field needs no branch)

    def _check_values(self) -> None:
        self._check_whole_numbers("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                  "patch_size", "image_size", "num_channels")
        self._check_whole_numbers("num_register_tokens", least=0)
        self._check_numbers("layer_norm_eps", "layerscale_value", "initializer_range", "rope_theta")
        self._check_rates("attention_dropout", "drop_path_rate")
        self._check_activation()
        if self.hidden_size % (4 * self.num_attention_heads):
            raise ValueError(f"hidden_size {self.hidden_size} must be a multiple of 4 × num_attention_heads "
                             f"({self.num_attention_heads}): RoPE rotates head_dim/4 frequencies per axis")
        if self.query_bias != self.value_bias:
            raise ValueError("query_bias and value_bias must agree: the fused QKV projection has one bias or none")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def qkv_bias(self) -> bool:
        return self.query_bias or self.key_bias or self.value_bias

    def _defaults(self) -> DINOv3ViTConfig:
        return DINOv3ViTConfig()


class DINOv3VisionTransformer(VisionTransformerBase):
    """The DINOv3 ViT; transformers' `DINOv3ViTModel.forward`, the official `forward_features` (with
    `x_storage_tokens`) and `get_intermediate_layers`, dinokit's fast paths — all from the shared base."""

    register_tokens_key = "x_storage_tokens"

    def __init__(self, config: DINOv3ViTConfig):
        super().__init__()
        self._patch_and_class_tokens(config)
        dim = config.hidden_size
        registers = config.num_register_tokens
        self.storage_tokens = nn.Parameter(torch.zeros(1, registers, dim)) if registers else None
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.blocks = nn.ModuleList(
            Block(dim, config.num_attention_heads, config.intermediate_size, swiglu=config.use_gated_mlp,
                  swiglu_fused=False, swiglu_act=True, qkv_bias=config.qkv_bias, mask_k_bias=not config.key_bias,
                  proj_bias=config.proj_bias, mlp_bias=config.mlp_bias, layerscale=config.layerscale_value,
                  drop_path=config.drop_path_rate, eps=config.layer_norm_eps, attn_drop=config.attention_dropout,
                  act=config.hidden_act)
            for _ in range(config.num_hidden_layers)
        )
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.init_weights()

    def init_weights(self) -> None:
        std = self.config.initializer_range
        nn.init.trunc_normal_(self.cls_token, std=std)
        if self.storage_tokens is not None:
            nn.init.trunc_normal_(self.storage_tokens, std=std)
        reset_parameters(self, std, (nn.Linear, nn.Conv2d))

    @property
    def register_tokens(self):
        """transformers' name for the storage tokens."""
        return self.storage_tokens

    @property
    def interpolate_mode(self) -> str:
        return "rope"

    def rope_for(self, image_hw):
        c = self.config
        h, w = (int(side) // self.patch_size for side in image_hw)
        coords = patch_coordinates(h, w, device=self.cls_token.device)
        if self.training:
            coords = augment_coordinates(coords, c.pos_embed_shift, c.pos_embed_jitter, c.pos_embed_rescale)
        return rope_sin_cos(coords, c.head_dim, c.rope_theta)

    def prepare_tokens(self, pixel_values: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        self.check_pixels(pixel_values)
        x = self.embed_patches(pixel_values, masks)
        prefix = [self.cls_token] + ([self.storage_tokens] if self.storage_tokens is not None else [])
        B = x.shape[0]
        return torch.cat([t.expand(B, -1, -1).to(x.dtype) for t in prefix] + [x], dim=1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


_SIZES = {  # name: (hidden_size, layers, heads, intermediate_size, gated MLP)
    "s": (384, 12, 6, 1536, False),
    "splus": (384, 12, 6, 1536, True),
    "b": (768, 12, 12, 3072, False),
    "l": (1024, 24, 16, 4096, False),
    "lplus": (1024, 24, 16, 4096, True),
    "hplus": (1280, 32, 20, 5120, True),
    "7b": (4096, 40, 32, 8192, True),
}
VIT_SIZES = tuple(_SIZES)


def heads_for_width(width: int) -> int:
    """The attention heads of the released ViT of this width (heads of 64 channels; the 7B's of 128), for a
    checkpoint that does not say; heads of 64 for any other width."""
    return next((heads for dim, _, heads, *_ in _SIZES.values() if dim == width), max(1, width // 64))


def dinov3_vit_config(size: str, **overrides) -> DINOv3ViTConfig:
    """The config of a released DINOv3 ViT (`s`, `splus`, `b`, `l`, `lplus`, `hplus`, `7b`): 4 storage tokens,
    LayerScale 1e-5; the 7B has no QKV bias."""
    try:
        dim, depth, heads, hidden, gated = _SIZES[size]
    except KeyError:
        raise ValueError(f"unknown DINOv3 ViT size {size!r}; expected one of {VIT_SIZES}") from None
    bias = size != "7b"
    values = dict(hidden_size=dim, num_hidden_layers=depth, num_attention_heads=heads, intermediate_size=hidden,
                  use_gated_mlp=gated, hidden_act="silu" if gated else "gelu", num_register_tokens=4,
                  layerscale_value=1e-5, query_bias=bias, value_bias=bias)
    values.update(overrides)
    return DINOv3ViTConfig(**values)
