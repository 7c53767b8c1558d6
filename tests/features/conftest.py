import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import dinokit


def save_tiny_model(folder, noise):
    torch.manual_seed(0)
    model = dinokit.Dinov2Model(dinokit.Dinov2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                                     image_size=224))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * noise)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A small random model saved in the Hugging Face layout (config.json + model.safetensors); strongly
    perturbed weights, so that images get well spread-out embeddings."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"), noise=0.5)


@pytest.fixture(scope="session")
def smooth_model_dir(tmp_path_factory):
    """Weights near the initialisation: features that change little under re-encoding, resizing and small
    crops (as trained features do), so copy detection can be tested. Measured on the shared photos: copies
    ≥ 0.996 cosine (CLS), distinct photos ≤ 0.957."""
    return save_tiny_model(tmp_path_factory.mktemp("smooth-model"), noise=0.1)


def generated_images(folder, count, seed=0, size=(80, 96)):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        path = folder / f"gen_{i:04d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def photo_folder(tmp_path, photos):
    root = tmp_path / "photos"
    (root / "nested").mkdir(parents=True)
    for i, f in enumerate(photos):
        shutil.copy(f, (root / "nested" if i % 3 == 0 else root) / f.name)
    generated_images(root / "generated", 5)
    return root
