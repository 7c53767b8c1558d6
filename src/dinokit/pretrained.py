"""The public model classes (a pure module from `models` + checkpoint I/O from `weights`), `load_model`,
and the entry points of the other libraries: torch.hub names and mmpretrain's `get_model`."""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .data.tokenizer import ClipTokenizer
from .heads.backbone import FeatureBackbone
from .heads.classification import ImageClassifier
from .models.config import Dinov2Config, HubConfig, generic_labels, preset_config
from .models.convnext import ConvNeXt, DINOv3ConvNextConfig
from .models.dinotxt import DinoTxt, DinoTxtConfig
from .models.dinov3 import DINOv3VisionTransformer, DINOv3ViTConfig
from .models.vit import DinoVisionTransformer
from .weights.checkpoint import load_converted, read_state_dict
from .weights.dinotxt import HEAD_AND_TEXT, dinotxt_files, read_dinotxt
from .weights.dinov3_formats import convnext_to_hf, vit_to_hf
from .weights.formats import hf_base_prefix, to_hf
from .weights.names import DINOTXT_NAMES, lookup
from .weights.pretrained import (
    PretrainedMixin,
    ResolvedCheckpoint,
    device_of,
    dinov3_preset,
    load_pretrained,
    with_linear_head,
)


class Dinov2Model(PretrainedMixin, DinoVisionTransformer):
    """The DINOv2 backbone with the transformers call signature and the official vocabulary."""

    hf_architecture = "Dinov2Model"


class DINOv3ViTModel(PretrainedMixin, DINOv3VisionTransformer):
    """The DINOv3 ViT with transformers' `DINOv3ViTModel` call signature and the official vocabulary."""

    hf_architecture = "DINOv3ViTModel"
    config_class = DINOv3ViTConfig

    def _hf_state_dict(self):
        return vit_to_hf(self.state_dict())


class DINOv3ConvNextModel(PretrainedMixin, ConvNeXt):
    """The DINOv3 ConvNeXt with transformers' `DINOv3ConvNextModel` call signature and the official vocabulary."""

    hf_architecture = "DINOv3ConvNextModel"
    config_class = DINOv3ConvNextConfig

    def _hf_state_dict(self):
        return convnext_to_hf(self.state_dict())

    def get_input_embeddings(self):
        return None  # as transformers: a ConvNeXt has no patch embedding


MODEL_CLASSES = {Dinov2Config: Dinov2Model, DINOv3ViTConfig: DINOv3ViTModel, DINOv3ConvNextConfig: DINOv3ConvNextModel}


def model_class_for(config):
    """The bare model class of a config of any family."""
    return next(cls for config_type, cls in MODEL_CLASSES.items() if isinstance(config, config_type))


