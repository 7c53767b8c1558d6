"""`dinokit train-seg`: a linear segmentation head on frozen, cached DINOv2 patch features of the user's
(image, mask) pairs, with mIoU on a held-out split; saves a head folder that `dinokit segment` loads.

Masks: PNG files with the image's stem, one class index per pixel (palette or greyscale PNGs), 255 = ignore.
Class names: `classes.txt` in the masks folder (one per line), else "class 0", "class 1", …"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from ..data import IMAGENET_MEAN, IMAGENET_STD, list_images, load_image
from ..heads.segmentation import LinearSegmentationHead
from ..pretrained import AutoModel
from ..runtime.cpu import fast_path
from .models import SegmentationModel, last_blocks

IGNORE = 255


@dataclass
class SegTrainResult:
    output: str
    train_images: int
    holdout_images: int
    classes: int
    miou: float
    chance_miou: float
    per_class_iou: dict = field(default_factory=dict)
    seconds: float = 0.0


def pairs(images, masks) -> list[tuple[Path, Path]]:
    by_stem = {p.stem: p for p in Path(masks).rglob("*.png")}
    found = [(Path(p), by_stem.get(Path(p).stem)) for p in list_images(images)]
    missing = [str(p) for p, m in found if m is None]
    if missing:
        raise ValueError(f"no mask (PNG with the same name) in {masks} for {len(missing)} images, e.g. {missing[0]}")
    if not found:
        raise ValueError(f"no images in {images}")
    return found


def _load_pair(image_path, mask_path, size):
    image = load_image(image_path).resize((size, size), Image.BICUBIC)
    mask = Image.open(mask_path)
    if mask.mode not in ("P", "L", "I", "I;16"):
        raise ValueError(f"{mask_path}: a mask must hold class indices (palette or greyscale PNG), not {mask.mode}")
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
    x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    return x, torch.from_numpy(np.asarray(mask.resize((size, size), Image.NEAREST), dtype=np.int64))


def iou_per_class(pred: torch.Tensor, target: torch.Tensor, classes: int) -> np.ndarray:
    """IoU of every class over all pixels (NaN where the class is absent from both)."""
    valid = target != IGNORE
    p, t = pred[valid], target[valid]
    inter = torch.bincount(t[p == t], minlength=classes).double()
    union = torch.bincount(p, minlength=classes).double() + torch.bincount(t, minlength=classes).double() - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(inter, float("nan"))).numpy()


def train_segmentation(images, masks, output, model="dinov2_vits14", *, layers: int = 1, image_size: int = 448,
                       epochs: int = 40, lr: float = 1e-2, batch_size: int = 8, holdout: float = 0.2,
                       num_classes: int | None = None, seed: int = 0, device="cpu", progress=True) -> SegTrainResult:
    start = time.perf_counter()
    torch.manual_seed(seed)  # the head's initialisation: the same run gives the same head
    image_size = image_size // 14 * 14
    found = pairs(images, masks)
    backbone = fast_path(AutoModel.from_pretrained(model, device=device))
    if layers > 1 and not hasattr(backbone, "blocks"):
        raise ValueError(f"{model} is a ConvNeXt, whose stages differ in width: a head over {layers} of them does not "
                         "apply; use --layers 1 (the last stage)")
    blocks = last_blocks(backbone.n_blocks, layers)
    feats, targets = [], []
    with torch.inference_mode():  # the backbone is frozen: its features are computed once
        for img, msk in tqdm(found, desc="features", disable=not progress, leave=False):
            x, y = _load_pair(img, msk, image_size)
            maps = backbone.get_intermediate_layers(x[None].to(device), n=blocks, reshape=True, norm=True)
            feats.append(torch.cat(maps, 1)[0].cpu())
            targets.append(y)
    feats, targets = torch.stack(feats), torch.stack(targets)
    labels = targets[targets != IGNORE]
    classes = num_classes or int(labels.max()) + 1
    names_file = Path(masks) / "classes.txt"
    names = names_file.read_text().split("\n")[:classes] if names_file.is_file() else [f"class {i}" for i in range(classes)]
    names = [n.strip() or f"class {i}" for i, n in enumerate(names + [""] * (classes - len(names)))]
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(found), generator=g)
    n_hold = max(1, int(round(holdout * len(found)))) if len(found) > 1 else 0
    hold, train = order[:n_hold], order[n_hold:]
    head = LinearSegmentationHead(backbone.config.hidden_size, classes, layers).to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(train) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    for _ in tqdm(range(epochs), desc="train-seg", disable=not progress, leave=False):
        head.train()
        shuffled = train[torch.randperm(len(train), generator=g)]
        for i in range(0, len(train), batch_size):
            idx = shuffled[i:i + batch_size]
            logits = head([feats[idx].to(device)])
            logits = F.interpolate(logits, size=targets.shape[1:], mode="bilinear", align_corners=False)
            loss = F.cross_entropy(logits, targets[idx].to(device), ignore_index=IGNORE)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    head.eval()
    evaluated = hold if len(hold) else train
    with torch.no_grad():
        logits = F.interpolate(head([feats[evaluated].to(device)]), size=targets.shape[1:], mode="bilinear",
                               align_corners=False)
        ious = iou_per_class(logits.argmax(1).cpu(), targets[evaluated], classes)
        # chance: every pixel labelled with the most frequent training class
        majority = torch.bincount(targets[train][targets[train] != IGNORE], minlength=classes).argmax()
        chance = iou_per_class(torch.full_like(targets[evaluated], int(majority)), targets[evaluated], classes)
    model_out = SegmentationModel(backbone, head, blocks, names, image_size, str(model))
    model_out.save(output)
    return SegTrainResult(str(output), len(train), len(hold), classes, float(np.nanmean(ious)),
                          float(np.nanmean(chance)), {names[i]: round(float(v), 4) for i, v in enumerate(ious)},
                          round(time.perf_counter() - start, 1))
