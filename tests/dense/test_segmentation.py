"""Segmentation: a head trained on generated (image, mask) pairs, saved, reloaded by `dinokit segment`;
the official head files' layout; dense matches."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import dinokit
from dinokit.dense import load_segmentation_model, match, segment
from dinokit.heads.segmentation import LinearSegmentationHead
from tests.helpers import cli, perturb_

CLASSES = ["background", "disc", "square"]


def shapes_on_textures(folder, count, seed, size=224):
    """Noise-textured background; discs (class 1: warm, striped) and squares (class 2: cool, speckled)."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(count):
        image = rng.integers(60, 140, (size, size, 3)).astype(np.float32)
        mask = np.zeros((size, size), np.uint8)
        for _ in range(rng.integers(1, 4)):
            cls = int(rng.integers(1, 3))
            cx, cy, r = rng.integers(40, size - 40, 2).tolist() + [int(rng.integers(22, 40))]
            region = ((xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2) if cls == 1 else (
                (abs(xx - cx) < r) & (abs(yy - cy) < r))
            if cls == 1:
                texture = np.stack([220 + 30 * np.sin(xx / 3.0), 120 + 0 * xx, 40 + 0 * xx], -1)
            else:
                texture = np.stack([30 + 0 * xx, 110 + 0 * xx, 200 + 0 * xx], -1) + rng.normal(0, 25, (size, size, 3))
            image[region] = texture[region]
            mask[region] = cls
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / "images" / f"{i:03d}.jpg", quality=95)
        Image.fromarray(mask, mode="L").save(folder / "masks" / f"{i:03d}.png")
    (folder / "masks" / "classes.txt").write_text("\n".join(CLASSES))
    return folder


def test_train_seg_learns_saves_and_segment_reloads(tiny_model_dir, tmp_path, report):
    data = shapes_on_textures(tmp_path / "train", 30, seed=0)
    run = cli("train-seg", "--images", data / "images", "--masks", data / "masks", "-o", tmp_path / "head",
              "--model", tiny_model_dir, "--image-size", "224", "--epochs", "40", "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    report(f"train-seg on generated shapes (30 pairs, 6 held out, random-weight tiny backbone): held-out mIoU "
           f"{result['miou']:.3f} vs majority-class {result['chance_miou']:.3f}")
    assert result["holdout_images"] == 6 and result["classes"] == 3
    assert result["miou"] > result["chance_miou"] + 0.4
    assert json.loads((tmp_path / "head" / "head.json").read_text())["class_names"] == CLASSES

    test = shapes_on_textures(tmp_path / "test", 4, seed=9)
    images = sorted((test / "images").glob("*.jpg"))
    run = cli("segment", *images, "-o", tmp_path / "out", "--head", tmp_path / "head")
    assert run.returncode == 0, run.stderr
    predicted = np.stack([np.asarray(Image.open(tmp_path / "out" / f"{p.stem}_mask.png")) for p in images])
    truth = np.stack([np.asarray(Image.open(test / "masks" / f"{p.stem}.png")) for p in images])
    assert predicted.shape == truth.shape
    pixel_accuracy = (predicted == truth).mean()
    assert pixel_accuracy > (truth == 0).mean() + 0.05  # better than calling everything background
    picture = Image.open(tmp_path / "out" / f"{images[0].stem}_seg.png")
    assert picture.width == 2 * 224 and picture.height > 224  # image, overlay, legend below
    in_python = segment(images[:1], tmp_path / "head")[0]
    assert (in_python == predicted[0]).all()


def test_official_segmentation_head_file(tiny_model_dir, tmp_path):
    backbone = dinokit.Dinov2Model.from_pretrained(tiny_model_dir)
    head = perturb_(LinearSegmentationHead(64, 150, layers=1), std=0.1)
    head.bn.running_mean.normal_()
    head.bn.running_var.uniform_(0.5, 2)
    sd = {f"decode_head.{k}": v for k, v in head.state_dict().items()}
    torch.save({"meta": {"CLASSES": None}, "state_dict": sd}, tmp_path / "dinov2_vits14_ade20k_linear_head.pth")
    model = load_segmentation_model(tmp_path / "dinov2_vits14_ade20k_linear_head.pth", backbone=tiny_model_dir)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        feats = backbone.get_intermediate_layers(x, n=1, reshape=True, norm=True)[0]
        bn = (feats - head.bn.running_mean[None, :, None, None]) / torch.sqrt(
            head.bn.running_var[None, :, None, None] + head.bn.eps) * head.bn.weight[None, :, None, None] \
            + head.bn.bias[None, :, None, None]
        logits = torch.einsum("bchw,kc->bkhw", bn, head.conv_seg.weight[:, :, 0, 0]) + head.conv_seg.bias[None, :, None, None]
        expected = F.interpolate(logits, size=(224, 224), mode="bilinear", align_corners=False)
        assert (model(x) - expected).abs().max() < 1e-4
    with pytest.raises(ValueError, match="backbone"):
        load_segmentation_model(tmp_path / "dinov2_vits14_ade20k_linear_head.pth")


def test_matches_follow_a_shift(photos, smooth_model_dir, tmp_path, report):
    photo = Image.open(next(p for p in photos if p.name == "coffee.png")).convert("RGB").resize((448, 448))
    shifted = photo.crop((56, 0, 448, 448))  # 4 patches (at 448 px) to the left
    m = match(photo, shifted, smooth_model_dir, max_matches=200, short_side=448)
    # the true position in B of a point of A is (x − 56, y); the shifted image is resized to 448 px high too
    scale = 448 / 448
    error = np.abs(m.points_b - (m.points_a - [56, 0]) * scale).max(1)
    correct = (error <= 14).mean()
    report(f"match on a 4-patch shift (random-weight model): {correct:.0%} of {len(m.scores)} mutual matches "
           f"within one patch")
    assert len(m.scores) >= 50 and correct > 0.5
    run = cli("match", photos[0], photos[1], "-o", tmp_path / "m.png", "--model", smooth_model_dir)
    assert run.returncode == 0, run.stderr
    assert Image.open(tmp_path / "m.png").height == 320
