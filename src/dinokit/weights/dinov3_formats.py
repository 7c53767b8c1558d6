"""DINOv3 checkpoint layouts ⇄ dinokit state dicts (the official names): pure functions, no files.

ViT: official (`storage_tokens`, fused `qkv` with a `bias_mask`, `rope_embed.periods`, `local_cls_norm`),
transformers (`embeddings.*`, `layer.{i}.attention.{q,k,v,o}_proj`, no key bias), timm's eva layout
(`reg_token`, `q_bias`/`v_bias`, `gamma_1`, `fc1_g`/`fc1_x`). ConvNeXt: official (`downsample_layers`,
`stages.{i}.{j}`), transformers (`stages.{i}.layers.{j}`), timm (`stem`, `stages.{i}.blocks.{j}`).
"""
from __future__ import annotations

import re

import torch

FAMILIES = ("dinov2", "dinov3_vit", "dinov3_convnext")


def detect_family(sd: dict[str, torch.Tensor]) -> str:
    """Which model family a state dict (any layout) belongs to."""
    keys = sd.keys()
    if any(re.match(r"(model\.)?(downsample_layers|stages|stem)\.", k) for k in keys) and not any(
            k.startswith(("blocks.", "layer.")) for k in keys):
        return "dinov3_convnext"
    if "storage_tokens" in keys or "rope_embed.periods" in keys or "embeddings.register_tokens" in keys and any(
            ".attention.o_proj." in k for k in keys):
        return "dinov3_vit"
    if any(re.match(r"(model\.)?layer\.\d+\.attention\.q_proj\.", k) for k in keys):
        return "dinov3_vit"  # transformers' DINOv3 layout without registers
    if "cls_token" in keys and "pos_embed" not in keys and any(k.startswith("blocks.") for k in keys):
        return "dinov3_vit"  # official or timm without a learned position embedding
    return "dinov2"


def vit_format(sd) -> str:
    keys = sd.keys()
    if any(k.startswith("embeddings.") for k in keys):
        return "hf"
    if "reg_token" in keys or any(".gamma_1" in k for k in keys):
        return "timm"
    return "official"


def convnext_format(sd) -> str:
    keys = sd.keys()
    if any(k.startswith("stem.") for k in keys):
        return "timm"
    if any(".layers." in k for k in keys):
        return "hf"
    return "official"


def dinov3_to_dinokit(sd: dict[str, torch.Tensor], family: str) -> dict[str, torch.Tensor]:
    if family == "dinov3_vit":
        return {"official": _vit_from_official, "hf": _vit_from_hf, "timm": _vit_from_timm}[vit_format(sd)](sd)
    return {"official": _convnext_from_official, "hf": _convnext_from_hf, "timm": _convnext_from_timm}[
        convnext_format(sd)](sd)


def _convnext_from_official(sd):
    """`norms.{i}` are the per-stage norms of `get_intermediate_layers` (identities, and the last one is `norm`
    itself, stored twice)."""
    return {k: v for k, v in sd.items() if not k.startswith("norms.")}


# --- ViT: official ---------------------------------------------------------------------------------
def _vit_from_official(sd):
    """The training-only tensors go (the RoPE periods are recomputed, the local-crop CLS norm is unused at
    inference); the key bias is masked as the official forward masks it."""
    out = {}
    for k, v in sd.items():
        if k == "rope_embed.periods" or k.startswith("local_cls_norm.") or k.endswith(".bias_mask"):
            continue
        m = re.match(r"blocks\.\d+\.(\d+)\.(.*)", k)  # FSDP block chunks
        if m:
            k = f"blocks.{m[1]}.{m[2]}"
        out[k] = v
    for k in [k for k in out if k.endswith(".attn.qkv.bias")]:
        out[k] = _zero_key_part(out[k])
    return out


def _zero_key_part(bias: torch.Tensor) -> torch.Tensor:
    dim = bias.shape[0] // 3
    return torch.cat([bias[:dim], torch.zeros_like(bias[dim:2 * dim]), bias[2 * dim:]])


# --- ViT: transformers -----------------------------------------------------------------------------
_HF_VIT_EMBED = {
    "embeddings.cls_token": "cls_token",
    "embeddings.register_tokens": "storage_tokens",
    "embeddings.patch_embeddings.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.bias": "patch_embed.proj.bias",
    "norm.weight": "norm.weight",
    "norm.bias": "norm.bias",
}
_HF_VIT_BLOCK = {
    "norm1": "norm1", "norm2": "norm2", "attention.o_proj": "attn.proj",
    "layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma",
    "mlp.up_proj": "mlp.fc1", "mlp.down_proj": "mlp.fc2",
}
_HF_VIT_GATED = {"mlp.gate_proj": "mlp.w1", "mlp.up_proj": "mlp.w2", "mlp.down_proj": "mlp.w3"}


