"""Key names of the dense heads' checkpoint files: the official depth and segmentation head files
(`{"state_dict": {"decode_head.…": …}}`, mmsegmentation names) and transformers' DPT (`neck.*`, `head.*`
next to a `backbone.*` Dinov2Backbone). dinokit's modules use transformers' names, so only the official
files need renaming."""
from __future__ import annotations

import re

import torch

_DPT_OFFICIAL = [  # (official regex, dinokit/transformers template)
    (r"reassemble_blocks\.projects\.(\d)\.conv\.(\w+)", "neck.reassemble_stage.layers.{0}.projection.{1}"),
    (r"reassemble_blocks\.resize_layers\.(\d)\.(\w+)", "neck.reassemble_stage.layers.{0}.resize.{1}"),
    (r"reassemble_blocks\.readout_projects\.(\d)\.0\.(\w+)", "neck.reassemble_stage.readout_projects.{0}.0.{1}"),
    (r"convs\.(\d)\.conv\.(\w+)", "neck.convs.{0}.{1}"),
    (r"fusion_blocks\.(\d)\.project\.conv\.(\w+)", "neck.fusion_stage.layers.{0}.projection.{1}"),
    (r"fusion_blocks\.(\d)\.res_conv_unit([12])\.conv([12])\.conv\.(\w+)",
     "neck.fusion_stage.layers.{0}.residual_layer{1}.convolution{2}.{3}"),
    (r"project\.conv\.(\w+)", "head.projection.{0}"),
    (r"conv_depth\.head\.(\d)\.(\w+)", "head.head.{0}.{1}"),
]


def _head_state(obj) -> dict[str, torch.Tensor]:
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    return {k.removeprefix("decode_head."): v for k, v in sd.items()
            if isinstance(v, torch.Tensor) and not k.startswith("backbone.")}


def official_dpt_head_to_dinokit(obj) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in _head_state(obj).items():
        for pattern, template in _DPT_OFFICIAL:
            m = re.fullmatch(pattern, key)
            if m:
                out[template.format(*m.groups())] = value
                break
        else:
            out[key] = value  # reported as unexpected by the loader
    return out


def dinokit_dpt_head_to_official(sd: dict[str, torch.Tensor]) -> dict:
    """The inverse, wrapped as the official files are (used to write files in their exact layout)."""
    inverse = []
    for pattern, template in _DPT_OFFICIAL:
        groups = re.findall(r"\(([^)]*)\)", pattern)
        regex = re.escape(template)
        for i, g in enumerate(groups):
            regex = regex.replace(re.escape("{%d}" % i), f"({g})")
        out_template = pattern
        for i, g in enumerate(groups):
            out_template = out_template.replace(f"({g})", "{%d}" % i, 1)
        inverse.append((regex, out_template.replace("\\.", ".")))
    out = {}
    for key, value in sd.items():
        for regex, template in inverse:
            m = re.fullmatch(regex, key)
            if m:
                out["decode_head." + template.format(*m.groups())] = value
                break
        else:
            if not key.startswith("neck.fusion_stage.layers.0.residual_layer1."):  # unused: absent officially
                raise KeyError(f"no official name for {key}")
    return {"state_dict": out}


def official_linear_head_to_dinokit(obj) -> dict[str, torch.Tensor]:
    """Linear depth (`conv_depth`) and segmentation (`bn`, `conv_seg`) heads keep their names; the depth
    files' unused batch norm is dropped."""
    sd = _head_state(obj)
    if "conv_depth.weight" in sd:
        return {k: v for k, v in sd.items() if k.startswith("conv_depth.")}
    return sd


def split_hf_dpt(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """transformers' DPTForDepthEstimation state dict → (backbone in transformers' layout, head)."""
    backbone = {k.removeprefix("backbone."): v for k, v in sd.items() if k.startswith("backbone.")}
    head = {k: v for k, v in sd.items() if k.startswith(("neck.", "head."))}
    return backbone, head
