"""Backbone + dense head, and where their weights come from: official names (backbone and head files from
dl.fbaipublicfiles.com), transformers' DPT repositories/folders, official head files next to any backbone,
and the segmentation heads `dinokit train-seg` saves."""
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
from ..pretrained import Dinov2Model
from ..weights.checkpoint import (
    CONFIG_NAME,
    HEAD_META_NAME,
    HEAD_WEIGHTS_NAME,
    PICKLE_NAME,
    SAFETENSORS_NAME,
    load_converted,
    read_state_dict,
)
from ..weights.dense import official_dpt_head_to_dinokit, official_linear_head_to_dinokit, split_hf_dpt
from ..weights.download import hub_file, url_file
from ..weights.formats import to_dinokit
from ..weights.names import (
    DEPTH_DATASETS,
    official_depth_head_url,
    official_segmentation_head_url,
    parse_dense_name,
)

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


def _backbone(source, device) -> Dinov2Model:
    return source if isinstance(source, nn.Module) else Dinov2Model.from_pretrained(source, device=device)


def _load_head(head: nn.Module, sd: dict, source: str) -> nn.Module:
    load_converted(head, sd, source=source)
    return head


def load_depth_model(source, *, backbone=None, max_depth: float | None = None, device="cpu") -> DepthModel:
    """source: an official name (`dinov2_vits14_nyu_dpt`, `dinov2_vitb14_kitti_linear4`, torch.hub's
    `dinov2_vits14_dd` / `_ld`), a transformers DPT repo or folder (`facebook/dpt-dinov2-small-nyu`), or an
    official head file (`…_nyu_dpt_head.pth`) with `backbone=` any dinokit model name or path.
    max_depth: the clamp (official: 10 m for NYU, 80 m for KITTI; from the name where it says)."""
    parsed = parse_dense_name(str(source))
    if parsed and parsed["task"] == "depth":
        backbone = backbone or f"dinov2_vit{parsed['size']}14"
        head_file = url_file(official_depth_head_url(parsed["size"], parsed["dataset"], parsed["kind"]))
        return _official_depth(head_file, _backbone(backbone, device), max_depth or DEPTH_DATASETS[parsed["dataset"]],
                               str(source)).to(device).eval()
    path = Path(source)
    if path.is_file():
        if backbone is None:
            raise ValueError(f"{path} is a head file: say which backbone it goes with (backbone=…, --backbone)")
        dataset = next((d for d in DEPTH_DATASETS if f"_{d}_" in path.name), None)
        return _official_depth(path, _backbone(backbone, device), max_depth or DEPTH_DATASETS.get(dataset, 10.0),
                               str(path)).to(device).eval()
    config_file = path / CONFIG_NAME if path.is_dir() else hub_file(str(source), CONFIG_NAME)
    return _hf_dpt(json.loads(Path(config_file).read_text()), path if path.is_dir() else str(source),
                   max_depth, str(source)).to(device).eval()


def _official_depth(head_file, backbone: DinoVisionTransformer, max_depth: float, source: str) -> DepthModel:
    raw = read_state_dict(head_file)
    state = raw.get("state_dict", raw)
    dim, depth = backbone.config.hidden_size, len(backbone.blocks)
    if any("conv_depth.head" in k for k in state):
        head = DPTDepthHead(dim, max_depth=max_depth)
        return DepthModel(backbone, _load_head(head, official_dpt_head_to_dinokit(raw), source), depth_blocks(depth, 4))
    sd = official_linear_head_to_dinokit(raw)
    layers = sd["conv_depth.weight"].shape[1] // (2 * dim)
    head = LinearDepthHead(dim, layers=layers, max_depth=max_depth)
    return DepthModel(backbone, _load_head(head, sd, source), depth_blocks(depth, layers))


