"""`dinokit depth`, `dinokit segment` and `dinokit match`: images in, pictures and raw arrays out."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data import dense_transform, load_image, to_rgb
from ..runtime.cpu import fast_path
from .models import DepthModel, SegmentationModel, load_depth_model, load_segmentation_model
from .pictures import colour_depth, mask_picture, match_picture

DEPTH_PNG_SCALE = 256  # 16-bit PNG: value = depth in metres × 256 (KITTI's convention; up to 256 m)


def _image(image) -> Image.Image:
    """A path through the robust loader; a PIL image as RGB."""
    return load_image(image) if not isinstance(image, Image.Image) else to_rgb(image)


def _pixels(image, short_side, device) -> tuple[Image.Image, torch.Tensor]:
    image = _image(image)
    return image, dense_transform(short_side)(image)[None].to(device)


def depth(images, model="dinov2_vits14_nyu_dpt", *, backbone=None, short_side: int | None = 448,
          device="cpu") -> list[np.ndarray]:
    """Depth in metres at each image's own size (H, W), float32."""
    net = fast_path(model if isinstance(model, DepthModel) else load_depth_model(model, backbone=backbone, device=device))
    out = []
    for image in images:
        image, x = _pixels(image, short_side, device)
        out.append(net.predict(x, size=(image.height, image.width))[0, 0].float().cpu().numpy())
    return out


def write_depth(images, output, model="dinov2_vits14_nyu_dpt", *, backbone=None, raw_format: str = "png16",
                short_side: int | None = 448, device="cpu") -> list[Path]:
    """OUT/<name>_depth.png (coloured) and OUT/<name>_depth16.png (uint16, metres × 256) or <name>_depth.npy."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    net = fast_path(load_depth_model(model, backbone=backbone, device=device) if not isinstance(model, DepthModel) else model)
    written = []
    for path in images:
        d = depth([path], net, short_side=short_side, device=device)[0]
        stem = Path(str(path)).stem
        colour_depth(d).save(out / f"{stem}_depth.png")
        if raw_format == "npy":
            np.save(out / f"{stem}_depth.npy", d.astype(np.float32))
        else:
            raw = np.clip(d * DEPTH_PNG_SCALE, 0, 65535).astype(np.uint16)
            if not raw.any():  # depths below 1/256 m round to 0: an empty picture must not pass silently
                warnings.warn(f"{path}: every depth is below 1/{DEPTH_PNG_SCALE} m, so {stem}_depth16.png is all zeros; "
                              "use --raw npy for float metres", stacklevel=2)
            Image.fromarray(raw).save(out / f"{stem}_depth16.png")
        written.append(out / f"{stem}_depth.png")
    return written


def segment(images, model, *, backbone=None, device="cpu") -> list[np.ndarray]:
    """Class index of every pixel, at each image's own size (H, W)."""
    if not isinstance(model, SegmentationModel):
        model = load_segmentation_model(model, backbone=backbone, device=device)
    net = fast_path(model)
    out = []
    with torch.inference_mode():
        for image in images:
            image, x = _pixels(image, net.image_size, device)
            logits = F.interpolate(net(x), size=(image.height, image.width), mode="bilinear", align_corners=False)
            out.append(logits[0].argmax(0).to(torch.int32).cpu().numpy())
    return out


def write_segmentation(images, output, model, *, backbone=None, device="cpu") -> list[Path]:
    """OUT/<name>_seg.png (image, blended mask, legend) and OUT/<name>_mask.png (class indices)."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    if not isinstance(model, SegmentationModel):
        model = load_segmentation_model(model, backbone=backbone, device=device)
    net = fast_path(model)
    written = []
    for path in images:
        image = _image(path)  # decoded once: for the model and for the picture
        mask = segment([image], net, device=device)[0]
        stem = Path(str(path)).stem
        mask_picture(image, mask, net.class_names).save(out / f"{stem}_seg.png")
        Image.fromarray(mask.astype(np.uint16 if mask.max() > 255 else np.uint8)).save(out / f"{stem}_mask.png")
        written.append(out / f"{stem}_seg.png")
    return written


@dataclass
class Matches:
    points_a: np.ndarray  # [M, 2] (x, y) pixel centres of the matched patches in image A
    points_b: np.ndarray
    scores: np.ndarray  # cosine similarity of each match


def match(image_a, image_b, model, *, max_matches: int = 100, short_side: int = 448, device="cpu") -> Matches:
    """Mutual nearest neighbours between the last block's (normed) patch features of two images."""
    from ..pretrained import AutoModel

    net = fast_path(model if isinstance(model, torch.nn.Module) else AutoModel.from_pretrained(model, device=device))
    grids, feats = [], []
    with torch.inference_mode():
        for image in (image_a, image_b):
            image, x = _pixels(image, short_side, device)
            x = x[..., : x.shape[2] // net.patch_size * net.patch_size, : x.shape[3] // net.patch_size * net.patch_size]
            f = net.get_intermediate_layers(x, n=1, reshape=True)[0][0]  # [D, h, w]
            h, w = f.shape[1:]
            scale = (image.width / x.shape[3], image.height / x.shape[2])
            ys, xs = np.mgrid[0:h, 0:w]
            grids.append(np.stack([(xs.ravel() + 0.5) * net.patch_size * scale[0],
                                   (ys.ravel() + 0.5) * net.patch_size * scale[1]], 1))
            feats.append(F.normalize(f.flatten(1).T.float(), dim=1))
    sim = feats[0] @ feats[1].T
    ab, ba = sim.argmax(1), sim.argmax(0)
    mutual = torch.nonzero(ba[ab] == torch.arange(len(ab), device=ab.device)).flatten()
    scores = sim[mutual, ab[mutual]]
    keep = torch.argsort(scores, descending=True)[:max_matches]
    ia, ib = mutual[keep].cpu().numpy(), ab[mutual[keep]].cpu().numpy()
    return Matches(grids[0][ia], grids[1][ib], scores[keep].cpu().numpy())


def write_match(image_a, image_b, output, model, *, max_matches: int = 100, short_side: int = 448,
                device="cpu") -> Matches:
    a, b = _image(image_a), _image(image_b)  # decoded once: for the model and for the picture
    m = match(a, b, model, max_matches=max_matches, short_side=short_side, device=device)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    match_picture(a, b, m.points_a, m.points_b, m.scores).save(output)
    return m
