"""The one loop that runs a model over image files, shared by embedding and evaluation: workers decode
(bad files become reported failures, never exceptions), the main process runs the model under
`torch.inference_mode()`, and the caller decides what to keep of each batch."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..data import ImageBatch, ImageFiles, collate_images


def run_over_images(files: ImageFiles, forward: Callable[[torch.Tensor], Any],
                    keep: Callable[[ImageBatch, Any], None], *, batch_size: int, num_workers: int,
                    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
    """keep(batch, forward(pixels)) for every batch of `files`; forward's output is None for a batch in
    which every image failed (keep still sees the failures)."""
    device = torch.device(device)
    loader = DataLoader(files, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_images,
                        persistent_workers=False, pin_memory=device.type == "cuda")
    with torch.inference_mode():
        for batch in loader:
            pixels = batch.pixel_values
            keep(batch, None if pixels is None else forward(pixels.to(device, dtype, non_blocking=True)))
