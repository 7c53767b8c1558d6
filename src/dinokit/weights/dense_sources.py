"""Where a depth or segmentation model's tensors come from: every name or path → files → tensors in
dinokit's key names, as plain data; `dinokit.dense` builds the modules from it.

Depth: an official name (`dinov2_vits14_nyu_dpt`, `…_kitti_linear4`, torch.hub's `_dd` / `_ld`), an
official head file (`…_nyu_dpt_head.pth`) with any backbone, or a transformers DPT repository or folder.
Segmentation: a folder `dinokit train-seg` saved, an official name (`dinov2_vits14_ade20k_linear`,
`…_voc2012_ms`), or an official head file with any backbone."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..io import read_json
from .checkpoint import (
    CONFIG_NAME,
    HEAD_META_NAME,
    HEAD_WEIGHTS_NAME,
    PICKLE_NAME,
    SAFETENSORS_NAME,
    find_weights_file,
    read_state_dict,
)
from .dense import official_dpt_head_to_dinokit, official_linear_head_to_dinokit, split_hf_dpt
from .download import hub_file, url_files
from .formats import to_dinokit
from .names import (
    DEPTH_DATASETS,
    official_depth_head_url,
    official_segmentation_head_url,
    official_url,
    parse_dense_name,
)


@dataclass
class DepthSource:
    head: str  # "dpt" or "linear"
    head_state: dict[str, torch.Tensor]
    max_depth: float | None
    source: str
    backbone: object = None  # official heads: the backbone to load (name, path or module)
    hf_config: dict | None = None  # transformers DPT: its config.json, and its backbone's tensors
    backbone_state: dict[str, torch.Tensor] | None = None


@dataclass
class SegmentationSource:
    head_state: dict[str, torch.Tensor]
    backbone: object
    source: str
    meta: dict | None = None  # a train-seg folder's head.json (classes, blocks, image size)


def resolve_depth(source, *, backbone=None, max_depth: float | None = None) -> DepthSource:
    parsed = parse_dense_name(str(source))
    if parsed and parsed["task"] == "depth":
        head_file = _official_files(official_depth_head_url(parsed["size"], parsed["dataset"], parsed["kind"]),
                                    parsed["size"], backbone)
        return _official_depth(head_file, backbone or f"dinov2_vit{parsed['size']}14",
                               max_depth or DEPTH_DATASETS[parsed["dataset"]], str(source))
    path = Path(source)
    if path.is_file():
        if backbone is None:
            raise ValueError(f"{path} is a head file: say which backbone it goes with (backbone=…, --backbone)")
        dataset = next((d for d in DEPTH_DATASETS if f"_{d}_" in path.name), None)
        return _official_depth(path, backbone, max_depth or DEPTH_DATASETS.get(dataset, 10.0), str(path))
    config_file = path / CONFIG_NAME if path.is_dir() else hub_file(str(source), CONFIG_NAME)
    config = read_json(config_file)
    if config.get("model_type") != "dpt" or (config.get("backbone_config") or {}).get("model_type") not in (
            "dinov2", "dinov2_with_registers"):
        raise ValueError(f"{source}: not a transformers DPT model on a DINOv2 backbone (config.json model_type "
                         f"{config.get('model_type')!r})")
    weights = find_weights_file(path) if path.is_dir() else (
        hub_file(str(source), SAFETENSORS_NAME, required=False) or hub_file(str(source), PICKLE_NAME))
    backbone_sd, head_sd = split_hf_dpt(read_state_dict(weights))
    dataset = next((d for d in DEPTH_DATASETS if d in str(source).lower()), None)
    return DepthSource("dpt", head_sd, max_depth or DEPTH_DATASETS.get(dataset, float("inf")), str(source),
                       hf_config=config, backbone_state=to_dinokit(backbone_sd, "hf"))


def _official_files(head_url: str, size: str, backbone) -> Path:
    """The head file of an official dense name, fetched together with its official backbone (unless
    another backbone is given), so that a missing pair is reported at once; returns the head's path."""
    return url_files([head_url] + ([] if backbone is not None else [official_url(size, False)]))[0]


def _official_depth(head_file, backbone, max_depth: float, source: str) -> DepthSource:
    raw = read_state_dict(head_file)
    if any("conv_depth.head" in k for k in raw.get("state_dict", raw)):
        return DepthSource("dpt", official_dpt_head_to_dinokit(raw), max_depth, source, backbone)
    return DepthSource("linear", official_linear_head_to_dinokit(raw), max_depth, source, backbone)


def resolve_segmentation(source, *, backbone=None) -> SegmentationSource:
    path = Path(source)
    if path.is_dir() and (path / HEAD_META_NAME).is_file():
        from safetensors.torch import load_file

        meta = read_json(path / HEAD_META_NAME)
        return SegmentationSource(load_file(str(path / HEAD_WEIGHTS_NAME)), backbone or meta["backbone"], str(path), meta)
    parsed = parse_dense_name(str(source))
    if parsed and parsed["task"] == "segmentation":
        path = _official_files(official_segmentation_head_url(parsed["size"], parsed["dataset"], parsed["kind"]),
                               parsed["size"], backbone)
        backbone = backbone or f"dinov2_vit{parsed['size']}14"
    elif not path.is_file():
        raise ValueError(f"{source!r} is not a segmentation head folder, head file or official name "
                         f"(e.g. dinov2_vits14_ade20k_linear, dinov2_vits14_voc2012_ms)")
    if backbone is None:
        raise ValueError(f"{path} is a head file: say which backbone it goes with (backbone=…, --backbone)")
    sd = official_linear_head_to_dinokit(read_state_dict(path))
    return SegmentationSource({k: v for k, v in sd.items() if k.startswith(("bn.", "conv_seg."))}, backbone, str(path))
