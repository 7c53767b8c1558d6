import numpy as np
import pytest
from PIL import Image


def colour_classes(root, per_class, seed=0, size=64):
    """Three easy classes: mostly red, mostly green, mostly blue noise images."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(["red", "green", "blue"]):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
            arr[..., c] = rng.integers(150, 256, (size, size), dtype=np.uint8)
            Image.fromarray(arr).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def colour_dataset(tmp_path):
    return colour_classes(tmp_path / "train", 16, seed=0), colour_classes(tmp_path / "val", 8, seed=1)
