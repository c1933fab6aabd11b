"""Photo perturbations for evaluation queries: a shopper's photo of a product is
never the catalogue file. Pure Pillow; every random choice comes from ``rng``."""

from __future__ import annotations

import io
import random
import statistics
from typing import cast

from PIL import Image, ImageEnhance

CROP_KEEP = (0.75, 0.95)  # fraction of each side kept
MAX_ROTATION = 15.0  # degrees, either way
BRIGHTNESS = (0.7, 1.3)
JPEG_QUALITY = (40, 85)


def border_colour(image: Image.Image) -> tuple[int, int, int]:
    """Per-channel median of the outermost pixels: the background a rotation uncovers."""
    rgb = image.convert("RGB")
    w, h = rgb.size
    px = rgb.load()
    assert px is not None  # None only for an image without pixel data
    # Pillow types a pixel for every mode (a number or a tuple); in RGB it is (r, g, b).
    edge = cast(list[tuple[int, int, int]], [px[x, y] for x in range(w) for y in (0, h - 1)])
    edge += cast(list[tuple[int, int, int]], [px[x, y] for y in range(1, h - 1) for x in (0, w - 1)])
    r, g, b = (int(statistics.median_low(p[c] for p in edge)) for c in range(3))
    return r, g, b


def _flatten(image: Image.Image) -> Image.Image:
    """RGB; transparent pixels become white, as a product photo's background would be."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def perturb(image: Image.Image, rng: random.Random) -> Image.Image:
    """Crop (75-95% of each side, random position), rotate within +-15 degrees filling
    with the median border colour, scale brightness by 0.7-1.3, re-encode as JPEG at
    quality 40-85. Returns an RGB image of the cropped size."""
    img = _flatten(image)
    fill = border_colour(img)  # the whole photo's border: a crop may cut through the item
    w, h = img.size
    cw = max(1, round(w * rng.uniform(*CROP_KEEP)))
    ch = max(1, round(h * rng.uniform(*CROP_KEEP)))
    left = rng.randint(0, w - cw)
    top = rng.randint(0, h - ch)
    img = img.crop((left, top, left + cw, top + ch))
    angle = rng.uniform(-MAX_ROTATION, MAX_ROTATION)
    img = img.rotate(angle, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=fill)
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(*BRIGHTNESS))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=rng.randint(*JPEG_QUALITY))
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out.convert("RGB")
