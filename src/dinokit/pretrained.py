"""The public model classes (a pure module from `models` + checkpoint I/O from `weights`), `load_model`,
and the entry points of the other libraries: torch.hub names and mmpretrain's `get_model`."""
from __future__ import annotations

import torch
from torch import nn

from .models.config import Dinov2Config, preset_config
from .models.vit import DinoVisionTransformer
from .weights.names import lookup
from .weights.pretrained import PretrainedMixin


class Dinov2Model(PretrainedMixin, DinoVisionTransformer):
    """The DINOv2 backbone with the transformers call signature and the official vocabulary."""

    hf_architecture = "Dinov2Model"


def load_model(name_or_path, *, interpolate_mode: str | None = None, device="cpu",
               dtype: torch.dtype = torch.float32, config: Dinov2Config | None = None) -> Dinov2Model:
    """An eval-mode model from a Hugging Face id, a torch.hub name, an mmpretrain name, or a local file or
    folder in any supported layout (official, transformers, timm, mmpretrain)."""
    return Dinov2Model.from_pretrained(
        name_or_path, interpolate_mode=interpolate_mode, device=device, dtype=dtype, config=config
    )


# --- torch.hub vocabulary: dinov2_vits14(), dinov2_vitb14_reg(), ... -------------------------------
def _hub_entry(name: str):
    source = lookup(name)

    def entry(*, pretrained: bool = True, interpolate_mode: str | None = None, **config_overrides) -> Dinov2Model:
        if pretrained:
            return load_model(name, interpolate_mode=interpolate_mode)
        config = preset_config(source.size, source.registers, interpolate_mode=interpolate_mode, **config_overrides)
        return Dinov2Model(config)

    entry.__name__ = name
    entry.__doc__ = f"torch.hub's `{name}`: the released weights, or a random model with pretrained=False."
    return entry


dinov2_vits14 = _hub_entry("dinov2_vits14")
dinov2_vitb14 = _hub_entry("dinov2_vitb14")
dinov2_vitl14 = _hub_entry("dinov2_vitl14")
dinov2_vitg14 = _hub_entry("dinov2_vitg14")
dinov2_vits14_reg = _hub_entry("dinov2_vits14_reg")
dinov2_vitb14_reg = _hub_entry("dinov2_vitb14_reg")
dinov2_vitl14_reg = _hub_entry("dinov2_vitl14_reg")
dinov2_vitg14_reg = _hub_entry("dinov2_vitg14_reg")


# --- mmpretrain vocabulary --------------------------------------------------------------------------
class MMPretrainFeatureModel(nn.Module):
    """What mmpretrain's `get_model('vit-*-p14_dinov2-pre_3rdparty')` returns, as far as features go:
    `extract_feat` gives a one-element tuple with the normalised CLS token (out_type 'cls_token')."""

    def __init__(self, backbone: Dinov2Model):
        super().__init__()
        self.backbone = backbone

    def extract_feat(self, inputs: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.backbone(inputs).pooler_output,)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor]:
        return self.extract_feat(inputs)


def get_model(name: str, pretrained: bool | str = False, **kwargs) -> MMPretrainFeatureModel:
    """mmpretrain's `get_model`: `pretrained=True` loads the published weights, a path loads that file.
    The interpolation defaults to mmpretrain's own (size-based bicubic, no antialias: mode "hf")."""
    source = lookup(name)
    if source is None or source.interpolate_mode != "hf":
        raise ValueError(f"{name!r} is not an mmpretrain DINOv2 name (e.g. 'vit-small-p14_dinov2-pre_3rdparty')")
    mode = kwargs.pop("interpolate_mode", "hf")
    if pretrained:
        backbone = load_model(name if pretrained is True else pretrained, interpolate_mode=mode, **kwargs)
    else:
        backbone = Dinov2Model(preset_config(source.size, False, interpolate_mode=mode)).eval()
    return MMPretrainFeatureModel(backbone)
