import os
import shutil
from pathlib import Path

import pytest
import torch

os.environ.setdefault("XFORMERS_DISABLED", "1")  # the official package probes xFormers at import



def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="run tests marked slow (on by default when CI=true)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: full-size models or long jobs; run with --runslow or CI=true")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("CI", "").lower() == "true":
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow or CI=true")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def photos() -> list[Path]:
    from tests.helpers import sample_photos

    return sample_photos()


@pytest.fixture
def photo_dir(tmp_path, photos) -> Path:
    """A folder holding just the 11 photos (the packages' data folders hold other files too)."""
    folder = tmp_path / "photos11"
    folder.mkdir()
    for f in photos:
        shutil.copy(f, folder / f.name)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A small random model saved in the Hugging Face layout (config.json + model.safetensors); strongly
    perturbed weights, so that images get well spread-out embeddings."""
    from tests.helpers import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"), noise=0.5)


@pytest.fixture(scope="session")
def smooth_model_dir(tmp_path_factory):
    """Weights near the initialisation: features that change little under re-encoding, resizing and small
    crops (as trained features do), so copy detection can be tested. Measured on the shared photos: copies
    ≥ 0.996 cosine (CLS), distinct photos ≤ 0.957."""
    from tests.helpers import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("smooth-model"), noise=0.1)


PARITY_LINES: list[str] = []


@pytest.fixture
def report():
    """Record a measured number; all of them are printed at the end of the run."""
    return PARITY_LINES.append


def pytest_terminal_summary(terminalreporter):
    if PARITY_LINES:
        terminalreporter.section("measured parity (max abs difference)")
        for line in PARITY_LINES:
            terminalreporter.write_line(line)


@pytest.fixture
def photo_folder(tmp_path, photos):
    root = tmp_path / "photos"
    (root / "nested").mkdir(parents=True)
    for i, f in enumerate(photos):
        shutil.copy(f, (root / "nested" if i % 3 == 0 else root) / f.name)
    from tests.helpers import generated_images

    generated_images(root / "generated", 5)
    return root
