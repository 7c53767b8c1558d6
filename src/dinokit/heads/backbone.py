"""Feature maps for dense heads: transformers' `Dinov2Backbone` semantics and timm's `forward_intermediates`."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models.config import Dinov2Config
from ..models.convnext import ConvNeXt
from ..models.dinov3 import DINOv3VisionTransformer
from ..models.factory import build_backbone
from ..models.outputs import ModelOutput, wants_tuple


@dataclass
class BackboneOutput(ModelOutput):
    feature_maps: tuple[torch.Tensor, ...] | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class FeatureBackbone(nn.Module):
    """Stages `stem, stage1 … stageN` (stem = the embeddings); `out_features`/`out_indices` pick them;
    `apply_layernorm` normalises them; `reshape_hidden_states` gives (B, D, H/p, W/p) maps of the patch
    tokens (CLS and registers dropped), else the token sequences. On a DINOv3 ConvNeXt, the stage maps
    (stem = the input), as transformers' `DINOv3ConvNextBackbone`."""

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
        if isinstance(self.dinov2, ConvNeXt):
            return [([self.config.num_channels] + self.config.hidden_sizes)[i] for i in self.out_indices]
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
        if isinstance(vit, ConvNeXt):  # transformers' DINOv3ConvNextBackbone: the stage maps as they are
            maps = [out.hidden_states[i] for i in self.out_indices]
        else:
            maps = [self._feature_map(out.hidden_states[i], i, pixel_values.shape) for i in self.out_indices]
        result = BackboneOutput(feature_maps=tuple(maps),
                                hidden_states=out.hidden_states if output_hidden_states else None,
                                attentions=out.attentions)
        return result.to_tuple() if wants_tuple(self.config, return_dict) else result

    def _feature_map(self, x: torch.Tensor, index: int, shape) -> torch.Tensor:
        """`apply_layernorm` normalises a stage; DINOv3's last stage is always normalised (transformers')."""
        vit, (B, _, H, W) = self.dinov2, shape
        if self.config.apply_layernorm or (isinstance(vit, DINOv3VisionTransformer) and index == len(self.stage_names) - 1):
            x = vit.norm(x)
        if self.config.reshape_hidden_states:
            h, w = H // vit.patch_size, W // vit.patch_size
            x = x[:, vit.num_prefix_tokens:].reshape(B, h, w, -1).permute(0, 3, 1, 2).contiguous()
        elif isinstance(vit, DINOv3VisionTransformer):  # transformers' DINOv3 sequences hold the patches alone
            x = x[:, vit.num_prefix_tokens:]
        return x

    def forward_intermediates(self, x: torch.Tensor, indices: int | list[int] | None = None, norm: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False,
                              return_prefix_tokens: bool = False):
        """timm's vocabulary (see the ViT's `forward_intermediates`)."""
        return self.dinov2.forward_intermediates(x, indices, norm, output_fmt, intermediates_only, return_prefix_tokens)
