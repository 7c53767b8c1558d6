"""Checkpoint layouts ⇄ dinokit state dicts: pure functions, no files, no model.

dinokit's own names are the official torch-hub names (`blocks.{i}.attn.qkv`, `ls1.gamma`, ...).
Every foreign key name lives in this module.
"""
from __future__ import annotations

import re

import torch

FORMATS = ("official", "hf", "timm", "mmpretrain")

_TRAINING_PREFIXES = ("teacher.backbone.", "student.backbone.", "teacher.", "student.", "module.", "backbone.")


def unwrap_checkpoint(obj) -> dict[str, torch.Tensor]:
    """The backbone state dict inside a file: plain, `{"model"|"state_dict"|"teacher": ...}`, with
    teacher/student/backbone/DDP prefixes (the teacher is preferred, as the official evaluation does)."""
    for key in ("teacher", "model", "state_dict", "model_state"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    for prefix in _TRAINING_PREFIXES:
        if any(k.startswith(prefix) for k in sd):
            if prefix == "backbone." and detect_format({k[len(prefix):]: v for k, v in sd.items()}) is None:
                continue
            sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return sd


def detect_format(sd: dict[str, torch.Tensor]) -> str | None:
    from .dinov3_formats import convnext_format, detect_family, vit_format

    family = detect_family(sd)
    if family != "dinov2":
        return (vit_format if family == "dinov3_vit" else convnext_format)(sd)
    keys = sd.keys()
    if any(k.startswith(("embeddings.", "dinov2.embeddings.", "dinov2_with_registers.embeddings.")) for k in keys):
        return "hf"
    if any(k.startswith(("layers.", "backbone.layers.")) for k in keys):
        return "mmpretrain"
    if "reg_token" in keys:
        return "timm"
    if "cls_token" in keys and "pos_embed" in keys:
        if "mask_token" in keys or any(".mlp.w12." in k for k in keys):
            return "official"
        # timm drops the mask token; otherwise its layout is the official one
        return "timm"
    return None


def to_dinokit(sd: dict[str, torch.Tensor], fmt: str | None = None) -> dict[str, torch.Tensor]:
    """Convert a backbone state dict in any supported layout (of any family) to dinokit (official) names."""
    from .dinov3_formats import detect_family, dinov3_to_dinokit

    family = detect_family(sd)
    if family != "dinov2":
        return dinov3_to_dinokit(sd, family)
    fmt = fmt or detect_format(sd)
    if fmt == "official":
        return _unchunk_blocks(dict(sd))
    if fmt == "hf":
        return _from_hf(sd)
    if fmt == "timm":
        return _from_timm(sd)
    if fmt == "mmpretrain":
        return _from_mmpretrain(sd)
    sample = ", ".join(sorted(sd)[:8])
    raise ValueError(f"unrecognised checkpoint layout (first keys: {sample}); expected one of {FORMATS}")


# --- official ------------------------------------------------------------------------------------
def _unchunk_blocks(sd):
    """`blocks.{chunk}.{i}.*` (FSDP block chunks, identity-padded so i is global) → `blocks.{i}.*`."""
    out = {}
    for k, v in sd.items():
        m = re.match(r"blocks\.\d+\.(\d+)\.(.*)", k)
        out[f"blocks.{m.group(1)}.{m.group(2)}" if m else k] = v
    return out


# --- transformers --------------------------------------------------------------------------------
_HF_EMBED = {
    "embeddings.cls_token": "cls_token",
    "embeddings.mask_token": "mask_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.register_tokens": "register_tokens",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
_HF_BLOCK = {
    "norm1": "norm1", "norm2": "norm2",
    "attention.output.dense": "attn.proj", "attention.o_proj": "attn.proj",
    "layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma",
    "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
    "mlp.weights_in": "mlp.w12", "mlp.weights_out": "mlp.w3",
}
# transformers 4.x file names, and the 5.x in-memory names for the same tensors
_HF_QKV = ({"query": "q", "key": "k", "value": "v"}, "attention.attention.{}")
_HF_QKV_V5 = ({"q_proj": "q", "k_proj": "k", "v_proj": "v"}, "attention.{}")


def _from_hf(sd):
    sd = {k.removeprefix("dinov2_with_registers.").removeprefix("dinov2."): v
          for k, v in sd.items() if not k.startswith("classifier.")}
    out, qkv = {}, {}
    for k, v in sd.items():
        if k in _HF_EMBED:
            out[_HF_EMBED[k]] = v
            continue
        m = re.match(r"encoder\.layer\.(\d+)\.(.*)\.(weight|bias|lambda1)$", k)
        if not m:
            out[k] = v  # reported as unexpected by the loader
            continue
        i, name, param = m.groups()
        for names, template in (_HF_QKV, _HF_QKV_V5):
            hit = [short for long, short in names.items() if name == template.format(long)]
            if hit:
                qkv.setdefault((i, param), {})[hit[0]] = v
                break
        else:
            full = f"{name}.{param}" if param == "lambda1" else name
            mapped = _HF_BLOCK.get(full)
            if mapped is None:
                out[k] = v
            else:
                out[f"blocks.{i}.{mapped}" + ("" if param == "lambda1" else f".{param}")] = v
    for (i, param), parts in qkv.items():
        out[f"blocks.{i}.attn.qkv.{param}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def hf_base_prefix(registers: bool) -> str:
    """The backbone's attribute name inside transformers' task models (classification)."""
    return "dinov2_with_registers." if registers else "dinov2."


def to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """dinokit → the file layout of `transformers` (`Dinov2Model` / `Dinov2WithRegistersModel`)."""
    inverse_embed = {v: k for k, v in _HF_EMBED.items()}
    inverse_block = {v: k for k, v in _HF_BLOCK.items() if not k.startswith("attention.o_proj")}
    out = {}
    for k, v in sd.items():
        if k in inverse_embed:
            out[inverse_embed[k]] = v
            continue
        m = re.match(r"blocks\.(\d+)\.(.*)\.(weight|bias|gamma)$", k)
        if not m:
            raise KeyError(f"no transformers name for dinokit key {k!r}")
        i, name, param = m.groups()
        prefix = f"encoder.layer.{i}."
        if name == "attn.qkv":
            for part, chunk in zip(("query", "key", "value"), v.chunk(3, dim=0)):
                out[f"{prefix}attention.attention.{part}.{param}"] = chunk.contiguous()
        elif param == "gamma":
            out[prefix + inverse_block[f"{name}.gamma"]] = v
        else:
            out[f"{prefix}{inverse_block[name]}.{param}"] = v
    return out


# --- timm ----------------------------------------------------------------------------------------
def _from_timm(sd):
    out = {}
    # timm's SwiGLUPacked keeps ViT-g's fused [w1; w2] as fc1: twice as many rows as fc2 has columns
    fc1, fc2 = sd.get("blocks.0.mlp.fc1.weight"), sd.get("blocks.0.mlp.fc2.weight")
    swiglu = fc1 is not None and fc1.shape[0] == 2 * fc2.shape[1]
    for k, v in sd.items():
        if k.startswith(("head.", "fc_norm.", "norm_pre.")):
            continue
        if k == "reg_token":
            k = "register_tokens"
        elif swiglu and ".mlp.fc1." in k:
            k = k.replace(".mlp.fc1.", ".mlp.w12.")
        elif swiglu and ".mlp.fc2." in k:
            k = k.replace(".mlp.fc2.", ".mlp.w3.")
        out[k] = v
    pos = out["pos_embed"]
    if round((pos.shape[1]) ** 0.5) ** 2 == pos.shape[1]:
        # no_embed_class (reg4 models): the class position is folded into cls_token
        out["pos_embed"] = torch.cat([pos.new_zeros(1, 1, pos.shape[2]), pos], dim=1)
    return out


def to_timm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """dinokit → timm's `vit_*_patch14[_reg4]_dinov2` layout (used for tests and for export to timm)."""
    out = {k: v for k, v in sd.items() if k != "mask_token"}
    if "register_tokens" in out:
        out["reg_token"] = out.pop("register_tokens")
        out["cls_token"] = out["cls_token"] + out["pos_embed"][:, :1]
        out["pos_embed"] = out["pos_embed"][:, 1:]
    for k in list(out):
        if ".mlp.w12." in k or ".mlp.w3." in k:
            out[k.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")] = out.pop(k)
    return out


# --- mmpretrain ----------------------------------------------------------------------------------
_MM_BLOCK = {
    "ln1": "norm1", "ln2": "norm2", "attn.qkv": "attn.qkv", "attn.proj": "attn.proj",
    "attn.gamma1": "ls1.gamma", "ffn.gamma2": "ls2.gamma",
    "ffn.layers.0.0": "mlp.fc1", "ffn.layers.1": "mlp.fc2", "ffn.w12": "mlp.w12", "ffn.w3": "mlp.w3",
}


def _from_mmpretrain(sd):
    out = {}
    for k, v in sd.items():
        k = k.removeprefix("backbone.")
        if k.startswith(("head.", "neck.", "data_preprocessor.")):
            continue
        m = re.match(r"layers\.(\d+)\.(.*)\.(weight|bias)$", k)
        if m:
            i, name, param = m.groups()
            mapped = _MM_BLOCK.get(name)
            if mapped is None:
                out[k] = v
            elif mapped.endswith("gamma"):
                out[f"blocks.{i}.{mapped}"] = v
            else:
                out[f"blocks.{i}.{mapped}.{param}"] = v
        elif k.startswith("patch_embed.projection."):
            out[k.replace("projection", "proj")] = v
        elif k.startswith("ln1."):  # mmpretrain's final norm
            out[k.replace("ln1.", "norm.")] = v
        else:
            out[k] = v
    return out


def to_mmpretrain(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """dinokit → mmpretrain's `VisionTransformer` layout under `backbone.`."""
    inverse = {v: k for k, v in _MM_BLOCK.items()}
    out = {}
    for k, v in sd.items():
        if k == "mask_token":
            continue
        m = re.match(r"blocks\.(\d+)\.(.*?)(?:\.(weight|bias))?$", k)
        if m:
            i, name, param = m.groups()
            if name.endswith("gamma"):
                out[f"backbone.layers.{i}.{inverse[name]}.weight"] = v
            else:
                out[f"backbone.layers.{i}.{inverse[name]}.{param}"] = v
        elif k.startswith("patch_embed.proj."):
            out["backbone." + k.replace(".proj.", ".projection.")] = v
        elif k.startswith("norm."):
            out["backbone." + k.replace("norm.", "ln1.")] = v
        else:
            out["backbone." + k] = v
    return out