class Dinov2ForImageClassification(PretrainedMixin, ImageClassifier):
    """transformers' `Dinov2ForImageClassification`; also loads the official linear heads:
    `from_pretrained("dinov2_vits14_lc", layers=1|4)` or `from_pretrained(backbone, head="..._linear4_head.pth")`.
    A backbone-only checkpoint gets a new, randomly initialised head of `num_labels` classes, as in transformers."""

    config_class = HubConfig
    load_options = ("head", "layers", "ignore_mismatched_sizes")

    @classmethod
    def _config_for(cls, config, found: ResolvedCheckpoint, head=None, layers=None, ignore_mismatched_sizes=False,
                    labels_asked=False):
        if head is not None:
            found.head = read_state_dict(head)
        if found.head is not None:
            rows, width = found.head["weight"].shape
            layers = layers or max(1, width // config.hidden_size - 1)
            if labels_asked and config.num_labels != rows:
                if not ignore_mismatched_sizes:
                    raise ValueError(f"the checkpoint's head has {rows} classes and num_labels={config.num_labels} was "
                                     "asked for: pass ignore_mismatched_sizes=True to start a new head")
                found.head = None
            elif not generic_labels(config.id2label) and len(config.id2label) == rows:
                return with_linear_head(config, layers, config.id2label)
            else:  # unnamed classes: ImageNet-1k's names for a 1000-class head (the released ones), else LABEL_i
                return with_linear_head(config, layers, None if rows == 1000 else {i: f"LABEL_{i}" for i in range(rows)})
        warnings.warn(f"the classification head ({config.num_labels} classes) is newly initialised: train it before use",
                      stacklevel=2)
        return with_linear_head(config, layers or 1, config.id2label)

    def _load_resolved(self, found: ResolvedCheckpoint, source: str):
        load_converted(self.dinov2, found.state_dict, source=source)
        if found.head is not None:
            load_converted(self.classifier, found.head, source=f"{source} (classification head)")

    def _hf_state_dict(self):
        if isinstance(self.config, Dinov2Config):
            prefix = hf_base_prefix(self.config.num_register_tokens > 0)
            tensors = {prefix + k: v for k, v in to_hf(self.dinov2.state_dict()).items()}
        else:  # DINOv3: the backbone's own transformers layout, the head beside it
            tensors = (vit_to_hf if isinstance(self.config, DINOv3ViTConfig) else convnext_to_hf)(self.dinov2.state_dict())
        tensors.update({f"classifier.{k}": v for k, v in self.classifier.state_dict().items()})
        return tensors

    @property
    def hf_architecture(self) -> str:
        if isinstance(self.config, Dinov2Config):
            return "Dinov2ForImageClassification"
        return model_class_for(self.config).hf_architecture.replace("Model", "ForImageClassification")


class Dinov2Backbone(PretrainedMixin, FeatureBackbone):
    """transformers' `Dinov2Backbone`: feature maps of the stages in `out_features` / `out_indices`."""

    hf_architecture = "Dinov2Backbone"

    def _load_resolved(self, found: ResolvedCheckpoint, source: str):
        load_converted(self.dinov2, found.state_dict, source=source)

    def _hf_state_dict(self):
        return to_hf(self.dinov2.state_dict())


class DINOv3ViTBackbone(Dinov2Backbone):
    """transformers' `DINOv3ViTBackbone` (the last stage always normalised); on a ConvNeXt checkpoint, the
    stage maps of `DINOv3ConvNextBackbone`."""

    config_class = HubConfig

    def _hf_state_dict(self):
        return (vit_to_hf if isinstance(self.config, DINOv3ViTConfig) else convnext_to_hf)(self.dinov2.state_dict())

    @property
    def hf_architecture(self) -> str:
        return "DINOv3ViTBackbone" if isinstance(self.config, DINOv3ViTConfig) else "DINOv3ConvNextBackbone"


def load_model(name_or_path, *model_args, **kwargs):
    """An eval-mode model from a Hugging Face id, a torch.hub name, an mmpretrain name, or a local file or
    folder in any supported layout (official, transformers, timm, mmpretrain). Checkpoints with a
    classification head (`_lc` names, `*-imagenet1k-1-layer`, classifier folders, or `head=FILE`) give a
    `Dinov2ForImageClassification`, every other one a `Dinov2Model`. Keywords as `from_pretrained`'s."""
    def choose(found, options):
        if found.head is not None or options.get("head"):
            return Dinov2ForImageClassification
        return model_class_for(found.config)

    return load_pretrained(choose, "load_model", name_or_path, model_args, Dinov2ForImageClassification.load_options,
                           **kwargs)


# --- transformers' Auto* entry points -------------------------------------------------------------------
class _Auto:
    """`from_pretrained` / `from_config` of transformers' Auto classes, for every DINOv2 checkpoint."""

    model_class: type

    def __init__(self):
        raise OSError(f"{type(self).__name__} is built with {type(self).__name__}.from_pretrained(...) "
                               f"or .from_config(config)")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        return cls.model_class.from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    @classmethod
    def from_config(cls, config: Dinov2Config, **overrides):
        """A randomly initialised model of `config` (fields overridable by keyword)."""
        if overrides:
            config = config.replace(**overrides)
        return cls.model_class(config)


class AutoModel(_Auto):
    """transformers' `AutoModel`: the bare model of the checkpoint's family — `Dinov2Model`, `DINOv3ViTModel` or
    `DINOv3ConvNextModel` (a classifier checkpoint's head is left out)."""

    model_class = Dinov2Model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, torch_dtype=None, dtype=None, **kwargs):
        """`Dinov2Model.from_pretrained`'s keywords, for a checkpoint of any family."""
        return load_pretrained(lambda found, options: model_class_for(found.config), "AutoModel.from_pretrained",
                               pretrained_model_name_or_path, model_args, (),
                               dtype=dtype if dtype is not None else torch_dtype, **kwargs)

    @classmethod
    def from_config(cls, config, **overrides):
        if overrides:
            config = config.replace(**overrides)
        return model_class_for(config)(config)


class AutoModelForImageClassification(_Auto):
    model_class = Dinov2ForImageClassification


