"""Position-embedding interpolation, in the three variants the reference libraries use.

They differ for plain models only, and only when the patch grid differs from the trained one:
- "official": the torch.hub code and the paper; bicubic with ``scale_factor=((h+0.1)/M, (w+0.1)/M)``.
  PyTorch places the samples by the scale factor, so this is *not* the same as ``size=(h, w)``.
- "hf": transformers >= 4.45; bicubic with ``size=(h, w)``, no antialias.
- "timm": bicubic with ``size=(h, w)`` and ``antialias=True``.
Register models use ``size=(h, w)`` with antialias in all three libraries, so every mode gives that.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import INTERPOLATE_MODES

OFFICIAL_OFFSET = 0.1


def interpolate_patch_pos_embed(
    patch_pos_embed: torch.Tensor, side: int, grid_hw: tuple[int, int], mode: str, registers: bool
) -> torch.Tensor:
    """Resample [1, side*side, D] patch position embeddings to the grid (h, w); computed in float32."""
    dim = patch_pos_embed.shape[-1]
    h, w = (int(side) for side in grid_hw)  # a trace records sizes as tensors; this graph is for one size
    grid = patch_pos_embed.float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
    if registers or mode == "timm":
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
    elif mode == "hf":
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
    elif mode == "official":
        scale = ((h + OFFICIAL_OFFSET) / side, (w + OFFICIAL_OFFSET) / side)
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", align_corners=False)
    else:
        raise ValueError(f"unknown interpolate_mode {mode!r}; expected one of {INTERPOLATE_MODES}")
    return grid.permute(0, 2, 3, 1).reshape(1, h * w, dim).to(patch_pos_embed.dtype)


def needs_interpolation(grid_side: int, grid_hw: tuple[int, int], image_hw: tuple[int, int], mode: str) -> bool:
    """The references' own skip rules: official/hf skip when the token count matches and H == W (pixels);
    timm skips when the grid matches."""
    h, w = grid_hw
    if mode == "timm":
        return (h, w) != (grid_side, grid_side)
    return not (h * w == grid_side * grid_side and image_hw[0] == image_hw[1])
