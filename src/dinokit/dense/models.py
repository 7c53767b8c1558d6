"""Backbone + dense head as modules, built from what `dinokit.weights.dense_sources` resolves (official
names and head files, transformers' DPT repositories/folders, the heads `dinokit train-seg` saves)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..heads.depth import DPTDepthHead, LinearDepthHead, center_pad
from ..heads.segmentation import LinearSegmentationHead
from ..io import atomic_write, write_text_atomic
from ..models.config import Dinov2Config
from ..models.vit import DinoVisionTransformer
from ..pretrained import AutoModel, Dinov2Model
from ..weights.checkpoint import HEAD_META_NAME, HEAD_WEIGHTS_NAME, load_converted
from ..weights.dense_sources import resolve_depth, resolve_segmentation

_FOUR_BLOCKS = {12: [2, 5, 8, 11], 24: [4, 11, 17, 23], 40: [9, 19, 29, 39]}  # the official depthers' blocks


def depth_blocks(depth: int, layers: int) -> list[int]:
    """Blocks the official depth heads read: the last one, or four spread over the network."""
    if layers == 1:
        return [depth - 1]
    if depth < layers:
        raise ValueError(f"a head on {layers} blocks needs a backbone with at least {layers} blocks, not {depth}")
    return _FOUR_BLOCKS.get(depth, [depth * (i + 1) // 4 - 1 for i in range(4)])


def last_blocks(depth: int, layers: int) -> list[int]:
    return list(range(depth - layers, depth))


class DepthModel(nn.Module):
    """forward: the head's raw depth on the centre-padded input; predict: clamped to [min, max] depth and
    resized to the input's size (bilinear), as the official depthers return it."""

    def __init__(self, backbone: DinoVisionTransformer, head: nn.Module, blocks: list[int], norm: bool = False,
                 pad: bool = True):
        super().__init__()
        self.backbone, self.head, self.blocks, self.norm, self.pad = backbone, head, list(blocks), norm, pad

    def features(self, pixel_values: torch.Tensor):
        x = center_pad(pixel_values, self.backbone.patch_size) if self.pad else pixel_values
        return list(self.backbone.get_intermediate_layers(x, n=self.blocks, reshape=True, return_class_token=True,
                                                          norm=self.norm))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pixel_values))

    @torch.inference_mode()
    def predict(self, pixel_values: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Depth [B, 1, H, W] at `size` (default: the input's)."""
        depth = self(pixel_values).clamp(self.head.min_depth, self.head.max_depth)
        return F.interpolate(depth, size=size or pixel_values.shape[2:], mode="bilinear", align_corners=False)


class SegmentationModel(nn.Module):
    """Logits at the input's size: the head on the patch features of `blocks` (normed), bilinear upsampling."""

    def __init__(self, backbone: DinoVisionTransformer, head: LinearSegmentationHead, blocks: list[int],
                 class_names: list[str] | None = None, image_size: int | None = 448, backbone_source: str = ""):
        super().__init__()
        self.backbone, self.head, self.blocks = backbone, head, list(blocks)
        self.class_names = class_names or [f"class {i}" for i in range(head.num_classes)]
        self.image_size, self.backbone_source = image_size, backbone_source

    def features(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        x = center_pad(pixel_values, self.backbone.patch_size)
        return list(self.backbone.get_intermediate_layers(x, n=self.blocks, reshape=True, norm=True))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.features(pixel_values))
        return F.interpolate(logits, size=pixel_values.shape[2:], mode="bilinear", align_corners=False)

    def save(self, folder) -> Path:
        """head.safetensors + head.json (classes, blocks, image size, and the backbone to load with it)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(folder / HEAD_WEIGHTS_NAME) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, str(tmp))
        meta = {"task": "segmentation", "backbone": self.backbone_source, "blocks": self.blocks,
                "embed_dim": self.backbone.config.hidden_size, "layers": self.head.layers, "class_names": self.class_names,
                "image_size": self.image_size}
        write_text_atomic(folder / HEAD_META_NAME, json.dumps(meta, indent=2))
        return folder


def _backbone(source, device) -> nn.Module:
    return source if isinstance(source, nn.Module) else AutoModel.from_pretrained(source, device=device)


def _load_head(head: nn.Module, sd: dict, source: str) -> nn.Module:
    load_converted(head, sd, source=source)
    return head


def load_depth_model(source, *, backbone=None, max_depth: float | None = None, device="cpu") -> DepthModel:
    """source: an official name (`dinov2_vits14_nyu_dpt`, `dinov2_vitb14_kitti_linear4`, torch.hub's
    `dinov2_vits14_dd` / `_ld`), a transformers DPT repo or folder (`facebook/dpt-dinov2-small-nyu`), or an
    official head file (`…_nyu_dpt_head.pth`) with `backbone=` any dinokit model name or path.
    max_depth: the clamp (official: 10 m for NYU, 80 m for KITTI; from the name where it says)."""
    found = resolve_depth(source, backbone=backbone, max_depth=max_depth)
    if found.hf_config is not None:
        return _hf_dpt(found).to(device).eval()
    net = _backbone(found.backbone, device)
    dim, depth = net.config.hidden_size, net.n_blocks
    if found.head == "dpt":
        head = _load_head(DPTDepthHead(dim, max_depth=found.max_depth), found.head_state, found.source)
        return DepthModel(net, head, depth_blocks(depth, 4)).to(device).eval()
    layers = found.head_state["conv_depth.weight"].shape[1] // (2 * dim)
    head = _load_head(LinearDepthHead(dim, layers=layers, max_depth=found.max_depth), found.head_state, found.source)
    return DepthModel(net, head, depth_blocks(depth, layers)).to(device).eval()


def _hf_dpt(found) -> DepthModel:
    config = found.hf_config
    bcfg = Dinov2Config.from_dict(config["backbone_config"])
    bcfg = bcfg.replace(interpolate_mode=bcfg.interpolate_mode or "hf")  # transformers' own interpolation
    backbone = Dinov2Model(bcfg)
    load_converted(backbone, found.backbone_state, source=found.source)
    head = DPTDepthHead(bcfg.hidden_size, config.get("neck_hidden_sizes"), config.get("fusion_hidden_size", 256),
                        tuple(config.get("reassemble_factors", (4, 2, 1, 0.5))), config.get("add_projection", False),
                        bool(config.get("use_bias_in_fusion_residual")), min_depth=0.0, max_depth=found.max_depth)
    load_converted(head, found.head_state, source=found.source)
    blocks = [bcfg.stage_names.index(s) - 1 for s in bcfg.out_features]
    return DepthModel(backbone, head, blocks, norm=bool(config["backbone_config"].get("apply_layernorm", True)),
                      pad=False)


def load_segmentation_model(source, *, backbone=None, device="cpu") -> SegmentationModel:
    """source: a folder saved by `train-seg` (head.json + head.safetensors), an official name
    (`dinov2_vits14_ade20k_linear`, `dinov2_vitb14_voc2012_ms`), or an official head file with `backbone=`."""
    found = resolve_segmentation(source, backbone=backbone)
    net = _backbone(found.backbone, device)
    if found.meta is not None:
        meta = found.meta
        head = LinearSegmentationHead(meta["embed_dim"], len(meta["class_names"]), meta["layers"])
        _load_head(head, found.head_state, found.source)
        return SegmentationModel(net, head, meta["blocks"], meta["class_names"], meta.get("image_size"),
                                 str(found.backbone)).to(device).eval()
    weight = found.head_state["conv_seg.weight"]
    layers = weight.shape[1] // net.config.hidden_size
    head = _load_head(LinearSegmentationHead(net.config.hidden_size, weight.shape[0], layers), found.head_state,
                      found.source)
    return SegmentationModel(net, head, last_blocks(len(net.blocks), layers), None, 512, str(found.backbone)).to(device).eval()
