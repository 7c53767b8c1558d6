import shutil

import pytest

from tests.helpers import generated_images


@pytest.fixture
def photo_folder(tmp_path, photos):
    root = tmp_path / "photos"
    (root / "nested").mkdir(parents=True)
    for i, f in enumerate(photos):
        shutil.copy(f, (root / "nested" if i % 3 == 0 else root) / f.name)
    generated_images(root / "generated", 5)
    return root
