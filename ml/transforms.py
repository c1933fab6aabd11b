"""Image decoding and preprocessing: pure functions, no model state.

No torch: the prepare worker decodes photos and makes thumbnails with this module without
loading a model (docs/scaling.md, "Memory"). Model input comes back as a numpy array that
the model-running code wraps with ``torch.from_numpy`` (no copy).
"""

from __future__ import annotations

import io
import random
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000


class ImageError(ValueError):
    """An upload or file that cannot be used as a product image."""


def open_image(
    source: bytes | str | Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
) -> Image.Image:
    """Decode an image safely into an upright RGB ``PIL.Image``.

    Raises ``ImageError`` for non-images, decompression bombs (checked from
    the header, before decoding pixels) and truncated or corrupt files.
    ``draft_size`` lets JPEG decode at a reduced scale (>= that many pixels
    on the shorter side), which is much faster for large photos.
    """
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check warns at ~89 MP; we apply our own limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(fp)
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        if isinstance(exc, Image.DecompressionBombError):
            raise ImageError(f"image too large ({exc})") from exc
        raise ImageError("not an image") from exc
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ImageError(f"not an image ({exc})") from exc

    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(f"image too large ({width}×{height})")
    if draft_size and img.format == "JPEG":
        img.draft("RGB", (draft_size, draft_size))
    try:
        # Pillow tolerates truncation when LOAD_TRUNCATED_IMAGES is set
        # globally by some other library; we want an error either way.
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            img.load()
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"truncated/corrupt image ({exc})") from exc
    img = ImageOps.exif_transpose(img) or img
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    # Palette images may carry transparency in info; RGBA/LA via alpha band.
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bit instead of clipping to white.
        arr = np.asarray(img, dtype=np.float32)
        peak = max(float(arr.max()), 1.0)
        return Image.fromarray((arr * (255.0 / max(peak, 255.0))).astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def _resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def _random_resized_crop(
    img: Image.Image, size: int, rng: random.Random, scale: tuple[float, float] = (0.5, 1.0)
) -> Image.Image:
    # Product photos are mostly centred objects, so crops stay large.
    w, h = img.size
    for _ in range(10):
        area = w * h * rng.uniform(*scale)
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = round((area * ratio) ** 0.5), round((area / ratio) ** 0.5)
        if 0 < cw <= w and 0 < ch <= h:
            left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
            return img.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + cw, top + ch))
    return _resize_center_crop(img, size)


def _normalise(images: Sequence[Image.Image], mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    batch = np.stack([np.asarray(im, dtype=np.uint8) for im in images])  # N,H,W,3
    x = batch.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    m = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((x - m) / s)


def to_model_input(
    images: Sequence[Image.Image],
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    hflip: bool = False,
) -> np.ndarray:
    """Evaluation preprocessing: resize shorter side, center crop, normalise -> float32 (N,3,size,size)."""
    crops = [_resize_center_crop(to_rgb(im), size) for im in images]
    if hflip:
        crops = [ImageOps.mirror(c) for c in crops]
    return _normalise(crops, mean, std)


def to_train_input(
    images: Sequence[Image.Image],
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    rng: random.Random,
) -> np.ndarray:
    """Training augmentation: random resized crop + horizontal flip -> float32 (N,3,size,size)."""
    crops = []
    for im in images:
        crop = _random_resized_crop(to_rgb(im), size, rng)
        crops.append(ImageOps.mirror(crop) if rng.random() < 0.5 else crop)
    return _normalise(crops, mean, std)
