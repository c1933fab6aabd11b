"""Reading a shopper's uploaded query photo, with the same guards as catalogue images,
and keeping it (with its vector) behind a short random key so a photo search has a URL."""

from __future__ import annotations

import io
import secrets
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db.models import F, Q, Sum, Window
from django.db.models.expressions import RowRange
from django.db.models.functions import Length, RowNumber
from django.utils import timezone
from PIL import Image

from catalog.models import QueryImage
from catalog.search import image_query_vectors
from embeddings.models import EmbeddingModel
from ml.transforms import open_image

STORED_SIDE = 512  # the encoders see 224-260 px; keep enough to re-encode and to show


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


def store_query_image(
    image: Image.Image, model: EmbeddingModel, vectors: dict[str, np.ndarray], filename: str = ""
) -> QueryImage:
    small = image.copy()
    small.thumbnail((STORED_SIDE, STORED_SIDE))
    out = io.BytesIO()
    small.convert("RGB").save(out, "JPEG", quality=88)
    # Concurrent uploads may each make room for one, overshooting by at most their number
    # until the next upload prunes again: bounded, without serialising uploads.
    prune_query_images(incoming_bytes=out.tell())
    return QueryImage.objects.create(
        key=secrets.token_urlsafe(9),  # 12 characters, 72 random bits
        photo=out.getvalue(),
        width=image.width,
        height=image.height,
        filename=filename[:200],
        model_id=model.pk,
        vector=_rounded(vectors),
    )


def prune_query_images(incoming_bytes: int = 0) -> int:
    """Delete expired photos, then the oldest until one more photo of `incoming_bytes` fits
    within SEARCH_QUERY_IMAGE_MAX_COUNT and SEARCH_QUERY_IMAGE_MAX_BYTES. Returns how many went."""
    cutoff = timezone.now() - timedelta(hours=settings.SEARCH_QUERY_IMAGE_TTL_HOURS)
    deleted, _ = QueryImage.objects.filter(created_at__lt=cutoff).delete()
    keep_count = settings.SEARCH_QUERY_IMAGE_MAX_COUNT - 1
    keep_bytes = settings.SEARCH_QUERY_IMAGE_MAX_BYTES - incoming_bytes
    newest_first = [F("created_at").desc(), F("key").desc()]
    ranked = QueryImage.objects.annotate(
        rank=Window(RowNumber(), order_by=newest_first),
        # bytes of this photo and every newer one (Postgres reads a bytea's length, not its data)
        running_bytes=Window(Sum(Length("photo")), order_by=newest_first, frame=RowRange(None, 0)),
    )
    doomed = list(ranked.filter(Q(rank__gt=keep_count) | Q(running_bytes__gt=keep_bytes)).values_list("key", flat=True))
    if doomed:
        deleted += QueryImage.objects.filter(key__in=doomed).delete()[0]
    return deleted


def find_query_image(key: str) -> QueryImage | None:
    cutoff = timezone.now() - timedelta(hours=settings.SEARCH_QUERY_IMAGE_TTL_HOURS)
    return QueryImage.objects.filter(key=key, created_at__gte=cutoff).first()


def _rounded(vectors: dict[str, np.ndarray]) -> dict[str, list[float]]:
    return {column: [round(float(x), 7) for x in v] for column, v in vectors.items()}


def query_vector(stored: QueryImage, model: EmbeddingModel) -> dict[str, np.ndarray]:
    """The stored photo's query vectors under `model`, re-encoded once if the model changed."""
    if stored.model_id == model.pk and isinstance(stored.vector, dict) and stored.vector:
        return {column: np.asarray(v, dtype=np.float32) for column, v in stored.vector.items()}
    vectors = image_query_vectors(model, open_image(bytes(stored.photo)))
    stored.model_id, stored.vector = model.pk, _rounded(vectors)
    stored.save(update_fields=["model_id", "vector"])
    return vectors