class AutoBackbone(_Auto):
    """transformers' `AutoBackbone`: `Dinov2Backbone`, or `DINOv3ViTBackbone` for a DINOv3 checkpoint."""

    model_class = Dinov2Backbone

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, torch_dtype=None, dtype=None, **kwargs):
        def choose(found, options):
            return Dinov2Backbone if isinstance(found.config, Dinov2Config) else DINOv3ViTBackbone

        return load_pretrained(choose, "AutoBackbone.from_pretrained", pretrained_model_name_or_path, model_args, (),
                               dtype=dtype if dtype is not None else torch_dtype, **kwargs)

    @classmethod
    def from_config(cls, config, **overrides):
        if overrides:
            config = config.replace(**overrides)
        return (Dinov2Backbone if isinstance(config, Dinov2Config) else DINOv3ViTBackbone)(config)


class AutoConfig:
    """transformers' `AutoConfig.from_pretrained` / `for_model` for DINOv2 configs."""

    def __init__(self):
        raise OSError("AutoConfig is built with AutoConfig.from_pretrained(...)")

    @staticmethod
    def from_pretrained(pretrained_model_name_or_path, **kwargs) -> Dinov2Config:
        return Dinov2Config.from_pretrained(pretrained_model_name_or_path, **kwargs)

    @staticmethod
    def for_model(model_type: str, **kwargs) -> Dinov2Config:
        if model_type not in ("dinov2", "dinov2_with_registers"):
            raise ValueError(f"dinokit has DINOv2 configs only, not {model_type!r}")
        if model_type == "dinov2_with_registers":
            kwargs.setdefault("num_register_tokens", 4)
        return Dinov2Config(**kwargs)


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


def _dinov3_hub_entry(name: str):
    source = lookup(name)

    def entry(*, pretrained: bool = True, weights: str | None = None, **config_overrides):
        """`weights`: "LVD1689M" (default), "SAT493M" (ViT-L and 7B), a signed URL or a local file, as torch.hub's."""
        if weights is not None and weights.upper() in ("LVD1689M", "SAT493M"):
            chosen = name if weights.upper() == "LVD1689M" else f"{name}_sat493m"
            if lookup(chosen) is None:
                raise ValueError(f"{name} has no {weights} weights (SAT493M exists for dinov3_vitl16 and dinov3_vit7b16)")
        else:
            chosen = weights or name
        if pretrained:
            return AutoModel.from_pretrained(chosen, **config_overrides)
        config = dinov3_preset(source)
        return model_class_for(config)(config.replace(**config_overrides) if config_overrides else config)

    entry.__name__ = name
    entry.__doc__ = f"torch.hub's `{name}` (facebookresearch/dinov3): the released (gated) weights, or a random model."
    return entry


dinov3_vits16 = _dinov3_hub_entry("dinov3_vits16")
dinov3_vits16plus = _dinov3_hub_entry("dinov3_vits16plus")
dinov3_vitb16 = _dinov3_hub_entry("dinov3_vitb16")
dinov3_vitl16 = _dinov3_hub_entry("dinov3_vitl16")
dinov3_vitl16plus = _dinov3_hub_entry("dinov3_vitl16plus")
dinov3_vith16plus = _dinov3_hub_entry("dinov3_vith16plus")
dinov3_vit7b16 = _dinov3_hub_entry("dinov3_vit7b16")
dinov3_convnext_tiny = _dinov3_hub_entry("dinov3_convnext_tiny")
dinov3_convnext_small = _dinov3_hub_entry("dinov3_convnext_small")
dinov3_convnext_base = _dinov3_hub_entry("dinov3_convnext_base")
dinov3_convnext_large = _dinov3_hub_entry("dinov3_convnext_large")


# --- mmpretrain vocabulary --------------------------------------------------------------------------
class MMPretrainFeatureModel(nn.Module):
    """What mmpretrain's `get_model('vit-*-p14_dinov2-pre_3rdparty')` returns, as far as a backbone goes: an
    eval-mode model with mmpretrain's parameters (no mask token), `extract_feat` = a one-element tuple with the
    normalised CLS token (out_type 'cls_token'), `forward(inputs, data_samples=None, mode="tensor")`. Inputs
    whose sides are not multiples of 14 are zero-padded at the bottom and right, as mmpretrain's
    `AdaptivePadding(padding="corner")` does (dinokit's other models floor them, as transformers)."""

    def __init__(self, backbone: Dinov2Model):
        super().__init__()
        self.backbone = backbone
        self.eval()

    def extract_feat(self, inputs: torch.Tensor) -> tuple[torch.Tensor]:
        p = self.backbone.patch_size
        H, W = inputs.shape[-2:]
        inputs = F.pad(inputs, (0, -W % p, 0, -H % p))
        return (self.backbone.forward_class_token(inputs),)

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = "tensor"):
        if mode == "tensor":
            return self.extract_feat(inputs)
        if mode in ("loss", "predict"):
            raise ValueError(f'mode="{mode}" needs a classification head, and the DINOv2 models have none '
                             f'(mmpretrain fails there too): use mode="tensor" or extract_feat')
        raise RuntimeError(f'Invalid mode "{mode}".')


