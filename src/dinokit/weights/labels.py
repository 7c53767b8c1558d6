"""The class names the published classifiers were trained with."""
from __future__ import annotations

from importlib import resources


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, in class-index order (WordNet lemmas, as the hub configs)."""
    return resources.files("dinokit.weights").joinpath("imagenet1k_labels.txt").read_text().splitlines()


def imagenet_id2label() -> dict[int, str]:
    return dict(enumerate(imagenet_labels()))


def zeroshot_class_names() -> list[str]:
    """CLIP's 1000 readable ImageNet class names, in class-index order: the names dino.txt's notebook
    classifies with (the same list as open_clip's `IMAGENET_CLASSNAMES`)."""
    return resources.files("dinokit.weights").joinpath("imagenet_zeroshot_classes.txt").read_text().splitlines()


def zeroshot_templates() -> list[str]:
    """CLIP's 80 ImageNet prompt templates (`{}` is the class name), as dino.txt's notebook ensembles them."""
    return resources.files("dinokit.weights").joinpath("imagenet_zeroshot_templates.txt").read_text().splitlines()
