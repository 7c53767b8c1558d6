"""Training augmentations shared by the jobs that train on labelled images (fine-tuning, linear probe)."""
from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode, v2

from .processor import IMAGENET_MEAN, IMAGENET_STD


def classification_train_transform(size: int = 224, min_scale: float = 0.08, flip: bool = True):
    """RandomResizedCrop (scale min_scale–1) + horizontal flip, as the official linear evaluation trains
    (PIL in, tensor out). Raise min_scale, or drop the flip, for data where those destroy the label
    (digits, text)."""
    return v2.Compose([
        v2.PILToTensor(),
        v2.RandomResizedCrop(size, scale=(min_scale, 1.0), interpolation=InterpolationMode.BICUBIC, antialias=True),
        v2.RandomHorizontalFlip(0.5 if flip else 0.0),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
