"""ImageFiles: good files become tensors, bad files are reported, nothing stops the loop."""
import shutil

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from dinokit.data import Dinov2ImageProcessor, ImageFiles, collate_images
from tests.helpers import broken_files


def make_folder(tmp_path, photos):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    for f in photos[:3]:
        shutil.copy(f, root / f.name)
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(root / "sub" / "black.png")
    bad = broken_files(root)
    bad.pop("missing.jpg")
    return root, bad


def test_iteration_yields_good_and_reports_bad(tmp_path, photos):
    root, bad = make_folder(tmp_path, photos)
    ds = ImageFiles(root, Dinov2ImageProcessor())
    good = list(ds)
    assert len(good) == 4 and all(t.shape == (3, 224, 224) for t, _ in good)
    assert sorted(p.rsplit("/", 1)[1] for p, _ in ds.failures) == sorted(bad)
    expected = Dinov2ImageProcessor()(Image.open(photos[0]))["pixel_values"][0]
    assert torch.equal(dict((p, t) for t, p in good)[str(root / photos[0].name)], expected)


def test_dataloader_with_workers_collects_failures(tmp_path, photos):
    root, bad = make_folder(tmp_path, photos)
    ds = ImageFiles([root, tmp_path / "does-not-exist.jpg"], Dinov2ImageProcessor())
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_images)
    paths, failures = [], []
    for batch in loader:
        if batch.pixel_values is not None:
            assert batch.pixel_values.shape[0] == len(batch.paths)
        paths += batch.paths
        failures += batch.failures
    assert len(paths) == 4 and len(failures) == len(bad) + 1
    assert any("does-not-exist.jpg" in p and "file not found" in r for p, r in failures)
