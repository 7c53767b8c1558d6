"""`dinokit viz pca`: the first three principal components of the patch features as RGB, beside the
input, with the background removed by thresholding the first component (the DINOv2 paper's figure 1)."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..data import Dinov2ImageProcessor, load_image
from ..runtime.cpu import fast_path


def patch_features(model, images: list[Image.Image], size: int = 448) -> list[tuple[torch.Tensor, tuple[int, int]]]:
    """Normalised patch tokens [h*w, D] and their grid for each image, at `size` px on the short side."""
    processor = Dinov2ImageProcessor(size=size, do_center_crop=False, size_divisor=model.patch_size)
    fast_path(model)
    out = []
    with torch.inference_mode():
        for img in images:
            pixels = processor(img)["pixel_values"]
            tokens = model(pixels).last_hidden_state[0, model.num_prefix_tokens:]
            out.append((tokens.float(), (pixels.shape[2] // model.patch_size, pixels.shape[3] // model.patch_size)))
    return out


def _pca(x: torch.Tensor, k: int) -> torch.Tensor:
    x = x - x.mean(dim=0, keepdim=True)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    return x @ v[:k].T


def pca_maps(features: list[tuple[torch.Tensor, tuple[int, int]]], threshold: float = 0.0,
             remove_background: bool = True) -> list[np.ndarray]:
    """One [h, w, 3] uint8 map per image. PCA is fitted on the patches of all images together.
    Foreground: first component on the side of the threshold that holds fewer border patches."""
    all_tokens = torch.cat([f for f, _ in features])
    first = _pca(all_tokens, 1)[:, 0]
    grids = [g for _, g in features]
    counts = [h * w for h, w in grids]
    border = torch.cat([_border_mask(h, w) for h, w in grids])
    fg = first > threshold
    if fg[border].float().mean() > 0.5:  # the component's sign is arbitrary: background touches the border
        fg = ~fg
    if not remove_background or fg.sum() < 3:
        fg = torch.ones_like(fg)
    rgb = torch.zeros(len(all_tokens), 3)
    comps = _pca(all_tokens[fg], 3)
    lo, hi = comps.min(dim=0).values, comps.max(dim=0).values
    rgb[fg] = (comps - lo) / (hi - lo).clamp_min(1e-6)
    maps = []
    for part, (h, w) in zip(rgb.split(counts), grids):
        maps.append((part.reshape(h, w, 3).numpy() * 255).round().astype(np.uint8))
    return maps


def _border_mask(h: int, w: int) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.bool)
    m[0, :] = m[-1, :] = m[:, 0] = m[:, -1] = True
    return m.flatten()


def pca_figure(model, image_paths, size: int = 448, threshold: float = 0.0, remove_background: bool = True) -> Image.Image:
    """Rows of [input | PCA map], each scaled to the same height."""
    images = [load_image(p) for p in image_paths]
    maps = pca_maps(patch_features(model, images, size), threshold, remove_background)
    row_h = 256
    rows = []
    for img, m in zip(images, maps):
        left = img.resize((max(1, round(img.width * row_h / img.height)), row_h), Image.BICUBIC)
        right = Image.fromarray(m).resize((max(1, round(m.shape[1] * row_h / m.shape[0])), row_h), Image.NEAREST)
        row = Image.new("RGB", (left.width + right.width + 8, row_h), (255, 255, 255))
        row.paste(left, (0, 0))
        row.paste(right, (left.width + 8, 0))
        rows.append(row)
    canvas = Image.new("RGB", (max(r.width for r in rows), sum(r.height + 8 for r in rows) - 8), (255, 255, 255))
    y = 0
    for r in rows:
        canvas.paste(r, (0, y))
        y += r.height + 8
    return canvas
