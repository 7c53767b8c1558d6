"""A dataset over image files that reports bad files instead of raising: the shared input of the
embedding, evaluation and training jobs."""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from .images import ImageLoadError, load_image, scan_images


class LoadedImage(NamedTuple):
    tensor: torch.Tensor | None  # None when the file could not be used
    path: str
    error: str | None  # the reason, when tensor is None
    index: int = -1  # position in the dataset (to join labels or results)


class ImageFiles(Dataset):
    """Images from folders (recursive), text files of paths, or paths, each turned into a tensor by
    `transform` (a `Dinov2ImageProcessor`, or any callable PIL image → CHW tensor).

    `dataset[i]` is a `LoadedImage`; iterating yields `(tensor, path)` for the good files and collects
    `(path, reason)` of the bad ones in `failures`, which starts with what the folder listing could not
    look at (`scan_images`' problems). With a DataLoader, use `collate_images`.

    `len()` is the number of files listed, good or bad: a file is known to be bad only once it is read
    (decoding every file twice to count them would double the work of a job), and a DataLoader needs
    fixed indices. After one pass, every listed path not named in `failures` was good.
    """

    def __init__(self, inputs, transform: Callable, *, recursive: bool = True, max_pixels: int | None = None,
                 background: tuple[int, int, int] | None = None):
        scan = scan_images(inputs, recursive=recursive)
        self.paths = [str(p) for p in scan.paths]
        self.transform = transform
        self.load_kwargs = {"background": background if background is not None else getattr(transform, "alpha_background", None)}
        if max_pixels is not None:
            self.load_kwargs["max_pixels"] = max_pixels
        self.failures: list[tuple[str, str]] = list(scan.problems)

    @classmethod
    def from_paths(cls, paths: list[str], transform: Callable, **kwargs) -> ImageFiles:
        """Exactly these files, in this order (no folder listing)."""
        dataset = cls([], transform, **kwargs)
        dataset.paths = [str(p) for p in paths]
        return dataset

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> LoadedImage:
        path = self.paths[index]
        try:
            image = load_image(path, **self.load_kwargs)
            tensor = self.transform(image)
        except ImageLoadError as e:
            return LoadedImage(None, path, e.reason, index)
        except Exception as e:  # a transform failing on one odd image must not stop a job of millions
            return LoadedImage(None, path, f"preprocessing failed: {type(e).__name__}: {e}", index)
        if isinstance(tensor, dict):  # a processor's BatchFeature of one image
            tensor = tensor["pixel_values"][0]
        return LoadedImage(torch.as_tensor(tensor), path, None, index)

    def __iter__(self):
        for i in range(len(self)):
            item = self[i]
            if item.error is None:
                yield item.tensor, item.path
            else:
                self.failures.append((item.path, item.error))


class ImageBatch(NamedTuple):
    pixel_values: torch.Tensor | None  # None when every image of the batch failed
    paths: list[str]
    failures: list[tuple[str, str]]
    indices: torch.Tensor  # dataset positions of the good images, in batch order


def collate_images(items: list[LoadedImage]) -> ImageBatch:
    good = [it for it in items if it.error is None]
    failures = [(it.path, it.error) for it in items if it.error is not None]
    pixels = torch.stack([it.tensor for it in good]) if good else None
    return ImageBatch(pixels, [it.path for it in good], failures, torch.tensor([it.index for it in good], dtype=torch.long))
