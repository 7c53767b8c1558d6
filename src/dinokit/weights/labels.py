"""The class names the published classifiers were trained with."""
from __future__ import annotations

from importlib import resources


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, in class-index order (WordNet lemmas, as the hub configs)."""
    return resources.files("dinokit.weights").joinpath("imagenet1k_labels.txt").read_text().splitlines()


def imagenet_id2label() -> dict[int, str]:
    return dict(enumerate(imagenet_labels()))
