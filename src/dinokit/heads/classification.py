"""Image classification on DINOv2 features, with transformers' semantics and the official linear heads.

Head input (after the final norm; registers excluded):
- 1 layer (transformers, official `linear_head`): [CLS, mean(patch tokens)] → 2·D
- 4 layers (official `linear4_head`): [CLS of the last 4 blocks (oldest first), mean(last block's patches)] → 5·D
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..models.config import Dinov2Config
from ..models.factory import build_backbone
from ..models.outputs import ModelOutput, wants_tuple
from ..models.vit import DinoVisionTransformer
from ..weights.labels import imagenet_id2label, imagenet_labels  # noqa: F401 (part of dinokit.heads)


@dataclass
class ImageClassifierOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def linear_head_input(model: DinoVisionTransformer, pixel_values: torch.Tensor, layers: int = 1) -> torch.Tensor:
    """The official `_lc` head input for 1 or 4 blocks."""
    if layers == 1:
        feats = model.forward_features(pixel_values)
        return torch.cat([feats["x_norm_clstoken"], feats["x_norm_patchtokens"].mean(dim=1)], dim=-1)
    outs = model.get_intermediate_layers(pixel_values, n=layers, return_class_token=True, norm=True)
    return torch.cat([cls for _, cls in outs] + [outs[-1][0].mean(dim=1)], dim=-1)


def problem_type_for(labels: torch.Tensor, num_labels: int) -> str:
    if num_labels == 1:
        return "regression"
    if labels.dtype in (torch.long, torch.int):
        return "single_label_classification"
    return "multi_label_classification"


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, num_labels: int, problem_type: str | None):
    """transformers' rule: 1 label → MSE; integer labels → cross-entropy; otherwise BCE with logits."""
    problem_type = problem_type or problem_type_for(labels, num_labels)
    if problem_type == "regression":
        if num_labels == 1:
            return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
        return F.mse_loss(logits, labels.to(logits.dtype))
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
    if problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    raise ValueError(f"unknown problem_type {problem_type!r}")


class ImageClassifier(nn.Module):
    """`dinov2` backbone + `classifier` (the attribute names transformers uses, so checkpoints map 1:1). The
    backbone is any family's (DINOv3 too: transformers has no DINOv3 classifier, dinokit keeps the same one)."""

    def __init__(self, config: Dinov2Config):
        super().__init__()
        self.config = config
        self.dinov2 = build_backbone(config)
        self.layers = int(config.extra.get("classifier_layers", 1))
        num_labels = config.num_labels
        self.classifier = nn.Linear((1 + self.layers) * config.hidden_size, num_labels) if num_labels > 0 else nn.Identity()
        if num_labels > 0:  # transformers' initialisation of a new head
            nn.init.trunc_normal_(self.classifier.weight, std=config.initializer_range)
            nn.init.zeros_(self.classifier.bias)

    @property
    def num_labels(self) -> int:
        return self.classifier.out_features if isinstance(self.classifier, nn.Linear) else 0

    @property
    def interpolate_mode(self) -> str:
        return self.dinov2.interpolate_mode

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, pixel_values: torch.Tensor, head_mask=None, labels: torch.Tensor | None = None,
                output_attentions: bool | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None):
        """transformers' documented signature and order; the loss as `classification_loss`, and the
        problem type it chose is stored in the config (as transformers does)."""
        if self.layers == 1:
            out = self.dinov2(pixel_values, head_mask=head_mask, output_attentions=output_attentions,
                              output_hidden_states=output_hidden_states, return_dict=True)
            tokens = out.last_hidden_state
            features = torch.cat([tokens[:, 0], tokens[:, self.dinov2.num_prefix_tokens:].mean(dim=1)], dim=-1)
            hidden_states, attentions = out.hidden_states, out.attentions
        else:
            features, hidden_states, attentions = linear_head_input(self.dinov2, pixel_values, self.layers), None, None
        logits = self.classifier(features)
        loss = None
        if labels is not None:
            if self.config.problem_type is None:
                self.config.problem_type = problem_type_for(labels, self.num_labels)
            loss = classification_loss(logits, labels, self.num_labels, self.config.problem_type)
        result = ImageClassifierOutput(loss=loss, logits=logits, hidden_states=hidden_states, attentions=attentions)
        return result.to_tuple() if wants_tuple(self.config, return_dict) else result
