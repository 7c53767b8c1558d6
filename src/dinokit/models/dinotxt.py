"""dino.txt ("DINOv2 Meets Text"): a text tower aligned with a frozen DINOv2 ViT-L/14 with registers (or, for
DINOv3's dino.txt, a frozen DINOv3 ViT-L/16: the same heads on its tokens).

Vision: the backbone's normalised last-layer tokens [CLS, registers, patches] → 2 blocks (split SwiGLU
aligned to 64, LayerScale, no qkv bias, LayerNorm eps 1e-5) → LayerNorm; the image embedding is [head CLS,
mean of head patches] (1024 + 1024). Text: a causal transformer over CLIP's BPE ids, pooled at the
end-of-text token (the largest id), projected to the embedding size without bias. The first half of a
text embedding is aligned with the image's CLS half, the second with its pooled-patch half.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .config import HubConfig, preset_config
from .factory import build_backbone
from .layers import Block


@dataclass
class DinoTxtConfig:
    embed_dim: int = 2048
    vision_head_blocks: int = 2
    vision_head_align: int = 64  # the SwiGLU hidden size is rounded up to a multiple of this
    text_context_length: int = 77
    text_vocab_size: int = 49408
    text_width: int = 1280
    text_heads: int = 20
    text_layers: int = 24
    text_ffn_ratio: float = 4.0
    logit_scale: float = math.log(1 / 0.07)  # not in the released files: the official model keeps its initial value
    backbone: HubConfig = field(default_factory=lambda: preset_config("l", registers=True))  # or DINOv3's ViT-L/16

    def to_dict(self) -> dict:
        d = asdict(self)
        d["backbone"] = self.backbone.to_dict()
        return d


def swiglu_hidden(dim: int, align: int, ratio: float = 4.0) -> int:
    hidden = int(dim * ratio * 2 / 3)
    return hidden + (-hidden % align)


class VisionHead(nn.Module):
    def __init__(self, dim: int, heads: int, blocks: int, align: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(dim, heads, swiglu_hidden(dim, align), swiglu=True, swiglu_fused=False, qkv_bias=False,
                  layerscale=1e-5, eps=1e-5) for _ in range(blocks))
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            tokens = block(tokens)[0]
        return self.norm(tokens)


class TextTransformer(nn.Module):
    """Token and position embeddings, causal pre-norm blocks (GELU MLP, no LayerScale, no qkv bias), a final
    LayerNorm, pooled at the end-of-text token, projected to the embedding size."""

    def __init__(self, c: DinoTxtConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(c.text_vocab_size, c.text_width)
        self.positional_embedding = nn.Parameter(torch.zeros(c.text_context_length, c.text_width))
        self.blocks = nn.ModuleList(
            Block(c.text_width, c.text_heads, int(c.text_width * c.text_ffn_ratio), qkv_bias=False, layerscale=None,
                  eps=1e-5, causal=True) for _ in range(c.text_layers))
        self.norm = nn.LayerNorm(c.text_width)
        self.projection = nn.Linear(c.text_width, c.embed_dim, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(ids) + self.positional_embedding[: ids.shape[1]]
        for block in self.blocks:
            x = block(x)[0]
        x = self.norm(x)
        end = ids.argmax(dim=-1)  # the end-of-text token has the largest id
        return self.projection(x.gather(1, end[:, None, None].expand(-1, 1, x.shape[-1]))[:, 0])


class DinoTxt(nn.Module):
    """`encode_image(pixels)`, `encode_text(ids)`, `get_visual_class_and_patch_tokens(pixels)` and
    `logit_scale`, as the official `DinoTxt`; `forward(pixels, ids)` → (image, text features normalised,
    logit scale)."""

    def __init__(self, config: DinoTxtConfig | None = None):
        super().__init__()
        self.config = c = config or DinoTxtConfig()
        self.backbone = build_backbone(c.backbone)
        dim = c.backbone.hidden_size
        self.vision_head = VisionHead(dim, c.backbone.num_attention_heads, c.vision_head_blocks, c.vision_head_align)
        self.text = TextTransformer(c)
        self.logit_scale = nn.Parameter(torch.tensor([c.logit_scale]))

    @property
    def patch_size(self) -> int:
        return self.backbone.patch_size

    @property
    def num_prefix_tokens(self) -> int:
        return self.backbone.num_prefix_tokens

    @property
    def interpolate_mode(self) -> str:
        return self.backbone.interpolate_mode

    def get_visual_class_and_patch_tokens(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.vision_head(self.backbone(pixel_values, return_dict=True).last_hidden_state)
        return tokens[:, 0], tokens[:, 1 + self.backbone.num_register_tokens:]

    def encode_image(self, pixel_values: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        cls, patches = self.get_visual_class_and_patch_tokens(pixel_values)
        features = torch.cat([cls, patches.mean(dim=1)], dim=-1)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, ids: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = self.text(ids)
        return F.normalize(features, dim=-1) if normalize else features

    def forward(self, pixel_values: torch.Tensor, ids: torch.Tensor):
        return self.encode_image(pixel_values, True), self.encode_text(ids, True), self.logit_scale.exp()