def _vit_from_hf(sd):
    gated = any(".mlp.gate_proj." in k for k in sd)
    block_names = {**_HF_VIT_BLOCK, **(_HF_VIT_GATED if gated else {})}
    out, qkv = {}, {}
    for k, v in sd.items():
        k = k.removeprefix("model.")
        if k == "embeddings.register_tokens" and not v.numel():
            continue  # transformers keeps an empty parameter when there are no registers
        if k in _HF_VIT_EMBED:
            out[_HF_VIT_EMBED[k]] = v
        elif k == "embeddings.mask_token":
            out["mask_token"] = v.reshape(1, -1)
        elif m := re.match(r"layer\.(\d+)\.attention\.([qkv])_proj\.(weight|bias)$", k):
            qkv.setdefault((m[1], m[3]), {})[m[2]] = v
        elif m := re.match(r"layer\.(\d+)\.(.*?)(?:\.(weight|bias))?$", k):
            name = block_names.get(m[2])
            out[f"blocks.{m[1]}.{name}" + (f".{m[3]}" if m[3] else "") if name else k] = v
        else:
            out[k] = v  # reported as unexpected by the loader
    for (i, param), parts in qkv.items():
        if param == "bias" and "k" not in parts:
            parts["k"] = torch.zeros_like(parts["q"])
        out[f"blocks.{i}.attn.qkv.{param}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def vit_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """dinokit → transformers' `DINOv3ViTModel` file layout (the key bias, always zero, is left out)."""
    gated = any(".mlp.w1." in k for k in sd)
    inverse_embed = {v: k for k, v in _HF_VIT_EMBED.items()}
    inverse_block = {v: k for k, v in {**_HF_VIT_BLOCK, **(_HF_VIT_GATED if gated else {})}.items()}
    out = {}
    for k, v in sd.items():
        if k in inverse_embed:
            out[inverse_embed[k]] = v
        elif k == "mask_token":
            out["embeddings.mask_token"] = v.reshape(1, 1, -1)
        elif m := re.match(r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", k):
            for part, chunk in zip("qkv", v.chunk(3)):
                if not (part == "k" and m[2] == "bias"):
                    out[f"layer.{m[1]}.attention.{part}_proj.{m[2]}"] = chunk.contiguous()
        elif m := re.match(r"blocks\.(\d+)\.(.*?)(?:\.(weight|bias))?$", k):
            if m[2] not in inverse_block:
                raise KeyError(f"no transformers name for dinokit key {k!r}")
            out[f"layer.{m[1]}.{inverse_block[m[2]]}" + (f".{m[3]}" if m[3] else "")] = v
        else:
            raise KeyError(f"no transformers name for dinokit key {k!r}")
    return out


# --- ViT: timm (eva) -------------------------------------------------------------------------------
_TIMM_VIT = {"gamma_1": "ls1.gamma", "gamma_2": "ls2.gamma", "mlp.fc1_g": "mlp.w1", "mlp.fc1_x": "mlp.w2"}


def _vit_from_timm(sd):
    gated = any(".mlp.fc1_g." in k for k in sd)
    out, biases = {}, {}
    for k, v in sd.items():
        if k.startswith(("head.", "fc_norm.", "norm_pre.", "rope.")):
            continue
        if k == "reg_token":
            if v.numel():
                out["storage_tokens"] = v
            continue
        if m := re.match(r"blocks\.(\d+)\.attn\.([qkv])_bias$", k):
            biases.setdefault(m[1], {})[m[2]] = v
            continue
        for old, new in _TIMM_VIT.items():
            k = k.replace(f".{old}", f".{new}")
        if gated:
            k = k.replace(".mlp.fc2.", ".mlp.w3.")
        out[k] = v
    for i, parts in biases.items():
        zeros = torch.zeros_like(parts["q"])
        out[f"blocks.{i}.attn.qkv.bias"] = torch.cat([parts["q"], zeros, parts.get("v", zeros)])
    return out


def vit_to_timm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """dinokit → timm's `vit_*_patch16_dinov3_qkvb` layout (used by the tests and for export to timm)."""
    gated = any(".mlp.w1." in k for k in sd)
    out = {}
    for k, v in sd.items():
        if k == "mask_token":
            continue
        if k == "storage_tokens":
            out["reg_token"] = v
            continue
        if m := re.match(r"blocks\.(\d+)\.attn\.qkv\.bias$", k):
            q, _, val = v.chunk(3)
            out[f"blocks.{m[1]}.attn.q_bias"], out[f"blocks.{m[1]}.attn.v_bias"] = q.contiguous(), val.contiguous()
            continue
        for old, new in _TIMM_VIT.items():
            k = k.replace(f".{new}", f".{old}")
        if gated:
            k = k.replace(".mlp.w3.", ".mlp.fc2.")
        out[k] = v
    return out


# --- ConvNeXt ----------------------------------------------------------------------------------------
_HF_CONVNEXT = {"depthwise_conv": "dwconv", "layer_norm": "norm", "pointwise_conv1": "pwconv1",
                "pointwise_conv2": "pwconv2", "gamma": "gamma"}
_TIMM_CONVNEXT = {"conv_dw": "dwconv", "norm": "norm", "mlp.fc1": "pwconv1", "mlp.fc2": "pwconv2", "gamma": "gamma"}


def _convnext_from_hf(sd):
    out = {}
    for k, v in sd.items():
        k = k.removeprefix("model.")
        if m := re.match(r"stages\.(\d+)\.downsample_layers\.(\d+)\.(.*)$", k):
            out[f"downsample_layers.{m[1]}.{m[2]}.{m[3]}"] = v
        elif m := re.match(r"stages\.(\d+)\.layers\.(\d+)\.(\w+)(\..*)?$", k):
            out[f"stages.{m[1]}.{m[2]}.{_HF_CONVNEXT.get(m[3], m[3])}{m[4] or ''}"] = v
        elif k.startswith("layer_norm."):
            out[k.replace("layer_norm.", "norm.")] = v
        else:
            out[k] = v
    return out


def convnext_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """dinokit → transformers' `DINOv3ConvNextModel` file layout."""
    inverse = {v: k for k, v in _HF_CONVNEXT.items()}
    out = {}
    for k, v in sd.items():
        if m := re.match(r"downsample_layers\.(\d+)\.(.*)$", k):
            out[f"stages.{m[1]}.downsample_layers.{m[2]}"] = v
        elif m := re.match(r"stages\.(\d+)\.(\d+)\.(\w+)(\..*)?$", k):
            out[f"stages.{m[1]}.layers.{m[2]}.{inverse[m[3]]}{m[4] or ''}"] = v
        elif k.startswith("norm."):
            out[k.replace("norm.", "layer_norm.")] = v
        else:
            raise KeyError(f"no transformers name for dinokit key {k!r}")
    return out


def _convnext_from_timm(sd):
    out = {}
    for k, v in sd.items():
        if m := re.match(r"stem\.(\d)\.(.*)$", k):
            out[f"downsample_layers.0.{m[1]}.{m[2]}"] = v
        elif m := re.match(r"stages\.(\d+)\.downsample\.(\d)\.(.*)$", k):
            out[f"downsample_layers.{m[1]}.{m[2]}.{m[3]}"] = v
        elif m := re.match(r"stages\.(\d+)\.blocks\.(\d+)\.(.*)\.(weight|bias)$", k):
            out[f"stages.{m[1]}.{m[2]}.{_TIMM_CONVNEXT.get(m[3], m[3])}.{m[4]}"] = v
        elif m := re.match(r"stages\.(\d+)\.blocks\.(\d+)\.gamma$", k):
            out[f"stages.{m[1]}.{m[2]}.gamma"] = v
        elif k.startswith("head.norm."):
            out[k.replace("head.norm.", "norm.")] = v
        elif not k.startswith("head."):
            out[k] = v
    return out


def convnext_to_timm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """dinokit → timm's `convnext_*` layout (the tests' reference)."""
    inverse = {v: k for k, v in _TIMM_CONVNEXT.items()}
    out = {}
    for k, v in sd.items():
        if m := re.match(r"downsample_layers\.0\.(\d)\.(.*)$", k):
            out[f"stem.{m[1]}.{m[2]}"] = v
        elif m := re.match(r"downsample_layers\.(\d+)\.(\d)\.(.*)$", k):
            out[f"stages.{m[1]}.downsample.{m[2]}.{m[3]}"] = v
        elif m := re.match(r"stages\.(\d+)\.(\d+)\.(\w+)(\..*)?$", k):
            out[f"stages.{m[1]}.blocks.{m[2]}.{inverse[m[3]]}{m[4] or ''}"] = v
        elif k.startswith("norm."):
            out[k.replace("norm.", "head.norm.")] = v
    return out
