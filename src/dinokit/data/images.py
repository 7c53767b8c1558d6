"""Opening image files the way the real world needs: EXIF orientation, every PIL mode to RGB, the first
frame of animations, a decompression-bomb limit, and one typed error for every bad file.

RGB, RGBA, LA, L, P (with or without transparency), CMYK and other 8-bit modes become exactly what
`Image.convert("RGB")` gives, so embeddings agree with the reference pipelines (alpha is dropped, not
composited). Compositing on a background colour is opt-in (`background=`). High-bit-depth modes
(I;16, I, F) are scaled to 8 bits instead of being clipped.
"""
from __future__ import annotations

import io
import os
import stat
import struct
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputFileError

DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own limit (2 × Image.MAX_IMAGE_PIXELS raises; we raise at 1 ×)
# The most pixels a resize may produce: 2^25 (e.g. 8192×4096). A shortest-edge resize multiplies the pixels
# by the aspect ratio, so a 111-byte 10000×1 PNG would become 2,560,000×256; such a file is refused instead.
MAX_RESIZED_PIXELS = 1 << 25
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".avif", ".heic", ".heif")

try:  # HEIC/HEIF through the pillow-heif plugin when installed (pip install dinokit[heif]); AVIF is in Pillow
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - optional
    pass


class ImageLoadError(InputFileError):
    """A file that cannot be used as an image; names the file and the reason."""


def load_image(path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               background: tuple[int, int, int] | None = None) -> Image.Image:
    """An RGB PIL image from a file, or `ImageLoadError` with the true reason. Only regular files are
    opened: a FIFO or a device is refused without being read (reading one could block or never end)."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        reason = "dangling symbolic link (its target does not exist)" if path.is_symlink() else "file not found"
        raise ImageLoadError(path, reason) from None
    except OSError as e:
        raise ImageLoadError(path, f"cannot read file ({e.strerror or e})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageLoadError(path, f"not a regular file ({_file_kind(info.st_mode)}): not opened")
    if info.st_size == 0:
        raise ImageLoadError(path, "empty file (0 bytes)")
    return _decode(path, path, max_pixels, background)


def decode_image(data: bytes, name: str = "upload", *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 background: tuple[int, int, int] | None = None) -> Image.Image:
    """An RGB PIL image from the bytes of an image file (an upload), with `load_image`'s rules and errors;
    `name` is what an error calls it."""
    if not data:
        raise ImageLoadError(name, "empty file (0 bytes)")
    return _decode(io.BytesIO(data), name, max_pixels, background)


def _decode(source, name, max_pixels: int | None, background) -> Image.Image:
    """Open, check the pixel count before decoding, first frame, EXIF orientation, RGB; every failure is an
    `ImageLoadError` naming `name`."""
    path = name  # what the errors below name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as img:
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
    except PermissionError as e:
        raise ImageLoadError(path, f"permission denied ({e.strerror or e})") from None
    except UnidentifiedImageError:
        raise ImageLoadError(path, "not an image, or a format Pillow cannot read") from None
    except Image.DecompressionBombError as e:
        raise ImageLoadError(path, f"decompression bomb: {e}") from None
    except MemoryError:
        raise ImageLoadError(path, "decoding it needs more memory than is available") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError, ZeroDivisionError) as e:
        # truncated or corrupt data: Pillow's decoders raise all of these on malformed files
        raise ImageLoadError(path, f"corrupt or truncated image ({type(e).__name__}: {e})") from None


def check_resize(height: int, width: int, new_height: int, new_width: int, limit: int = MAX_RESIZED_PIXELS) -> None:
    """Refuse a resize whose output would exceed `limit` pixels, before it allocates anything."""
    if new_height * new_width > limit:
        raise ImageLoadError("image", f"resizing {width}x{height} to {new_width}x{new_height} = "
                             f"{new_width * new_height} pixels exceeds the limit of {limit} (aspect ratio "
                             f"{max(width, height) / max(1, min(width, height)):.0f}:1)")


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "a special file"


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


class ImageScan(NamedTuple):
    paths: list[Path]  # image files, in order; files given by name are kept even if bad (loading says why)
    problems: list[tuple[str, str]]  # (path, reason): folders that could not be listed, links not followed


def scan_images(inputs, recursive: bool = True, extensions=IMAGE_EXTENSIONS) -> ImageScan:
    """Image files from folders (recursively, sorted), text files of paths (one per line), or image paths,
    and what could not be looked at. In folders, every entry with an image extension that is not a folder
    is listed, FIFOs, devices and dangling links included, so that loading reports each with its reason;
    symbolic links to files are followed, links to folders are not (no loops): each is reported."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found += _walk(p, recursive, extensions, problems)
        elif p.suffix.lower() == ".txt" and p.is_file():
            lines = (line.strip() for line in p.read_text().splitlines())
            found += [Path(line) for line in lines if line and not line.startswith("#")]
        else:
            found.append(p)  # a missing or bad file is reported when it is loaded
    return ImageScan(found, problems)


def _walk(root: Path, recursive: bool, extensions, problems: list) -> list[Path]:
    def unlistable(error: OSError) -> None:
        problems.append((str(error.filename or root), f"cannot list folder ({error.strerror or error})"))

    found = []
    for folder, dirs, files in os.walk(root, onerror=unlistable):
        for d in dirs:
            if os.path.islink(os.path.join(folder, d)):
                problems.append((os.path.join(folder, d), "symbolic link to a folder: not followed (give the folder itself)"))
        found += [Path(folder, f) for f in files if Path(f).suffix.lower() in extensions]
        if not recursive:
            break
    return sorted(found)


def list_images(inputs, recursive: bool = True, extensions=IMAGE_EXTENSIONS) -> list[Path]:
    """`scan_images`' paths; what could not be looked at is a warning (jobs report it as a failure)."""
    scan = scan_images(inputs, recursive, extensions)
    for path, reason in scan.problems:
        warnings.warn(f"{path}: {reason}", stacklevel=2)
    return scan.paths
