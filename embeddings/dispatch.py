"""Queueing embedding work: batches of product ids, sent once the rows are committed."""
from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import transaction

from embeddings.models import EmbeddingModel, ProductVector


def _batches(ids: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def queue_embedding(product_ids: list[int], models: list[EmbeddingModel] | None = None) -> int:
    """Queue embed_products for these products under every target model; return batch count."""
    from embeddings.registry import target_models
    from embeddings.tasks import embed_products

    if not product_ids:
        return 0
    sent = 0
    for model in models or target_models():
        for batch in _batches(sorted(product_ids), settings.EMBED_BATCH_SIZE):
            transaction.on_commit(
                lambda b=batch, m=model.pk: embed_products.delay(b, m)  # type: ignore[misc]
            )
            sent += 1
    return sent


def missing_ids(model: EmbeddingModel) -> list[int]:
    return list(ProductVector.missing_product_ids(model))


def queue_missing(model: EmbeddingModel) -> int:
    return queue_embedding(missing_ids(model), [model])
