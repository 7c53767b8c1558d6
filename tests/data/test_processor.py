"""Dinov2ImageProcessor against transformers' BitImageProcessorPil (the hub's preprocessor_config.json)."""
import json
import warnings

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

from dinokit import AutoImageProcessor, Dinov2ImageProcessor
from dinokit.data import official_eval_transform

HUB_CONFIG = {  # facebook/dinov2-* preprocessor_config.json
    "crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True,
    "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.485, 0.456, 0.406],
    "image_processor_type": "BitImageProcessor", "image_std": [0.229, 0.224, 0.225], "resample": 3,
    "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 256},
}


@pytest.fixture
def hub_folder(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(HUB_CONFIG))
    return tmp_path


def reference(folder):
    kw = {k: v for k, v in HUB_CONFIG.items() if k != "image_processor_type"}
    return transformers.BitImageProcessorPil(**kw)


def test_real_photos_equal_transformers_pil_backend_bitwise(photos, hub_folder, report):
    ours, theirs = AutoImageProcessor.from_pretrained(hub_folder), reference(hub_folder)
    worst = 0.0
    for f in photos:
        with Image.open(f) as im:
            a = ours(im, return_tensors="np")["pixel_values"]
            b = theirs(im, return_tensors="np")["pixel_values"]
        assert a.shape == b.shape == (1, 3, 224, 224), f.name
        worst = max(worst, float(np.abs(a - b).max()))
    report(f"processor vs transformers BitImageProcessorPil on {len(photos)} shared photos: {worst:.1e}")
    assert worst == 0.0


def test_no_argument_defaults_are_the_hub_values(hub_folder):
    assert Dinov2ImageProcessor().to_dict() == AutoImageProcessor.from_pretrained(hub_folder).to_dict()
    assert Dinov2ImageProcessor().to_dict() == {**HUB_CONFIG, "image_processor_type": "BitImageProcessor"}


