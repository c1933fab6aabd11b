"""Storing product photos: originals by content hash, plus a display thumbnail."""

from __future__ import annotations

import io

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from ml.data import content_hash as sha256  # noqa: F401  (a photo's name is its content hash)
from ml.transforms import open_image

THUMBNAIL_SIZE = 256
# Tiny photos (the 28 px demo items) are upscaled so the grid does not show postage stamps.
THUMBNAIL_MIN = 192

_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


def image_format(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as img:
        return img.format or "PNG"


def thumbnail_bytes(img: Image.Image) -> bytes:
    img = img.copy()
    longest = max(img.size)
    if longest < THUMBNAIL_MIN:
        scale = THUMBNAIL_MIN / longest
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
    img.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue()


def store_product_image(data: bytes, image_hash: str) -> tuple[str, str]:
    """Validate and store an image; return (image name, thumbnail name) in default storage.

    Raises ml.transforms.ImageError (a ValueError) naming the problem.
    """
    # Only the thumbnail is made from the decoded pixels: a JPEG decodes at the smallest scale
    # that still covers it (PIL draft, as Image.thumbnail does), several times faster for
    # large photos; every byte is still decoded, so a truncated or corrupt file is refused.
    img = open_image(data, max_pixels=settings.MAX_IMAGE_PIXELS, draft_size=THUMBNAIL_SIZE)
    ext = _EXTENSIONS.get(image_format(data), "img")
    name = f"products/{image_hash[:2]}/{image_hash}.{ext}"
    thumb = f"thumbs/{image_hash[:2]}/{image_hash}.jpg"
    if not default_storage.exists(name):
        default_storage.save(name, ContentFile(data))
    if not default_storage.exists(thumb):
        default_storage.save(thumb, ContentFile(thumbnail_bytes(img)))
    return name, thumb
