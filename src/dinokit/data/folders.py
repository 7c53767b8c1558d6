"""ImageFolder layout: one sub-folder per class, as torchvision's ImageFolder (classes sorted by name)."""
from __future__ import annotations

from pathlib import Path

from .images import list_images


def labelled_images(root) -> tuple[list[str], list[int], list[str]]:
    """(paths, class indices, class names) of ROOT/<class>/**/<image>."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"not a folder: {root}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"{root} has no class sub-folders (expected ROOT/<class>/<image>)")
    paths, labels = [], []
    for index, name in enumerate(classes):
        found = [str(p) for p in list_images(root / name)]
        paths += found
        labels += [index] * len(found)
    return paths, labels, classes