def transparent_image():
    rgba = np.zeros((90, 120, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red under fully transparent pixels
    rgba[30:60, 40:80] = (10, 200, 30, 255)
    return Image.fromarray(rgba, "RGBA")


def test_alpha_handling_default_and_transformers5_option(hub_folder):
    img = transparent_image()
    default = Dinov2ImageProcessor()(img)["pixel_values"]
    assert torch.equal(default, Dinov2ImageProcessor()(img.convert("RGB"))["pixel_values"])
    white = Dinov2ImageProcessor(alpha_background=(255, 255, 255))(img, return_tensors="np")["pixel_values"]
    assert np.array_equal(white, reference(hub_folder)(img, return_tensors="np")["pixel_values"])
    assert not np.allclose(white, default.numpy())


def test_every_input_type_gives_the_same_pixels(photos, tmp_path):
    proc = Dinov2ImageProcessor()
    path = next(f for f in photos if f.name == "chelsea.png")
    pil = Image.open(path).convert("RGB")
    expected = proc(pil).pixel_values
    hwc = np.asarray(pil)
    for variant in (str(path), path, hwc, hwc.transpose(2, 0, 1), torch.from_numpy(hwc.transpose(2, 0, 1).copy()),
                    hwc.astype(np.float32)):
        assert torch.equal(proc(variant).pixel_values, expected)
    batch = proc([pil, str(path)], return_tensors="np")
    assert isinstance(batch.pixel_values, np.ndarray) and batch.pixel_values.shape == (2, 3, 224, 224)
    with pytest.raises(ValueError, match="return_tensors"):
        proc(pil, return_tensors="tf")
    with pytest.raises(TypeError, match="unsupported image type"):
        proc(42)


def test_other_sizes_no_crop_and_multiples_of_14(photos):
    img = Image.open(next(f for f in photos if f.name == "china.jpg"))  # 640x427
    assert Dinov2ImageProcessor(size=518, crop_size=518)(img).pixel_values.shape == (1, 3, 518, 518)
    assert Dinov2ImageProcessor(do_center_crop=False)(img).pixel_values.shape == (1, 3, 256, 383)
    dense = Dinov2ImageProcessor(size=448, do_center_crop=False, size_divisor=14)(img).pixel_values
    assert dense.shape[2] % 14 == 0 and dense.shape[3] % 14 == 0 and dense.shape[2] == 448


def test_json_round_trip_loads_in_transformers(tmp_path):
    proc = Dinov2ImageProcessor(size=518, crop_size=518)
    proc.save_pretrained(tmp_path)
    theirs = transformers.AutoImageProcessor.from_pretrained(tmp_path, backend="pil")
    assert theirs.size["shortest_edge"] == 518 and theirs.crop_size["height"] == 518
    assert Dinov2ImageProcessor.from_pretrained(tmp_path).to_dict() == proc.to_dict()


def test_tensor_path_is_within_about_one_grey_level(photos, report):
    """Same resize on uint8 tensors (torchvision bicubic, antialiased) vs PIL; crops compared separately."""
    proc = Dinov2ImageProcessor(do_center_crop=False)
    fast = proc.tensor_transform()
    mean_diff, p99 = 0.0, 0.0
    for f in photos:
        img = Image.open(f).convert("RGB")
        exact = proc(img).pixel_values[0]
        quick = fast(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
        assert quick.shape == exact.shape
        diff = (exact - quick).abs()
        mean_diff = max(mean_diff, diff.mean().item())
        p99 = max(p99, diff.flatten().quantile(0.99).item())
    report(f"tensor path vs PIL path (normalised units; one grey level = 0.0175): mean {mean_diff:.4f}, p99 {p99:.3f}")
    assert mean_diff < 0.002 and p99 < 0.0175


def test_official_eval_transform_crop_rounds_the_offset(photos):
    """640x427 → 383x256: margin 159, transformers crops at 79, torchvision at 80."""
    img = Image.open(next(f for f in photos if f.name == "china.jpg")).convert("RGB")
    official = official_eval_transform()(img)
    ours = Dinov2ImageProcessor()(img).pixel_values[0]
    shifted = Dinov2ImageProcessor(crop_size={"height": 224, "width": 226})(img).pixel_values[0][:, :, 2:]
    assert (official - ours).abs().max() > 0.5  # the one-pixel shift is visible at the edges
    assert (official - shifted[:, :, :224]).abs().mean() < (official - ours).abs().mean()


CALL_OPTIONS = [
    {}, {"do_center_crop": False}, {"size": {"shortest_edge": 100}, "crop_size": {"height": 64, "width": 80}},
    {"do_normalize": False}, {"do_rescale": False}, {"do_resize": False}, {"resample": 2},
    {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.2, 0.3, 0.4]}, {"rescale_factor": 1 / 127.5},
    {"do_resize": False, "do_center_crop": False},
]


@pytest.mark.parametrize("options", CALL_OPTIONS, ids=lambda o: ",".join(o) or "defaults")
def test_call_time_options_equal_transformers(photos, hub_folder, options):
    """transformers' processors take every option per call; the same call gives the same pixels."""
    img = Image.open(next(f for f in photos if f.name == "chelsea.png")).convert("RGB")
    ours = AutoImageProcessor.from_pretrained(hub_folder)(img, return_tensors=None, **options)["pixel_values"]
    theirs = reference(hub_folder)(img, return_tensors=None, **options)["pixel_values"]
    assert isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs) == 1
    assert ours[0].shape == theirs[0].shape and np.array_equal(ours[0], theirs[0])


@pytest.mark.parametrize("options", [{}, {"do_resize": False}, {"do_rescale": False}], ids=["defaults", "no-resize", "no-rescale"])
def test_float_images_in_unit_range_as_transformers(photos, hub_folder, options):
    """A float image in [0, 1] with do_rescale set is rescaled once more, as transformers does (with a warning)."""
    img = np.asarray(Image.open(next(f for f in photos if f.name == "chelsea.png")).convert("RGB"))
    unit = img.astype(np.float32) / 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = AutoImageProcessor.from_pretrained(hub_folder)(unit, return_tensors="np", **options)["pixel_values"]
        theirs = reference(hub_folder)(unit, return_tensors="np", **options)["pixel_values"]
    assert ours.shape == theirs.shape and np.abs(ours - theirs).max() <= 1e-6


def test_batch_feature_to_keys_and_unknown_options(photos):
    img = Image.open(next(f for f in photos if f.name == "chelsea.png"))
    batch = Dinov2ImageProcessor()(images=img, return_tensors="pt")
    assert list(batch.keys()) == ["pixel_values"] and batch["pixel_values"] is batch.pixel_values
    assert batch.to(torch.float16).pixel_values.dtype == torch.float16
    assert batch.to("cpu").pixel_values.device.type == "cpu"
    hwc = Dinov2ImageProcessor()(img, return_tensors="np", data_format="channels_last").pixel_values
    assert hwc.shape == (1, 224, 224, 3) and np.array_equal(hwc.transpose(0, 3, 1, 2), batch.pixel_values.numpy())
    with pytest.raises(TypeError, match="do_centre_crop"):
        Dinov2ImageProcessor()(img, do_centre_crop=False)