def _hf_dpt(config: dict, where, max_depth: float | None, source: str) -> DepthModel:
    if config.get("model_type") != "dpt" or (config.get("backbone_config") or {}).get("model_type") not in (
            "dinov2", "dinov2_with_registers"):
        raise ValueError(f"{source}: not a transformers DPT model on a DINOv2 backbone (config.json model_type "
                         f"{config.get('model_type')!r})")
    from ..weights.checkpoint import find_weights_file

    weights = find_weights_file(where) if isinstance(where, Path) else (
        hub_file(where, SAFETENSORS_NAME, required=False) or hub_file(where, PICKLE_NAME))
    backbone_sd, head_sd = split_hf_dpt(read_state_dict(weights))
    bcfg = Dinov2Config.from_dict(config["backbone_config"])
    bcfg = bcfg.replace(interpolate_mode=bcfg.interpolate_mode or "hf")  # transformers' own interpolation
    backbone = Dinov2Model(bcfg)
    load_converted(backbone, to_dinokit(backbone_sd, "hf"), source=source)
    dataset = next((d for d in DEPTH_DATASETS if d in source.lower()), None)
    head = DPTDepthHead(bcfg.hidden_size, config.get("neck_hidden_sizes"), config.get("fusion_hidden_size", 256),
                        tuple(config.get("reassemble_factors", (4, 2, 1, 0.5))), config.get("add_projection", False),
                        bool(config.get("use_bias_in_fusion_residual")), min_depth=0.0,
                        max_depth=max_depth or DEPTH_DATASETS.get(dataset, float("inf")))
    load_converted(head, head_sd, source=source)
    blocks = [bcfg.stage_names.index(s) - 1 for s in bcfg.out_features]
    return DepthModel(backbone, head, blocks, norm=bool(config["backbone_config"].get("apply_layernorm", True)),
                      pad=False)


def load_segmentation_model(source, *, backbone=None, device="cpu") -> SegmentationModel:
    """source: a folder saved by `train-seg` (head.json + head.safetensors), an official name
    (`dinov2_vits14_ade20k_linear`, `dinov2_vitb14_voc2012_ms`), or an official head file with `backbone=`."""
    parsed = parse_dense_name(str(source))
    path = Path(source)
    if path.is_dir() and (path / HEAD_META_NAME).is_file():
        from safetensors.torch import load_file

        meta = json.loads((path / HEAD_META_NAME).read_text())
        net = _backbone(backbone or meta["backbone"], device)
        head = LinearSegmentationHead(meta["embed_dim"], len(meta["class_names"]), meta["layers"])
        _load_head(head, load_file(str(path / HEAD_WEIGHTS_NAME)), str(path))
        return SegmentationModel(net, head, meta["blocks"], meta["class_names"], meta.get("image_size"),
                                 str(backbone or meta["backbone"])).to(device).eval()
    if parsed and parsed["task"] == "segmentation":
        backbone = backbone or f"dinov2_vit{parsed['size']}14"
        path = url_file(official_segmentation_head_url(parsed["size"], parsed["dataset"], parsed["kind"]))
    elif not path.is_file():
        raise ValueError(f"{source!r} is not a segmentation head folder, head file or official name "
                         f"(e.g. dinov2_vits14_ade20k_linear, dinov2_vits14_voc2012_ms)")
    if backbone is None:
        raise ValueError(f"{path} is a head file: say which backbone it goes with (backbone=…, --backbone)")
    net = _backbone(backbone, device)
    sd = official_linear_head_to_dinokit(read_state_dict(path))
    layers = sd["conv_seg.weight"].shape[1] // net.config.hidden_size
    head = _load_head(LinearSegmentationHead(net.config.hidden_size, sd["conv_seg.weight"].shape[0], layers),
                      {k: v for k, v in sd.items() if k.startswith(("bn.", "conv_seg."))}, str(path))
    return SegmentationModel(net, head, last_blocks(len(net.blocks), layers), None, 512, str(backbone)).to(device).eval()
