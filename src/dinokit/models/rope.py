"""Axial 2-D rotary position embedding (RoPE) of the DINOv3 ViTs: no weights, computed from the patch grid.

Patch centres `(i + 0.5) / n` per axis are mapped to [-1, 1] ("separate" normalisation: each axis by its own
length), then rotated at `head_dim / 4` periods `base ** (4k / head_dim)` per axis. Always computed in float32,
as the official code does (transformers rotates in the input's dtype: the same numbers in float32).
The training-time augmentations (shift, jitter, rescale of the coordinates) run only when asked for.
"""
from __future__ import annotations

import math

import torch


def patch_coordinates(h: int, w: int, device=None) -> torch.Tensor:
    """[h*w, 2] (y, x) centres of an h × w patch grid, each axis in [-1, 1]."""
    ys = torch.arange(0.5, h, device=device, dtype=torch.float32) / h
    xs = torch.arange(0.5, w, device=device, dtype=torch.float32) / w
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).flatten(0, 1) * 2.0 - 1.0


def augment_coordinates(coords: torch.Tensor, shift: float | None, jitter: float | None,
                        rescale: float | None) -> torch.Tensor:
    """DINOv3's training augmentation: a uniform shift per axis in [-shift, shift], a log-uniform stretch per
    axis in [1/jitter, jitter], a log-uniform zoom of both axes in [1/rescale, rescale]."""
    if shift is not None:
        coords = coords + torch.empty(2, device=coords.device).uniform_(-shift, shift)
    if jitter is not None:
        coords = coords * torch.empty(2, device=coords.device).uniform_(-math.log(jitter), math.log(jitter)).exp()
    if rescale is not None:
        coords = coords * torch.empty(1, device=coords.device).uniform_(-math.log(rescale), math.log(rescale)).exp()
    return coords


def rope_sin_cos(coords: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(sin, cos), each [tokens, head_dim] float32, for patch coordinates [tokens, 2]."""
    periods = base ** (2 * torch.arange(head_dim // 4, device=coords.device, dtype=torch.float32) / (head_dim // 2))
    angles = (2 * math.pi * coords[:, :, None] / periods).flatten(1).tile(2)
    return torch.sin(angles), torch.cos(angles)


def apply_rope(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """Rotate the last `sin.shape[0]` tokens of [B, heads, N, head_dim] (the patches; the CLS and register
    tokens before them keep no position), in float32, returned in x's dtype."""
    prefix = x.shape[-2] - sin.shape[-2]
    patches = x[..., prefix:, :].float()
    half = patches.shape[-1] // 2
    rotated = torch.cat((-patches[..., half:], patches[..., :half]), dim=-1)
    patches = (patches * cos + rotated * sin).to(x.dtype)
    return torch.cat((x[..., :prefix, :], patches), dim=-2)


def apply_rope_(qk: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """`apply_rope` in place on float32 [..., N, head_dim] (the patches are its last `sin.shape[0]` tokens):
    for a caller that owns the tensor and keeps no gradient (dinokit's fast path)."""
    half = qk.shape[-1] // 2
    patches = qk[..., qk.shape[-2] - sin.shape[-2]:, :]
    first, second = patches[..., :half], patches[..., half:]
    c, s = cos[:, :half], sin[:, :half]  # both halves of the tiled angles are equal
    kept = first.clone()
    first.mul_(c).addcmul_(second, s, value=-1.0)
    second.mul_(c).addcmul_(kept, s)
    return qk
