"""A few photos that come with the package, so the first command works on a fresh install."""
from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path


def write_samples(folder: str | Path) -> list[Path]:
    """Copy the sample photos into `folder` (created if needed); returns the files written, sorted."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for item in sorted(resources.files("dinokit.data").joinpath("samples").iterdir(), key=lambda f: f.name):
        if item.name.endswith(".jpg"):
            with resources.as_file(item) as source:
                written.append(Path(shutil.copyfile(source, folder / item.name)))
    return written
