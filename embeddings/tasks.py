"""Celery tasks. Thin: take ids, do one thing, safe to run twice (acks_late redelivers)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from celery import shared_task
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Subquery
from django.db.models.fields.files import FieldFile
from django.utils import timezone

from embeddings.dispatch import queue_missing, start_activation
from embeddings.models import EmbeddingModel, PhotoVector, ProductVector, TrainingJob, photo_model, product_model
from embeddings.registry import encoder_for, ensure_active_model, finish_activation_if_complete
from embeddings.train_jobs import run_training
from ml.transforms import open_image

if TYPE_CHECKING:
    from ml.encoders import Encoder  # type only: importing ml.encoders loads torch (registry.load_model)

logger = logging.getLogger(__name__)


# The pretrained_donor: the model whose stored rows hold the pretrained columns, and their names.
Donor = tuple[EmbeddingModel, str, str]


def pretrained_donor(model: EmbeddingModel, encoder: Encoder) -> Donor | None:
    """Another model (usually the active one) with the same backbone and preprocessing whose
    stored vectors hold `model`'s pretrained signals: (it, its backbone-feature column, its
    sentence column); None if there is none or `model` cannot use them."""
    if not (model.joint and model.image_feat_dim and hasattr(encoder, "signals_from_pretrained")):
        return None
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
        return donor, feat, sentence
    return None


def stored_pretrained(found: Donor | None, products: list) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """product id -> (unit backbone features, MiniLM vector) already stored, from the current
    vectors of the pretrained_donor (`found`).

    A new joint model only trains heads on top of those, so re-embedding the catalogue with
    it needs no backbone pass: this makes an activation minutes faster on a CPU.
    """
    if found is None:
        return {}
    donor, feat, sentence = found
    hashes = {p.pk: p.content_hash for p in products}
    rows = ProductVector.objects.filter(model=donor, product_id__in=list(hashes)).values_list(
        "product_id", "content_hash", feat, sentence
    )
    return {
        pid: (np.asarray(image, np.float32), np.asarray(text, np.float32))
        for pid, content, image, text in rows
        if hashes.get(pid) == content
    }


def copied_features(
    found: Donor | None,
    table: type[ProductVector] | type[PhotoVector],
    key: str,
    ids: list[int],
) -> dict[str, dict[int, Subquery]]:
    """The pretrained columns (image_feat, text_feat; a photo's image_feat) of a joint model's
    rows for these products (key "product_id") or photos ("photo_id"), as subqueries that read
    the pretrained_donor's (`found`) stored columns: Postgres copies them, the worker neither formats nor
    sends them (1,664 of a joint row's 2,176 floats).

    They are the same vectors: a joint model stores the donor's unit features as its own
    (signals_from_pretrained passes them through), and the donor matches its backbone,
    preprocessing and dimensions. Only for ids whose donor row the caller just read: a row
    the donor rewrites meanwhile belongs to a product that changed, whose vector under
    `model` is then stale and embedded again."""
    if found is None or not ids:
        return {}
    donor, feat, sentence = found
    columns = {"image_feat": feat} if table is PhotoVector else {"image_feat": feat, "text_feat": sentence}
    return {
        own: {pk: Subquery(table.objects.filter(model=donor, **{key: pk}).values(theirs)) for pk in ids}
        for own, theirs in columns.items()
    }


def stored_photo_features(found: Donor | None, photos: list) -> dict[int, np.ndarray]:
    """ProductPhoto id -> unit backbone features the pretrained_donor (`found`) stored for it (a
    photo's vectors depend on its content only, so any stored row is current)."""
    if found is None or not photos:
        return {}
    donor, feat, _ = found
    rows = PhotoVector.objects.filter(model=donor, photo__in=photos).values_list("photo_id", feat)
    return {photo_id: np.asarray(image, np.float32) for photo_id, image in rows}


def image_input(files: Sequence[FieldFile], encoder: Encoder) -> np.ndarray:
    """The stored photos `files`, read, decoded and prepared as the image tower's input. With
    EMBED_JPEG_DRAFT a JPEG decodes at the smallest scale still covering the tower's input
    size (PIL draft: several times faster for large photos)."""
    draft = encoder.image_size if settings.EMBED_JPEG_DRAFT else None
    images = []
    for file in files:
        with file.open("rb") as handle:
            images.append(open_image(handle.read(), draft_size=draft))
    return encoder.image_input(images)


def stored_value(vector: np.ndarray | Subquery) -> list[float] | Subquery:
    return vector.tolist() if isinstance(vector, np.ndarray) else vector


def embed_batch(product_ids: list[int], model: EmbeddingModel) -> int:
    """Compute and store vectors for products whose vector under `model` is missing or stale,
    and for their further photos (catalog.ProductPhoto) that have none under `model` yet.

    A photo keeps its vectors while it exists (they depend on its content only), so a
    product whose words changed re-encodes its main photo and text, not its other photos.
    """
    Product, ProductPhoto = product_model(), photo_model()
    current = dict(
        ProductVector.objects.filter(model=model, product_id__in=product_ids).values_list("product_id", "content_hash")
    )
    products = [p for p in Product.objects.filter(pk__in=product_ids) if current.get(p.pk) != p.content_hash]
    if not products:
        return 0
    encoder = encoder_for(model)
    donor = pretrained_donor(model, encoder)  # once per batch: each helper below reads its rows
    reuse = stored_pretrained(donor, products)
    signals: dict[str, dict[int, np.ndarray | Subquery]] = {}
    if reuse:
        # A joint model on the same backbone: its heads read the stored pretrained vectors.
        fast = [p for p in products if p.pk in reuse]
        computed = encoder.signals_from_pretrained(
            np.stack([reuse[p.pk][0] for p in fast]),
            np.stack([reuse[p.pk][1] for p in fast]),
            [p.text_for_embedding for p in fast],
        )
        for column, vectors in computed.items():
            signals.setdefault(column, {}).update({p.pk: v for p, v in zip(fast, vectors, strict=True)})
        for column, copies in copied_features(donor, ProductVector, "product_id", list(reuse)).items():
            signals[column].update(copies)
    rest = [p for p in products if p.pk not in reuse]
    have = PhotoVector.objects.filter(model=model, product__in=products).values("photo_id")
    photos = list(ProductPhoto.objects.filter(product__in=products).exclude(pk__in=have))
    photo_signals: dict[str, dict[int, np.ndarray | Subquery]] = {}
    photo_feats = stored_photo_features(donor, photos)
    if photo_feats:  # as for the main photos: the heads read the stored backbone features
        known = [ph for ph in photos if ph.pk in photo_feats]
        from_feats = encoder.image_signals_from_features(np.stack([photo_feats[ph.pk] for ph in known]))
        for column, vectors in from_feats.items():
            photo_signals.setdefault(column, {}).update({ph.pk: v for ph, v in zip(known, vectors, strict=True)})
        for column, copies in copied_features(donor, PhotoVector, "photo_id", list(photo_feats)).items():
            photo_signals[column].update(copies)
    unknown = [ph for ph in photos if ph.pk not in photo_feats]
    if rest or unknown:
        # The further photos share the main photos' backbone batches: one image pass for all.
        # A thread reads, decodes and prepares the photos while the text tower runs (PIL and
        # numpy release the GIL), so the image tower starts on ready input.
        files = [p.image for p in rest] + [ph.image for ph in unknown]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-decode") as pool:
            pixels = pool.submit(image_input, files, encoder)
            text_signals = encoder.encode_text_signals([p.text_for_embedding for p in rest]) if rest else {}
            image_signals = encoder.encode_pixel_signals(pixels.result())
        for column, vectors in image_signals.items():
            photo_signals.setdefault(column, {}).update(
                {ph.pk: v for ph, v in zip(unknown, vectors[len(rest) :], strict=True)}
            )
        # Every signal the model stores: its own vectors and, for a joint model, the pretrained ones.
        computed = {column: vectors[: len(rest)] for column, vectors in image_signals.items()}
        computed.update(text_signals)
        for column, vectors in computed.items():
            signals.setdefault(column, {}).update({p.pk: v for p, v in zip(rest, vectors, strict=True)})
    rows = [
        ProductVector(
            product=p,
            model=model,
            content_hash=p.content_hash,
            category=p.category,
            price=p.price,
            **{column: stored_value(by_product[p.pk]) for column, by_product in signals.items()},
        )
        for p in products
    ]
    by_pk = {p.pk: p for p in products}
    photo_rows = [
        PhotoVector(
            photo=ph,
            model=model,
            product_id=ph.product_id,
            category=by_pk[ph.product_id].category,
            price=by_pk[ph.product_id].price,
            **{column: stored_value(by_photo[ph.pk]) for column, by_photo in photo_signals.items()},
        )
        for ph in photos
    ]
    # One transaction: a product with a current ProductVector has all its photos' vectors
    # (the reconciler looks at ProductVector alone).
    with transaction.atomic():
        # Idempotent: a redelivered batch overwrites the same rows with the same values.
        ProductVector.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["product", "model"],
            update_fields=[*signals, "content_hash", "category", "price", "updated_at"],
        )
        if photo_rows:
            PhotoVector.objects.bulk_create(
                photo_rows,
                update_conflicts=True,
                unique_fields=["photo", "model"],
                update_fields=[*photo_signals, "category", "price", "updated_at"],
            )
        with connection.cursor() as cursor:  # the kept photos' filter copies follow the product
            cursor.execute(
                "UPDATE embeddings_photovector ph SET category = p.category, price = p.price "
                "FROM catalog_product p WHERE ph.product_id = p.id AND ph.model_id = %s AND p.id = ANY(%s) "
                "AND (ph.category <> p.category OR ph.price <> p.price)",
                [model.pk, [p.pk for p in products]],
            )
    return len(rows)


@shared_task(acks_late=True, reject_on_worker_lost=True, max_retries=3)
def embed_products(product_ids: list[int], model_id: int) -> int:
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
    model = EmbeddingModel.objects.get(pk=model_id) if model_id else ensure_active_model()
    return queue_missing(model)


@shared_task(acks_late=True)
def activate_model(model_id: int) -> None:
    start_activation(EmbeddingModel.objects.get(pk=model_id))


@shared_task(acks_late=False)  # a training run is not safely repeatable mid-way: no redelivery
def train_model(job_id: int) -> int | None:
    job = TrainingJob.objects.get(pk=job_id)
    if job.status != TrainingJob.Status.QUEUED:
        return None
    try:
        return run_training(job).pk
    except Exception as exc:
        job.status, job.error, job.finished_at = (
            TrainingJob.Status.FAILED,
            f"{type(exc).__name__}: {exc}",
            timezone.now(),
        )
        job.save(update_fields=["status", "error", "finished_at"])
        raise
