"""Feature maps for dense heads: transformers' `Dinov2Backbone` semantics and timm's `forward_intermediates`."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models.config import Dinov2Config
from ..models.factory import build_backbone
from ..models.outputs import ModelOutput, wants_tuple


@dataclass
class BackboneOutput(ModelOutput):
    feature_maps: tuple[torch.Tensor, ...] | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class FeatureBackbone(nn.Module):
    """Stages `stem, stage1 … stageN` (stem = the embeddings); `out_features`/`out_indices` pick them;
    `apply_layernorm` normalises them; `reshape_hidden_states` gives (B, D, H/14, W/14) maps of the patch
    tokens (CLS and registers dropped), else the token sequences."""

    def __init__(self, config: Dinov2Config):
        super().__init__()
        self.config = config
        self.dinov2 = build_backbone(config)

    @property
    def stage_names(self) -> list[str]:
        return self.config.stage_names

    @property
    def out_indices(self) -> list[int]:
        return self.config.backbone_out_indices

    @property
    def out_features(self) -> list[str]:
        return [self.stage_names[i] for i in self.out_indices]

    @property
    def channels(self) -> list[int]:
        return [self.config.hidden_size] * len(self.out_indices)

    @property
    def interpolate_mode(self) -> str:
        return self.dinov2.interpolate_mode

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None, return_dict: bool | None = None):
        vit = self.dinov2
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        out = vit(pixel_values, output_hidden_states=True, output_attentions=output_attentions, return_dict=True)
        B, _, H, W = pixel_values.shape
        h, w = H // vit.patch_size, W // vit.patch_size
        maps = []
        for i in self.out_indices:
            x = out.hidden_states[i]
            if self.config.apply_layernorm:
                x = vit.norm(x)
            if self.config.reshape_hidden_states:
                x = x[:, vit.num_prefix_tokens:].reshape(B, h, w, -1).permute(0, 3, 1, 2).contiguous()
            maps.append(x)
        result = BackboneOutput(feature_maps=tuple(maps),
                                hidden_states=out.hidden_states if output_hidden_states else None,
                                attentions=out.attentions)
        return result.to_tuple() if wants_tuple(self.config, return_dict) else result

    def forward_intermediates(self, x: torch.Tensor, indices: int | list[int] | None = None, norm: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False,
                              return_prefix_tokens: bool = False):
        """timm's vocabulary: block outputs (an int n: the last n blocks; a list: those blocks), as NCHW maps
        or NLC tokens, optionally with the prefix (CLS, registers) tokens; plus the final normed tokens."""
        vit = self.dinov2
        depth = len(vit.blocks)
        take = list(range(depth - indices, depth)) if isinstance(indices, int) else (
            [i % depth for i in indices] if indices is not None else list(range(depth)))
        B, _, H, W = x.shape
        h, w = H // vit.patch_size, W // vit.patch_size
        tokens, rope = vit.prepare_tokens(x), vit.rope_for((H, W))
        intermediates = []
        for i, blk in enumerate(vit.blocks):
            tokens, _ = blk(tokens, rope=rope)
            if i in take:
                y = vit.norm(tokens) if norm else tokens
                prefix, patches = y[:, :vit.num_prefix_tokens], y[:, vit.num_prefix_tokens:]
                if output_fmt == "NCHW":
                    patches = patches.reshape(B, h, w, -1).permute(0, 3, 1, 2).contiguous()
                intermediates.append((patches, prefix) if return_prefix_tokens else patches)
        if intermediates_only:
            return intermediates
        return vit.norm(tokens), intermediates
