"""Robust image loading on images synthesised in every mode and format, and on broken files."""

import io

import numpy as np
import pytest
from PIL import Image

from dinokit.data import ImageLoadError, load_image
from tests.helpers import broken_files

rng = np.random.default_rng(0)
RGB = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)


def save(tmp_path, name, img, **kw):
    path = tmp_path / name
    img.save(path, **kw)
    return path


def p_with_transparency():
    img = Image.fromarray(RGB).convert("P", palette=Image.ADAPTIVE, colors=16)
    img.info["transparency"] = 3
    return img


CONVERT_CASES = {  # name: (file name, image, save kwargs) — must equal Image.open(f).convert("RGB")
    "rgb-jpeg": ("a.jpg", Image.fromarray(RGB), {"quality": 95}),
    "rgba-png": ("a.png", Image.fromarray(np.dstack([RGB, rng.integers(0, 256, (40, 60), dtype=np.uint8)]), "RGBA"), {}),
    "l-png": ("l.png", Image.fromarray(RGB[..., 0], "L"), {}),
    "la-png": ("la.png", Image.fromarray(np.dstack([RGB[..., 0], RGB[..., 1]]), "LA"), {}),
    "p-transparency-png": ("p.png", p_with_transparency(), {}),
    "p-gif": ("p.gif", Image.fromarray(RGB).convert("P"), {}),
    "cmyk-jpeg": ("cmyk.jpg", Image.fromarray(RGB).convert("CMYK"), {}),
    "rgb-webp": ("a.webp", Image.fromarray(RGB), {"lossless": True}),
    "rgb-bmp": ("a.bmp", Image.fromarray(RGB), {}),
    "rgb-tiff": ("a.tiff", Image.fromarray(RGB), {}),
    "rgb-avif": ("a.avif", Image.fromarray(RGB), {}),
}


@pytest.mark.parametrize("case", list(CONVERT_CASES))
def test_modes_and_formats_equal_convert_rgb(case, tmp_path):
    name, img, kw = CONVERT_CASES[case]
    path = save(tmp_path, name, img, **kw)
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.size == (60, 40)
    assert np.array_equal(np.asarray(loaded), np.asarray(Image.open(path).convert("RGB")))


def test_heic_through_pillow_heif(tmp_path):
    pytest.importorskip("pillow_heif")
    path = save(tmp_path, "a.heic", Image.fromarray(RGB), quality=95)
    assert load_image(path).size == (60, 40)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    path = save(tmp_path, "deep.png", Image.fromarray(ramp))
    assert Image.open(path).mode.startswith("I")
    loaded = np.asarray(load_image(path))[..., 0]
    assert loaded[0, 0] == 0 and loaded[0, -1] == 255
    assert len(np.unique(loaded)) > 50  # a ramp, not a clipped step
    floats = save(tmp_path, "f.tiff", Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)))
    assert np.asarray(load_image(floats))[..., 0].max() == 255


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(RGB)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    path = save(tmp_path, "rot.jpg", img, exif=exif.tobytes())
    assert load_image(path).size == (40, 60)


def test_animated_gif_gives_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert np.asarray(load_image(path))[0, 0].tolist() == [255, 0, 0]


def test_alpha_compositing_is_opt_in(tmp_path):
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    path = save(tmp_path, "t.png", Image.fromarray(rgba, "RGBA"))
    assert np.asarray(load_image(path))[0, 0].tolist() == [200, 0, 0]
    assert np.asarray(load_image(path, background=(255, 255, 255)))[0, 0].tolist() == [255, 255, 255]


def test_every_bad_file_raises_the_typed_error_with_its_path(tmp_path):
    for name, reason in broken_files(tmp_path).items():
        with pytest.raises(ImageLoadError) as err:
            load_image(tmp_path / name)
        assert err.value.path == str(tmp_path / name) and str(tmp_path / name) in str(err.value)
        assert reason in err.value.reason


def test_decompression_bomb_limit(tmp_path):
    path = save(tmp_path, "big.png", Image.new("L", (400, 300)))
    with pytest.raises(ImageLoadError, match="decompression bomb: 400x300"):
        load_image(path, max_pixels=100_000)
    assert load_image(path, max_pixels=None).size == (400, 300)


def test_uploaded_bytes_decode_like_the_file_with_the_same_errors(tmp_path, photos):
    """decode_image (the service's uploads) gives load_image's pixels and reasons, naming the upload."""
    from dinokit.data import decode_image

    for photo in photos:
        assert np.array_equal(np.asarray(decode_image(photo.read_bytes(), photo.name)), np.asarray(load_image(photo)))
    for name, reason in broken_files(tmp_path).items():
        if (tmp_path / name).exists():
            with pytest.raises(ImageLoadError) as err:
                decode_image((tmp_path / name).read_bytes(), f"upload {name}")
            assert err.value.path == f"upload {name}" and reason in err.value.reason
    big = io.BytesIO()
    Image.new("L", (400, 300)).save(big, "PNG")
    with pytest.raises(ImageLoadError, match="decompression bomb: 400x300"):
        decode_image(big.getvalue(), max_pixels=100_000)
