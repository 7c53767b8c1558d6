"""`dinokit viz attention`: the last layer's CLS-token attention over the patches, one map per head."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..data import Dinov2ImageProcessor, load_image
from ..runtime.cpu import fast_path

# a perceptually ordered dark-blue → yellow ramp (viridis' end points and midpoints)
_RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)


def colorize(values: np.ndarray) -> np.ndarray:
    """[h, w] floats → [h, w, 3] uint8, min-max scaled."""
    v = (values - values.min()) / max(float(values.max() - values.min()), 1e-12)
    pos = v * (len(_RAMP) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_RAMP) - 2)
    frac = (pos - lo)[..., None]
    return (_RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac).round().astype(np.uint8)


def cls_attention_maps(model, image: Image.Image, size: int = 448) -> np.ndarray:
    """[heads, h, w]: attention of the CLS token to each patch in the last block."""
    vit = fast_path(model.dinov2 if hasattr(model, "dinov2") else model)
    pixels = Dinov2ImageProcessor(size=size, do_center_crop=False, size_divisor=vit.patch_size)(image).pixel_values
    with torch.inference_mode():
        attn = vit(pixels, output_attentions=True).attentions[-1][0]  # [heads, tokens, tokens]
    h, w = pixels.shape[2] // vit.patch_size, pixels.shape[3] // vit.patch_size
    return attn[:, 0, vit.num_prefix_tokens:].reshape(-1, h, w).float().numpy()


def attention_figure(model, image_path, size: int = 448) -> Image.Image:
    """The input, then one heat map per head, in a row (wrapped every 4 heads)."""
    image = load_image(image_path)
    maps = cls_attention_maps(model, image, size)
    tile_h = 224
    tile_w = max(1, round(image.width * tile_h / image.height))
    tiles = [image.resize((tile_w, tile_h), Image.BICUBIC)]
    tiles += [Image.fromarray(colorize(m)).resize((tile_w, tile_h), Image.NEAREST) for m in maps]
    cols = min(len(tiles), 5)
    rows = -(-len(tiles) // cols)
    canvas = Image.new("RGB", (cols * (tile_w + 4) - 4, rows * (tile_h + 4) - 4), (255, 255, 255))
    for i, tile in enumerate(tiles):
        canvas.paste(tile, ((i % cols) * (tile_w + 4), (i // cols) * (tile_h + 4)))
    return canvas
