"""Product thumbnails (catalog/images.py): pure Pillow, no services."""
from __future__ import annotations

import io

from PIL import Image

from catalog.images import THUMBNAIL_MIN, THUMBNAIL_SIZE, thumbnail_bytes


def test_a_large_photo_shrinks_to_fit_and_keeps_its_shape():
    thumb = Image.open(io.BytesIO(thumbnail_bytes(Image.new("RGB", (1000, 500), "red"))))
    assert thumb.format == "JPEG" and thumb.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE // 2)


def test_a_tiny_photo_is_upscaled_for_the_grid():
    thumb = Image.open(io.BytesIO(thumbnail_bytes(Image.new("RGB", (28, 28), "black"))))
    assert thumb.size == (THUMBNAIL_MIN, THUMBNAIL_MIN)
