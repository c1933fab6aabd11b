"""Celery tasks. Thin: take ids, do one thing, safe to run twice (acks_late redelivers)."""
from __future__ import annotations

import logging

from typing import TYPE_CHECKING

import numpy as np
from celery import shared_task
from django.core.files.storage import default_storage

from embeddings.models import EmbeddingModel, ProductVector

if TYPE_CHECKING:
    from embeddings.encoders import Encoder

logger = logging.getLogger(__name__)


def stored_pretrained(model: EmbeddingModel, encoder: Encoder, products: list) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """product id -> (unit backbone features, MiniLM vector) already stored, from the current
    vectors of another model with the same backbone and preprocessing (usually the active one).

    A new joint model only trains heads on top of those, so re-embedding the catalogue with
    it needs no backbone pass: this makes an activation minutes faster on a CPU.
    """
    from embeddings.registry import encoder_for

    if not (model.joint and model.image_feat_dim and hasattr(encoder, "signals_from_pretrained")):
        return {}
    donors = EmbeddingModel.objects.filter(
        backbone=model.backbone,
        status__in=[EmbeddingModel.Status.ACTIVE, EmbeddingModel.Status.ACTIVATING, EmbeddingModel.Status.EVALUATING],
    ).exclude(pk=model.pk)
    for donor in donors:
        feat, sentence = ("image_feat", "text_feat") if donor.joint else ("image_vec", "text_vec")
        if donor.joint and not (donor.image_feat_dim and donor.text_feat_dim):
            continue
        if donor.column_dims()[feat] != model.image_feat_dim or donor.column_dims()[sentence] != model.text_feat_dim:
            continue
        other = encoder_for(donor)
        if (other.image_size, other.mean, other.std) != (encoder.image_size, encoder.mean, encoder.std):
            continue
        hashes = {p.pk: p.content_hash for p in products}
        rows = ProductVector.objects.filter(model=donor, product_id__in=list(hashes)).values_list(
            "product_id", "content_hash", feat, sentence
        )
        return {
            pid: (np.asarray(image, np.float32), np.asarray(text, np.float32))
            for pid, content, image, text in rows
            if hashes.get(pid) == content
        }
    return {}


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
    encoder = encoder_for(model)
    reuse = stored_pretrained(model, encoder, products)
    signals: dict[str, dict[int, np.ndarray]] = {}
    if reuse:
        # A joint model on the same backbone: its heads read the stored pretrained vectors.
        fast = [p for p in products if p.pk in reuse]
        computed = encoder.signals_from_pretrained(  # type: ignore[attr-defined]
            np.stack([reuse[p.pk][0] for p in fast]), np.stack([reuse[p.pk][1] for p in fast]),
            [p.text_for_embedding for p in fast],
        )
        for column, vectors in computed.items():
            signals.setdefault(column, {}).update({p.pk: v for p, v in zip(fast, vectors, strict=True)})
    rest = [p for p in products if p.pk not in reuse]
    if rest:
        images = []
        for product in rest:
            with default_storage.open(product.image.name, "rb") as handle:
                images.append(open_image(handle.read()))
        # Every signal the model stores: its own vectors and, for a joint model, the pretrained ones.
        computed = {
            **encoder.encode_image_signals(images),
            **encoder.encode_text_signals([p.text_for_embedding for p in rest]),
        }
        for column, vectors in computed.items():
            signals.setdefault(column, {}).update({p.pk: v for p, v in zip(rest, vectors, strict=True)})
    rows = [
        ProductVector(
            product=p, model=model, content_hash=p.content_hash, category=p.category, price=p.price,
            **{column: by_product[p.pk].tolist() for column, by_product in signals.items()},
        )
        for p in products
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
