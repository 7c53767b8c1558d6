"""The public model classes (a pure module from `models` + checkpoint I/O from `weights`), `load_model`,
and the entry points of the other libraries: torch.hub names and mmpretrain's `get_model`."""
from __future__ import annotations

import torch
from torch import nn

from .heads.backbone import FeatureBackbone
from .heads.classification import ImageClassifier
from .models.config import Dinov2Config, preset_config
from .models.vit import DinoVisionTransformer
from .weights.checkpoint import load_converted, read_state_dict
from .weights.formats import hf_base_prefix, to_hf
from .weights.names import lookup
from .weights.pretrained import PretrainedMixin, ResolvedCheckpoint, resolve_checkpoint, with_linear_head


class Dinov2Model(PretrainedMixin, DinoVisionTransformer):
    """The DINOv2 backbone with the transformers call signature and the official vocabulary."""

    hf_architecture = "Dinov2Model"


class Dinov2ForImageClassification(PretrainedMixin, ImageClassifier):
    """transformers' `Dinov2ForImageClassification`; also loads the official linear heads:
    `from_pretrained("dinov2_vits14_lc", layers=1|4)` or `from_pretrained(backbone, head="..._linear4_head.pth")`."""

    hf_architecture = "Dinov2ForImageClassification"

    @classmethod
    def _config_for(cls, config, found: ResolvedCheckpoint, head=None, layers=None, id2label=None, **_):
        if head is not None:
            found.head = read_state_dict(head)
        if found.head is None:
            raise ValueError("this checkpoint has no classification head: load a classifier checkpoint, an `_lc` "
                             "name, or pass head=FILE (an official *_linear_head.pth / *_linear4_head.pth)")
        rows, width = found.head["weight"].shape
        layers = layers or max(1, width // config.hidden_size - 1)
        if config.id2label is not None and len(config.id2label) == rows and id2label is None:
            id2label = config.id2label
        elif id2label is None and rows != 1000:
            id2label = {i: f"LABEL_{i}" for i in range(rows)}
        return with_linear_head(config, layers, id2label)

    def _load_resolved(self, found: ResolvedCheckpoint, source: str, **_):
        load_converted(self.dinov2, found.state_dict, source=source)
        load_converted(self.classifier, found.head, source=f"{source} (classification head)")

    def _hf_state_dict(self):
        prefix = hf_base_prefix(self.config.num_register_tokens > 0)
        tensors = {prefix + k: v for k, v in to_hf(self.dinov2.state_dict()).items()}
        tensors.update({f"classifier.{k}": v for k, v in self.classifier.state_dict().items()})
        return tensors


class Dinov2Backbone(PretrainedMixin, FeatureBackbone):
    """transformers' `Dinov2Backbone`: feature maps of the stages in `out_features` / `out_indices`."""

    hf_architecture = "Dinov2Backbone"

    @classmethod
    def _config_for(cls, config, found, out_features=None, out_indices=None, **_):
        if out_features is not None or out_indices is not None:
            config = config.replace(out_features=out_features, out_indices=out_indices)
        return config

    def _load_resolved(self, found: ResolvedCheckpoint, source: str, **_):
        load_converted(self.dinov2, found.state_dict, source=source)

    def _hf_state_dict(self):
        return to_hf(self.dinov2.state_dict())


def load_model(name_or_path, *, interpolate_mode: str | None = None, device="cpu",
               dtype: torch.dtype = torch.float32, config: Dinov2Config | None = None, **kwargs):
    """An eval-mode model from a Hugging Face id, a torch.hub name, an mmpretrain name, or a local file or
    folder in any supported layout (official, transformers, timm, mmpretrain). Checkpoints with a
    classification head (`_lc` names, `*-imagenet1k-1-layer`, classifier folders, or `head=FILE`) give a
    `Dinov2ForImageClassification`, every other one a `Dinov2Model`."""
    found = resolve_checkpoint(name_or_path, head_layers=kwargs.get("layers"))
    cls = Dinov2ForImageClassification if found.head is not None or kwargs.get("head") else Dinov2Model
    return cls.from_resolved(found, str(name_or_path), interpolate_mode=interpolate_mode, device=device,
                             dtype=dtype, config=config, **kwargs)


# --- torch.hub vocabulary: dinov2_vits14(), dinov2_vitb14_reg(), dinov2_vits14_lc(layers=4), ... -------------
def _hub_entry(name: str):
    source = lookup(name)

    def entry(*, pretrained: bool = True, interpolate_mode: str | None = None, layers: int = 4, **config_overrides):
        kwargs = {"layers": layers} if source.linear_head else {}
        if pretrained:
            return load_model(name, interpolate_mode=interpolate_mode, **kwargs)
        config = preset_config(source.size, source.registers, interpolate_mode=interpolate_mode, **config_overrides)
        if source.linear_head:
            return Dinov2ForImageClassification(with_linear_head(config, layers))
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
dinov2_vits14_lc = _hub_entry("dinov2_vits14_lc")
dinov2_vitb14_lc = _hub_entry("dinov2_vitb14_lc")
dinov2_vitl14_lc = _hub_entry("dinov2_vitl14_lc")
dinov2_vitg14_lc = _hub_entry("dinov2_vitg14_lc")
dinov2_vits14_reg_lc = _hub_entry("dinov2_vits14_reg_lc")
dinov2_vitb14_reg_lc = _hub_entry("dinov2_vitb14_reg_lc")
dinov2_vitl14_reg_lc = _hub_entry("dinov2_vitl14_reg_lc")
dinov2_vitg14_reg_lc = _hub_entry("dinov2_vitg14_reg_lc")


# --- mmpretrain vocabulary --------------------------------------------------------------------------
class MMPretrainFeatureModel(nn.Module):
    """What mmpretrain's `get_model('vit-*-p14_dinov2-pre_3rdparty')` returns, as far as features go:
    `extract_feat` gives a one-element tuple with the normalised CLS token (out_type 'cls_token')."""

    def __init__(self, backbone: Dinov2Model):
        super().__init__()
        self.backbone = backbone

    def extract_feat(self, inputs: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.backbone.forward_class_token(inputs),)

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
