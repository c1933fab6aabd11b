"""Celery tasks. Thin: take ids, do one thing, safe to run twice (acks_late redelivers)."""
from __future__ import annotations

import logging

from celery import shared_task
from django.core.files.storage import default_storage

from embeddings.models import EmbeddingModel, ProductVector

logger = logging.getLogger(__name__)


def embed_batch(product_ids: list[int], model: EmbeddingModel) -> int:
    """Compute and store vectors for products whose vector under `model` is missing or stale."""
    from catalog.models import Product
    from embeddings.registry import encoder_for
    from embeddings.transforms import open_image

    current = dict(
        ProductVector.objects.filter(model=model, product_id__in=product_ids).values_list(
            "product_id", "content_hash"
        )
    )
    products = [
        p for p in Product.objects.filter(pk__in=product_ids) if current.get(p.pk) != p.content_hash
    ]
    if not products:
        return 0
    images = []
    for product in products:
        with default_storage.open(product.image.name, "rb") as handle:
            images.append(open_image(handle.read()))
    encoder = encoder_for(model)
    # Every signal the model stores: its own vectors and, for a joint model, the pretrained ones.
    signals = {
        **encoder.encode_image_signals(images),
        **encoder.encode_text_signals([p.text_for_embedding for p in products]),
    }
    rows = [
        ProductVector(
            product=p, model=model, content_hash=p.content_hash, category=p.category, price=p.price,
            **{column: vectors[i].tolist() for column, vectors in signals.items()},
        )
        for i, p in enumerate(products)
    ]
    # Idempotent: a redelivered batch overwrites the same rows with the same values.
    ProductVector.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["product", "model"],
        update_fields=[*signals, "content_hash", "category", "price", "updated_at"],
    )
    return len(rows)


@shared_task(acks_late=True, reject_on_worker_lost=True, max_retries=3)
def embed_products(product_ids: list[int], model_id: int) -> int:
    from embeddings.registry import finish_activation_if_complete

    model = EmbeddingModel.objects.filter(pk=model_id).first()
    if model is None or model.status in (EmbeddingModel.Status.RETIRED, EmbeddingModel.Status.FAILED):
        return 0  # the model was dropped while this batch waited
    written = embed_batch(product_ids, model)
    if model.status == EmbeddingModel.Status.ACTIVATING:
        finish_activation_if_complete(model.pk)
    logger.info("embedded %d of %d products with %s", written, len(product_ids), model.name)
    return written


@shared_task(acks_late=True)
def embed_missing(model_id: int | None = None) -> int:
    """Queue batches for every product lacking a current vector (the active model by default)."""
    from embeddings.dispatch import queue_missing
    from embeddings.registry import ensure_active_model

    model = EmbeddingModel.objects.get(pk=model_id) if model_id else ensure_active_model()
    return queue_missing(model)


@shared_task(acks_late=True)
def activate_model(model_id: int) -> None:
    from embeddings.registry import start_activation

    start_activation(EmbeddingModel.objects.get(pk=model_id))


@shared_task(acks_late=False)  # a training run is not safely repeatable mid-way: no redelivery
def train_model(job_id: int) -> int | None:
    from django.utils import timezone

    from embeddings.models import TrainingJob
    from embeddings.train_jobs import run_training

    job = TrainingJob.objects.get(pk=job_id)
    if job.status != TrainingJob.Status.QUEUED:
        return None
    try:
        return run_training(job).pk
    except Exception as exc:
        job.status, job.error, job.finished_at = TrainingJob.Status.FAILED, f"{type(exc).__name__}: {exc}", timezone.now()
        job.save(update_fields=["status", "error", "finished_at"])
        raise