def get_model(name: str, pretrained: bool | str = False, device=None, device_map=None, **kwargs) -> MMPretrainFeatureModel:
    """mmpretrain's `get_model`: `pretrained=True` loads the published weights, a path loads that file.
    The interpolation defaults to mmpretrain's own (size-based bicubic, no antialias: mode "hf")."""
    source = lookup(name)
    if source is None or source.interpolate_mode != "hf":
        raise ValueError(f"{name!r} is not an mmpretrain DINOv2 name (e.g. 'vit-small-p14_dinov2-pre_3rdparty')")
    mode = kwargs.pop("interpolate_mode", "hf")
    if pretrained:
        backbone = Dinov2Model.from_pretrained(name if pretrained is True else pretrained, interpolate_mode=mode,
                                               use_mask_token=False, device=device, device_map=device_map, **kwargs)
    else:
        if kwargs:
            raise TypeError(f"get_model() got unexpected keyword arguments {', '.join(map(repr, kwargs))}")
        config = preset_config(source.size, False, interpolate_mode=mode, use_mask_token=False)
        backbone = Dinov2Model(config).to(device_of(device_map, device))
    return MMPretrainFeatureModel(backbone)


class DinoTxtModel(DinoTxt):
    """dino.txt with its tokenizer: `DinoTxtModel.from_pretrained("dinotxt")` (or the torch.hub name, or a folder
    of the official files); `tokenize(texts)`, `encode_image`, `encode_text`, `get_visual_class_and_patch_tokens`,
    `logit_scale`, as the official model and tokenizer."""

    tokenizer: ClipTokenizer | None = None

    @classmethod
    def from_pretrained(cls, name_or_path="dinotxt", *, device=None, dtype=None, interpolate_mode: str | None = None,
                        local_files_only: bool = False, **config_fields) -> DinoTxtModel:
        files = dinotxt_files(name_or_path, local_files_only=local_files_only)
        sd, fields = read_dinotxt(files)
        fields.update(config_fields)
        if interpolate_mode is not None:
            if not isinstance(fields["backbone"], Dinov2Config):
                raise ValueError(f"interpolate_mode={interpolate_mode!r} applies to DINOv2's learned position "
                                 "embeddings; this dino.txt runs on a DINOv3 backbone (RoPE), which has none")
            fields["backbone"].interpolate_mode = interpolate_mode
        with torch.device("meta"):
            model = cls(DinoTxtConfig(**fields))
        model.to_empty(device="cpu")
        sd.setdefault("logit_scale", torch.tensor([model.config.logit_scale]))
        load_converted(model, sd, str(name_or_path))
        model.tokenizer = ClipTokenizer(files["vocab"])
        model.name_or_path = str(name_or_path)
        return model.to(device=device or "cpu", dtype=dtype).eval()

    def tokenize(self, texts, context_length: int | None = None) -> torch.Tensor:
        if self.tokenizer is None:
            raise ValueError("this model has no tokenizer: load it with DinoTxtModel.from_pretrained")
        return self.tokenizer.tokenize(texts, context_length or self.config.text_context_length)

    def encode_texts(self, texts, normalize: bool = False) -> torch.Tensor:
        """Tokenize and encode strings on the model's device."""
        ids = self.tokenize(texts).to(self.logit_scale.device)
        return self.encode_text(ids, normalize=normalize)


def is_dinotxt(name_or_path) -> bool:
    """A dino.txt name, or a folder holding dino.txt's text encoder file."""
    from pathlib import Path

    if str(name_or_path) in DINOTXT_NAMES:
        return True
    folder = Path(name_or_path)
    return folder.is_dir() and (any(folder.glob("*_text_encoder.pth")) or any(folder.glob(f"*{HEAD_AND_TEXT}*.pth")))
