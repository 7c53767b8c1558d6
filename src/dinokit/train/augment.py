"""The DINOv2 multi-crop augmentation with torchvision transforms: 2 global crops (224 px, scale 0.32–1)
and N local crops (98 px for the released models, 96 in the default config; scale 0.05–0.32), each with
a horizontal flip, colour jitter (0.4, 0.4, 0.2, 0.1) with p 0.8 and greyscale with p 0.2; Gaussian blur
with p 1.0 (first global crop), 0.1 (second) and 0.5 (local crops) and solarisation with p 0.2 (second
global crop), as in the paper. The official code wraps its blur in `RandomApply(p=1 - p)`, so it actually
blurs the first global crop never and the second 90% of the time; `official_blur=True` reproduces that."""
from __future__ import annotations

import torch
from torchvision import transforms

from ..data import IMAGENET_MEAN, IMAGENET_STD


def _blur(p: float, official: bool):
    return transforms.RandomApply([transforms.GaussianBlur(kernel_size=9, sigma=(0.1, 2.0))],
                                  p=1 - p if official else p)


class MultiCropAugmentation:
    def __init__(self, global_crops_scale=(0.32, 1.0), local_crops_scale=(0.05, 0.32), local_crops_number=8,
                 global_crops_size=224, local_crops_size=98, official_blur=False):
        bicubic = transforms.InterpolationMode.BICUBIC
        self.local_crops_number = local_crops_number
        self.geometric_global = transforms.Compose([
            transforms.RandomResizedCrop(global_crops_size, scale=tuple(global_crops_scale), interpolation=bicubic),
            transforms.RandomHorizontalFlip(p=0.5)])
        self.geometric_local = transforms.Compose([
            transforms.RandomResizedCrop(local_crops_size, scale=tuple(local_crops_scale), interpolation=bicubic),
            transforms.RandomHorizontalFlip(p=0.5)])
        colour = transforms.Compose([
            transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            transforms.RandomGrayscale(p=0.2)])
        normalize = transforms.Compose([transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        self.global1 = transforms.Compose([colour, _blur(1.0, official_blur), normalize])
        self.global2 = transforms.Compose([colour, _blur(0.1, official_blur),
                                           transforms.RandomSolarize(threshold=128, p=0.2), normalize])
        self.local = transforms.Compose([colour, _blur(0.5, official_blur), normalize])

    def __call__(self, image, seed: int | None = None) -> dict:
        """seed: draw this image's randomness from its own generator (same crops on any number of processes)."""
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            global_crops = [self.global1(self.geometric_global(image)), self.global2(self.geometric_global(image))]
            local_crops = [self.local(self.geometric_local(image)) for _ in range(self.local_crops_number)]
        return {"global_crops": global_crops, "local_crops": local_crops}
