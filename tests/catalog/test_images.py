"""Product photos and thumbnails (catalog/images.py): a large JPEG decodes at reduced scale for
its thumbnail, and a truncated or corrupt one is still refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.storage import default_storage
from PIL import Image

from catalog.images import THUMBNAIL_MIN, THUMBNAIL_SIZE, sha256, store_product_image, thumbnail_bytes
from ml.transforms import ImageError


def test_a_large_photo_shrinks_to_fit_and_keeps_its_shape():
    thumb = Image.open(io.BytesIO(thumbnail_bytes(Image.new("RGB", (1000, 500), "red"))))
    assert thumb.format == "JPEG" and thumb.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE // 2)


def test_a_tiny_photo_is_upscaled_for_the_grid():
    thumb = Image.open(io.BytesIO(thumbnail_bytes(Image.new("RGB", (28, 28), "black"))))
    assert thumb.size == (THUMBNAIL_MIN, THUMBNAIL_MIN)


def photo_jpeg(width: int = 1200, height: int = 900) -> bytes:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (height // 30, width // 30, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).resize((width, height), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def test_a_large_jpeg_is_stored_whole_with_a_thumbnail(settings, tmp_path):
    data = photo_jpeg()
    name, thumb = store_product_image(data, sha256(data))
    assert default_storage.open(name).read() == data  # the original, byte for byte
    with Image.open(default_storage.open(thumb)) as small:
        assert max(small.size) == THUMBNAIL_SIZE and small.size == (256, 192)


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_a_truncated_jpeg_is_refused(cut):
    data = photo_jpeg()
    with pytest.raises(ImageError, match="truncated|corrupt|not an image"):
        store_product_image(data[: int(len(data) * cut)], "cut")
