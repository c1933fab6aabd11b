"""Reading a shopper's uploaded query photo, with the same guards as catalogue images."""
from __future__ import annotations

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from PIL import Image

from embeddings.transforms import open_image


class UploadTooLarge(ValueError):
    pass


def read_query_image(upload: UploadedFile) -> Image.Image:
    """Raise UploadTooLarge or ValueError (ImageError) naming what is wrong."""
    limit = settings.MAX_UPLOAD_BYTES
    if upload.size is not None and upload.size > limit:
        raise UploadTooLarge(f"image is {upload.size:,} bytes; the limit is {limit:,}")
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise UploadTooLarge(f"image is larger than {limit:,} bytes")
    if not data:
        raise ValueError("the uploaded image is empty")
    return open_image(data, max_pixels=settings.MAX_IMAGE_PIXELS)
