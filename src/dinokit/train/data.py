"""Training data: any image folder or list of paths through the shared robust loader, multi-crop views and
iBOT masks drawn per image from seeds of (run seed, epoch, image), and a batch order that is a function of
the step alone — so a resumed run and a run on any number of processes see the same batches."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data import ImageLoadError, list_images, load_image
from .augment import MultiCropAugmentation
from .masking import sample_mask


def _seed(*parts: int) -> int:
    return zlib.crc32(np.asarray(parts, dtype=np.int64).tobytes())


class MultiCropImages(Dataset):
    """Item (epoch, index) → (global crops, local crops, masks [2, N] of the global crops). An image
    that cannot be read is logged (failures.jsonl) and replaced by the next readable one."""

    def __init__(self, source, augmentation: MultiCropAugmentation, patch_size: int, global_size: int,
                 mask_probability: float, mask_ratio: tuple[float, float], seed: int = 0, failures=None):
        self.paths = [str(p) for p in list_images(source)]
        if not self.paths:
            raise ValueError(f"no images in {source}")
        self.augmentation, self.seed = augmentation, seed
        self.grid = (global_size // patch_size,) * 2
        self.mask_probability, self.mask_ratio = mask_probability, tuple(mask_ratio)
        self.failures = Path(failures) if failures else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item):
        epoch, index = item
        for attempt in range(len(self.paths)):
            i = (index + attempt) % len(self.paths)
            try:
                image = load_image(self.paths[i])
                break
            except ImageLoadError as e:
                if self.failures is not None:
                    with open(self.failures, "a") as f:
                        f.write(json.dumps({"path": self.paths[i], "reason": str(e)}) + "\n")
        else:
            raise ValueError("no readable image in the training set")
        crops = self.augmentation(image, seed=_seed(self.seed, epoch, index))
        rng = np.random.default_rng(_seed(self.seed, epoch, index, 1))
        masks = np.stack([sample_mask(self.grid, rng, self.mask_probability, self.mask_ratio).ravel() for _ in range(2)])
        return crops["global_crops"], crops["local_crops"], torch.from_numpy(masks)


def collate(samples) -> dict:
    """Crop-major batches, as the official collate: [crop 0 of every image, crop 1 of every image]."""
    return {
        "global_crops": torch.stack([s[0][c] for c in range(len(samples[0][0])) for s in samples]),
        "local_crops": torch.stack([s[1][c] for c in range(len(samples[0][1])) for s in samples])
        if samples[0][1] else torch.zeros(0),
        "masks": torch.stack([s[2][c] for c in range(2) for s in samples]),
    }


def batch_indices(step: int, steps_per_epoch: int, dataset_size: int, global_batch: int, rank: int,
                  per_process: int, seed: int) -> list[tuple[int, int]]:
    """The (epoch, image) items of this process at this step: the step's slice of the epoch's seeded
    permutation, cut into per-process parts in rank order."""
    epoch, k = divmod(step, steps_per_epoch)
    order = np.random.default_rng(_seed(seed, epoch, 2)).permutation(dataset_size)
    start = (k * global_batch) % dataset_size + rank * per_process
    return [(epoch, int(order[(start + j) % dataset_size])) for j in range(per_process)]


class StepBatches(torch.utils.data.Sampler):
    """Batches of items from `start` to `stop` steps, for a DataLoader's batch_sampler."""

    def __init__(self, start, stop, **kwargs):
        self.start, self.stop, self.kwargs = start, stop, kwargs

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield batch_indices(step, **self.kwargs)

    def __len__(self):
        return self.stop - self.start
