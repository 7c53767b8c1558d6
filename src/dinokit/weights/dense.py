"""Key names of the dense heads' checkpoint files: the official depth and segmentation head files
(`{"state_dict": {"decode_head.…": …}}`, mmsegmentation names) and transformers' DPT (`neck.*`, `head.*`
next to a `backbone.*` Dinov2Backbone). dinokit's modules use transformers' names, so only the official
files need renaming."""
from __future__ import annotations

import re

import torch

_DPT_NAMES = [  # (official name, dinokit/transformers name); {n} is the same field on both sides
    ("reassemble_blocks.projects.{0}.conv.{1}", "neck.reassemble_stage.layers.{0}.projection.{1}"),
    ("reassemble_blocks.resize_layers.{0}.{1}", "neck.reassemble_stage.layers.{0}.resize.{1}"),
    ("reassemble_blocks.readout_projects.{0}.0.{1}", "neck.reassemble_stage.readout_projects.{0}.0.{1}"),
    ("convs.{0}.conv.{1}", "neck.convs.{0}.{1}"),
    ("fusion_blocks.{0}.project.conv.{1}", "neck.fusion_stage.layers.{0}.projection.{1}"),
    ("fusion_blocks.{0}.res_conv_unit{1}.conv{2}.conv.{3}", "neck.fusion_stage.layers.{0}.residual_layer{1}.convolution{2}.{3}"),
    ("project.conv.{0}", "head.projection.{0}"),
    ("conv_depth.head.{0}.{1}", "head.head.{0}.{1}"),
]


def _pattern(template: str) -> re.Pattern:
    """{n} fields of a name template → word groups, the rest literal."""
    return re.compile(r"(\w+)".join(re.escape(part) for part in re.split(r"\{\d\}", template)))


def _rename(key: str, table: list[tuple[str, str]]) -> str | None:
    """The key renamed by the first (source, target) pair of the table that matches it, else None."""
    for source, target in table:
        m = _pattern(source).fullmatch(key)
        if m:
            return target.format(*m.groups())
    return None


def _head_state(obj) -> dict[str, torch.Tensor]:
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    return {k.removeprefix("decode_head."): v for k, v in sd.items()
            if isinstance(v, torch.Tensor) and not k.startswith("backbone.")}


def official_dpt_head_to_dinokit(obj) -> dict[str, torch.Tensor]:
    # a key without a dinokit name keeps its own, and the loader reports it as unexpected
    return {_rename(k, _DPT_NAMES) or k: v for k, v in _head_state(obj).items()}


def dinokit_dpt_head_to_official(sd: dict[str, torch.Tensor]) -> dict:
    """The inverse, wrapped as the official files are (used to write files in their exact layout)."""
    inverse = [(dinokit, official) for official, dinokit in _DPT_NAMES]
    out = {}
    for key, value in sd.items():
        name = _rename(key, inverse)
        if name is None:
            raise KeyError(f"no official name for {key}")
        out["decode_head." + name] = value
    return {"state_dict": out}


def official_linear_head_to_dinokit(obj) -> dict[str, torch.Tensor]:
    """Linear depth (`conv_depth`) and segmentation (`bn`, `conv_seg`) heads keep their names; the depth
    files' unused batch norm is dropped."""
    sd = _head_state(obj)
    if "conv_depth.weight" in sd:
        return {k: v for k, v in sd.items() if k.startswith("conv_depth.")}
    return sd


def split_hf_dpt(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """transformers' DPTForDepthEstimation state dict → (backbone in transformers' layout, head). The first
    fusion layer's residual_layer1 is dropped: transformers never runs it, and dinokit (as the official
    head) has none."""
    backbone = {k.removeprefix("backbone."): v for k, v in sd.items() if k.startswith("backbone.")}
    head = {k: v for k, v in sd.items() if k.startswith(("neck.", "head."))
            and not k.startswith("neck.fusion_stage.layers.0.residual_layer1.")}
    return backbone, head
