"""Open-vocabulary segmentation with dino.txt (`dinokit segment --model dinotxt --labels ...`), following the
official notebook: the vision head's patch tokens upsampled bicubically to the image, normalised, and compared
by cosine with the patch-aligned half of each label's text embedding; each pixel takes the closest label.

The whole image is seen (no crop), its short side resized to `short_side`. The upsampled features are
normalised without ever holding all channels at full size (their norm is summed over channel chunks: the
same numbers, bounded memory); the per-label score maps are then resized to the image's own size.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data import dense_transform
from ..features.attention import colorize
from ..zeroshot import load_dinotxt, text_classifier
from .pictures import mask_picture
from .predict import _image

CHANNELS_PER_CHUNK = 64


def text_scores(image: Image.Image, model, text: torch.Tensor, short_side: int = 448) -> torch.Tensor:
    """[labels, H, W] cosine of each pixel's upsampled patch feature with each label's patch-aligned text
    embedding `text` [labels, D] (normalised), at the image's own size."""
    pixels = dense_transform(short_side)(image)[None].to(text.device)
    with torch.inference_mode():
        _, patches = model.get_visual_class_and_patch_tokens(pixels)
    h, w = pixels.shape[2] // model.patch_size, pixels.shape[3] // model.patch_size
    grid = patches[0].float().T.reshape(1, -1, h, w)  # [1, D, h, w]
    size = pixels.shape[2:]
    dots = torch.zeros(len(text), *size)
    norm2 = torch.zeros(*size)
    for start in range(0, grid.shape[1], CHANNELS_PER_CHUNK):
        up = F.interpolate(grid[:, start:start + CHANNELS_PER_CHUNK], size=size, mode="bicubic", align_corners=False)[0]
        norm2 += (up * up).sum(0)
        dots += torch.einsum("dhw,cd->chw", up, text[:, start:start + CHANNELS_PER_CHUNK].float())
    scores = dots / norm2.sqrt().clamp_min(1e-12)[None]  # F.normalize's eps
    return F.interpolate(scores[None], size=(image.height, image.width), mode="bilinear", align_corners=False)[0]


def label_embeddings(model, labels: list[str], templates: list[str] | None = None) -> torch.Tensor:
    """[labels, D/2]: the patch-aligned half of each label's text embedding, normalised."""
    full = text_classifier(model, labels, templates or ["{}"], cache=None)
    return F.normalize(full[:, full.shape[1] // 2:], dim=-1)


def text_segment(images, labels: list[str], model="dinotxt", *, templates: list[str] | None = None,
                 short_side: int = 448, device=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(label index [H, W], scores [labels, H, W]) per image."""
    net = load_dinotxt(model, device)
    text = label_embeddings(net, labels, templates)
    out = []
    for image in images:
        scores = text_scores(_image(image), net, text, short_side)
        out.append((scores.argmax(0).to(torch.int32).numpy(), scores.numpy()))
    return out


def write_text_segmentation(images, output, labels: list[str], model="dinotxt", *, templates=None,
                            short_side: int = 448, device=None) -> list[Path]:
    """OUT/<name>_seg.png (image, blended label map, legend), OUT/<name>_mask.png (label indices) and
    OUT/<name>_heat_<label>.png (each label's cosine map, colour-scaled per map)."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    net = load_dinotxt(model, device)
    text = label_embeddings(net, labels, templates)
    written = []
    for path in images:
        image = _image(path)
        scores = text_scores(image, net, text, short_side)
        mask = scores.argmax(0).to(torch.int32).numpy()
        stem = Path(str(path)).stem
        mask_picture(image, mask, labels).save(out / f"{stem}_seg.png")
        Image.fromarray(mask.astype(np.uint8 if len(labels) <= 256 else np.uint16)).save(out / f"{stem}_mask.png")
        for label, score in zip(labels, scores.numpy()):
            Image.fromarray(colorize(score)).save(out / f"{stem}_heat_{_file_part(label)}.png")
        written.append(out / f"{stem}_seg.png")
    return written


def _file_part(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:60] or "label"
