"""Opening image files the way the real world needs: EXIF orientation, every PIL mode to RGB, the first
frame of animations, a decompression-bomb limit, and one typed error for every bad file.

RGB, RGBA, LA, L, P (with or without transparency), CMYK and other 8-bit modes become exactly what
`Image.convert("RGB")` gives, so embeddings agree with the reference pipelines (alpha is dropped, not
composited). Compositing on a background colour is opt-in (`background=`). High-bit-depth modes
(I;16, I, F) are scaled to 8 bits instead of being clipped.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own limit (2 × Image.MAX_IMAGE_PIXELS raises; we raise at 1 ×)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".avif", ".heic", ".heif")

try:  # HEIC/HEIF through the pillow-heif plugin when installed (pip install dinokit[heif]); AVIF is in Pillow
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - optional
    pass


class ImageLoadError(Exception):
    """A file that cannot be used as an image; names the file and the reason."""

    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


def load_image(path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               background: tuple[int, int, int] | None = None) -> Image.Image:
    """An RGB PIL image from a file, or `ImageLoadError`."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ImageLoadError(path, f"cannot read file ({e.strerror or e})") from None
    if size == 0:
        raise ImageLoadError(path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if max_pixels is not None and img.width * img.height > max_pixels:
                    raise ImageLoadError(
                        path, f"decompression bomb: {img.width}x{img.height} = {img.width * img.height} pixels "
                        f"exceeds the limit of {max_pixels} (raise max_pixels to allow it)")
                img.seek(0)  # animated GIF/WebP/APNG: the first frame
                img.load()
                img = ImageOps.exif_transpose(img)
                return to_rgb(img, background=background)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(path, "not an image, or a format Pillow cannot read") from None
    except Image.DecompressionBombError as e:
        raise ImageLoadError(path, f"decompression bomb: {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # truncated or corrupt data
        raise ImageLoadError(path, f"corrupt or truncated image ({e})") from None


def to_rgb(img: Image.Image, background: tuple[int, int, int] | None = None) -> Image.Image:
    """Any PIL mode → RGB (see the module docstring for the rules)."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(img), sixteen_bit=img.mode.startswith("I;16"))).convert("RGB")
    if background is not None and (img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _to_uint8(arr: np.ndarray, sixteen_bit: bool = False) -> np.ndarray:
    """I;16: ×255/65535. I: 8-bit values kept, 16-bit values ×255/65535. F in [0, 1]: ×255.
    Anything else: its own min-max range."""
    is_float = np.issubdtype(arr.dtype, np.floating)
    arr = arr.astype(np.float64)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if is_float and 0.0 <= lo and hi <= 1.0:
        scaled = arr * 255.0
    elif not is_float and not sixteen_bit and lo >= 0 and hi <= 255:
        scaled = arr
    elif not is_float and lo >= 0 and hi <= 65535:
        scaled = arr * (255.0 / 65535.0)
    else:
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def list_images(inputs, recursive: bool = True, extensions=IMAGE_EXTENSIONS) -> list[Path]:
    """Image files from folders (recursively, sorted), text files of paths (one per line), or image paths."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            pattern = p.rglob("*") if recursive else p.glob("*")
            found += sorted(f for f in pattern if f.is_file() and f.suffix.lower() in extensions)
        elif p.suffix.lower() == ".txt" and p.is_file():
            lines = (line.strip() for line in p.read_text().splitlines())
            found += [Path(line) for line in lines if line and not line.startswith("#")]
        else:
            found.append(p)  # a missing or bad file is reported when it is loaded
    return found
