"""Queueing embedding work: batches of product ids, sent once the rows are committed, and
starting an activation (which queues the catalogue's re-embedding under the new model).

The tasks are sent by name: embeddings/tasks.py defines them and imports this module.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import transaction

from embeddings.models import EmbeddingModel, ProductVector, atomic_switch
from embeddings.registry import finish_activation_if_complete, target_models
from searchsite.celery import app

EMBED_PRODUCTS = "embeddings.tasks.embed_products"


def _batches(ids: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def queue_embedding(product_ids: list[int], models: list[EmbeddingModel] | None = None) -> int:
    """Queue embed_products for these products under every target model; return batch count."""
    if not product_ids:
        return 0
    sent = 0
    for model in models or target_models():
        for batch in _batches(sorted(product_ids), settings.EMBED_BATCH_SIZE):
            transaction.on_commit(app.signature(EMBED_PRODUCTS, args=(batch, model.pk)).delay)
            sent += 1
    return sent


def missing_ids(model: EmbeddingModel) -> list[int]:
    return list(ProductVector.missing_product_ids(model))


def queue_missing(model: EmbeddingModel) -> int:
    return queue_embedding(missing_ids(model), [model])


def start_activation(model: EmbeddingModel, gate: bool = False) -> None:
    """Begin re-embedding the catalogue with `model`; search stays on the current model.

    With ``gate``, the model becomes active only if the activation gate (a receiver of
    ``registry.model_ready_for_gate``, catalog/gate.py) finds it no worse than the active model.
    """
    if model.status == EmbeddingModel.Status.ACTIVE:
        return
    if EmbeddingModel.active() is None:
        atomic_switch(model)
        queue_missing(model)
        return
    # No indexes yet: they are built once its vectors are stored (finish_activation_if_complete).
    model.status = EmbeddingModel.Status.ACTIVATING
    model.gate = {"required": True, "decision": "pending"} if gate else {**(model.gate or {}), "required": False}
    model.save(update_fields=["status", "gate"])
    if queue_missing(model) == 0:
        finish_activation_if_complete(model.pk)
