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
    """The input on the left, then one labelled heat map per head in a grid that the heads fill exactly
    (columns: the smallest divisor of the head count at or above its square root: 6 heads → 3 × 2)."""
    from PIL import ImageDraw

    from ..dense.pictures import label_font

    image = load_image(image_path)
    maps = cls_attention_maps(model, image, size)
    heads, gap, tile_h = len(maps), 4, 224
    cols = next(c for c in range(1, heads + 1) if heads % c == 0 and c * c >= heads)
    rows = heads // cols
    tile_w = max(1, round(image.width * tile_h / image.height))
    grid_h = rows * tile_h + (rows - 1) * gap
    left_w = max(1, round(image.width * grid_h / image.height))
    canvas = Image.new("RGB", (left_w + gap + cols * (tile_w + gap) - gap, grid_h), (255, 255, 255))
    canvas.paste(image.resize((left_w, grid_h), Image.BICUBIC), (0, 0))
    draw, font = ImageDraw.Draw(canvas), label_font(tile_h * 2)
    for i, m in enumerate(maps):
        x, y = left_w + gap + (i % cols) * (tile_w + gap), (i // cols) * (tile_h + gap)
        canvas.paste(Image.fromarray(colorize(m)).resize((tile_w, tile_h), Image.NEAREST), (x, y))
        box = draw.textbbox((x + 4, y + 2), f"head {i}", font=font)
        draw.rectangle([box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1], fill=(0, 0, 0))
        draw.text((x + 4, y + 2), f"head {i}", fill=(255, 255, 255), font=font)
    return canvas
