"""The optimisation rules every training job shares, as the official recipe writes them: parameter groups
with layer-wise learning-rate decay (each block's lr × decay^(depth − block), embeddings at the bottom), the
patch embedding's extra multiplier, no weight decay on biases, norms and LayerScale, and the per-iteration
cosine schedule (official `CosineScheduler`: optional frozen start, linear warm-up, cosine to the end)."""
from __future__ import annotations

import math

import numpy as np
from torch import nn


def layer_id(name: str, num_blocks: int) -> int:
    if any(k in name for k in ("pos_embed", "patch_embed", "mask_token", "cls_token")):  # registers: top, as officially
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return num_blocks + 1


def param_groups(module: nn.Module, layerwise_decay: float = 1.0, patch_embed_lr_mult: float = 1.0) -> list[dict]:
    """One group per parameter (fused later by equal multipliers): lr_multiplier, wd_multiplier, is_last_layer."""
    blocks = len(module.blocks) if hasattr(module, "blocks") else 0
    groups = []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        lr_mult = layerwise_decay ** (blocks + 1 - layer_id(name, blocks)) if blocks else 1.0
        if "patch_embed" in name:
            lr_mult *= patch_embed_lr_mult
        wd_mult = 0.0 if name.endswith(".bias") or "norm" in name or "gamma" in name else 1.0
        groups.append({"params": p, "name": name, "lr_multiplier": lr_mult, "wd_multiplier": wd_mult,
                       "is_last_layer": "last_layer" in name})
    return groups


def fuse(groups: list[dict]) -> list[dict]:
    fused: dict[tuple, dict] = {}
    for g in groups:
        key = (g["lr_multiplier"], g["wd_multiplier"], g["is_last_layer"])
        fused.setdefault(key, {"params": [], "lr_multiplier": key[0], "wd_multiplier": key[1],
                               "is_last_layer": key[2]})["params"].append(g["params"])
    return list(fused.values())


def cosine_schedule(base: float, final: float, total: int, warmup: int = 0, start_warmup: float = 0.0,
                    freeze: int = 0) -> np.ndarray:
    rest = np.arange(total - warmup - freeze)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * rest / max(len(rest), 1)))
    return np.concatenate((np.zeros(freeze), np.linspace(start_warmup, base, warmup), cosine))


def scaled_lr(base_lr: float, batch_size: int, rule: str = "sqrt_wrt_1024") -> float:
    """The paper's rule: base_lr is for a batch of 1024, scaled by the square root of the ratio."""
    if rule == "sqrt_wrt_1024":
        return base_lr * math.sqrt(batch_size / 1024)
    if rule == "linear_wrt_256":
        return base_lr * batch_size / 256
    if rule == "none":
        return base_lr
    raise ValueError(f"unknown scaling_rule {rule!r} (sqrt_wrt_1024, linear_wrt_256, none)")
