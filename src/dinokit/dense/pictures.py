"""Pictures of dense predictions: coloured depth, class masks with a legend, and match lines."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def colour_depth(depth: np.ndarray, colormap: str = "Spectral") -> Image.Image:
    """Depth (H, W) coloured per image from near (red) to far (blue), robust to outliers (2–98th percentile)."""
    import matplotlib

    lo, hi = np.percentile(depth, 2), np.percentile(depth, 98)
    scaled = np.clip((depth - lo) / max(hi - lo, 1e-6), 0, 1)
    return Image.fromarray((matplotlib.colormaps[colormap](scaled)[..., :3] * 255).astype(np.uint8))


def palette(n: int) -> np.ndarray:
    """n distinct colours, the same for every run (class 0 is black, as background usually is)."""
    rng = np.random.default_rng(0)
    colours = rng.integers(40, 256, (max(n, 1), 3), dtype=np.uint8)
    colours[0] = 0
    return colours


def mask_picture(image: Image.Image, mask: np.ndarray, class_names: list[str], alpha: float = 0.6) -> Image.Image:
    """The image, the mask blended over it, and a legend of the classes present."""
    colours = palette(len(class_names))
    coloured = Image.fromarray(colours[np.clip(mask, 0, len(colours) - 1)])
    image = image.convert("RGB").resize(coloured.size)
    blended = Image.blend(image, coloured, alpha)
    present = [int(c) for c in np.unique(mask) if 0 <= c < len(class_names)]
    font = label_font(image.height)  # the legend grows with the picture: readable at 1411 px as at 224
    size = font.size
    row = round(size * 1.5)
    legend_h = row * len(present) + size // 2
    out = Image.new("RGB", (image.width * 2, max(image.height, 1) + legend_h), "white")
    out.paste(image, (0, 0))
    out.paste(blended, (image.width, 0))
    draw = ImageDraw.Draw(out)
    for i, c in enumerate(present):
        y = image.height + size // 4 + i * row
        draw.rectangle([size // 2, y, size // 2 + size, y + size], fill=tuple(int(v) for v in colours[c]), outline="black")
        share = 100 * float((mask == c).mean())
        draw.text((2 * size, y), f"{class_names[c]} ({share:.0f}%)", fill="black", font=font)
    return out


def label_font(height: int):
    """Pillow's scalable default font at about 1/40 of a picture's height (at least 12 px)."""
    from PIL import ImageFont

    return ImageFont.load_default(size=max(12, height // 40))


def match_picture(image_a: Image.Image, image_b: Image.Image, points_a: np.ndarray, points_b: np.ndarray,
                  scores: np.ndarray, height: int = 320) -> Image.Image:
    """The two images side by side at the same height; a line per match, coloured by its rank."""
    import matplotlib

    sa, sb = height / image_a.height, height / image_b.height
    a = image_a.convert("RGB").resize((round(image_a.width * sa), height))
    b = image_b.convert("RGB").resize((round(image_b.width * sb), height))
    out = Image.new("RGB", (a.width + b.width, height), "white")
    out.paste(a, (0, 0))
    out.paste(b, (a.width, 0))
    draw = ImageDraw.Draw(out)
    cmap = matplotlib.colormaps["turbo"]
    for rank, i in enumerate(np.argsort(-scores)):
        colour = tuple(int(255 * v) for v in cmap(rank / max(len(scores) - 1, 1))[:3])
        (xa, ya), (xb, yb) = points_a[i] * sa, points_b[i] * sb
        draw.line([(xa, ya), (a.width + xb, yb)], fill=colour, width=1)
        for x, y in ((xa, ya), (a.width + xb, yb)):
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], outline=colour)
    return out
