"""iBOT block masking for the global crops: rectangles of patches (aspect 0.3–3.3, at least 4 patches)
until the wanted count is reached, as the official `MaskingGenerator`, but drawn from a generator seeded
per image so that the masks do not depend on how the batch is split over processes."""
from __future__ import annotations

import math

import numpy as np


def block_mask(height: int, width: int, count: int, rng: np.random.Generator, min_patches: int = 4,
               min_aspect: float = 0.3) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
    while mask.sum() < count:
        budget = count - int(mask.sum())
        added = 0
        for _ in range(10):
            area = min_patches + (budget - min_patches) * rng.random()  # as random.uniform, also when budget < min
            aspect = math.exp(rng.uniform(*log_aspect))
            h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if w < width and h < height:
                top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
                new = h * w - int(mask[top:top + h, left:left + w].sum())
                if 0 < new <= budget:
                    mask[top:top + h, left:left + w] = True
                    added = new
                    break
        if added == 0:
            break
    return mask


def sample_mask(grid: tuple[int, int], rng: np.random.Generator, probability: float = 0.5,
                ratio: tuple[float, float] = (0.1, 0.5)) -> np.ndarray:
    """One global crop's mask: with the given probability a block mask over a ratio drawn from `ratio` of
    the patches, else no mask (the official collate masks half of the crops with ratios spread over the
    range; per-image draws give the same distribution in expectation)."""
    h, w = grid
    if rng.random() >= probability:
        return np.zeros((h, w), dtype=bool)
    return block_mask(h, w, int(h * w * rng.uniform(*ratio)), rng)
