"""Training augmentations shared by the jobs that train on labelled images (fine-tuning, linear probe)."""
from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode, v2

from .processor import IMAGENET_MEAN, IMAGENET_STD


def classification_train_transform(size: int = 224):
    """RandomResizedCrop + horizontal flip, as the official linear evaluation trains (PIL in, tensor out)."""
    return v2.Compose([
        v2.PILToTensor(),
        v2.RandomResizedCrop(size, interpolation=InterpolationMode.BICUBIC, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
