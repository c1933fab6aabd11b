"""The model registry: which towers exist, which one is active, and switching between them.

Switching never mixes models: search always reads the vectors of the one ACTIVE model.
Activating another model marks it ACTIVATING and fans its re-embedding out to the
workers; when the last batch lands, one transaction makes it ACTIVE, and only then are
the old model's vectors and indexes dropped. Queueing that work, and so starting an
activation, is embeddings/dispatch.py's: nothing here queues.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from embeddings.models import EmbeddingModel, PhotoVector, ProductVector, atomic_switch, fallback_note
from embeddings.vector_index import create_indexes, drop_indexes
from ops.beat import live_workers

if TYPE_CHECKING:
    from ml.encoders import Encoder  # type only: importing ml.encoders loads torch (load_model)

logger = logging.getLogger(__name__)

# Sent when a gated model's vectors are complete (status EVALUATING). catalog/gate.py measures
# it against the active model through the real search pipeline and calls complete_gate();
# a signal keeps this layer from importing the catalogue's search code.
model_ready_for_gate = Signal()


# The "queue" of web workers' heartbeat rows (embeddings/warm.py); no broker queue has this name.
WEB_QUEUE = "web"


def load_model(spec: dict[str, Any]) -> Encoder:
    """The process's encoder for ``spec`` (loaded once): the one door to the model-running code.

    ``ml.encoders`` brings torch, torchvision, timm and transformers: importing it
    costs 5.7 s and takes a process from ~100 MB to ~700 MB resident (docs/benchmarks.md,
    "Memory"). Only processes that run a model come through here (the embed worker, the web
    workers that encode queries, training, registering a model); the prepare worker and
    read-only commands never do, and tests/test_imports.py keeps it so.
    """
    from ml.encoders import load_encoder  # lazy: the measured heavy load above

    return load_encoder(
        spec,
        device=settings.EMBEDDINGS_DEVICE,
        batch_size=settings.ENCODER_BATCH_SIZE,
        torch_compile=settings.EMBEDDINGS_COMPILE,
    )


def encoder_for(model: EmbeddingModel) -> Encoder:
    return load_model(model.spec)


# encoder -> its copy for search words (query_encoder_for); keyed by id, checked by identity.
_query_encoders: dict[int, tuple[Encoder, Encoder]] = {}
_query_encoders_lock = threading.Lock()


def query_encoder_for(model: EmbeddingModel) -> Encoder:
    """The encoder a search's words go through: encoder_for(model), or with QUERY_ENCODER_INT8
    (on CPU) a copy of it whose text towers' Linear layers are int8, made once per process.
    Only for queries: stored vectors always come from encoder_for."""
    encoder = encoder_for(model)
    if not settings.QUERY_ENCODER_INT8 or encoder.device.type != "cpu":
        return encoder
    entry = _query_encoders.get(id(encoder))
    if entry is not None and entry[0] is encoder:
        return entry[1]
    with _query_encoders_lock:
        entry = _query_encoders.get(id(encoder))
        if entry is None or entry[0] is not encoder:
            entry = (encoder, int8_text_copy(encoder))
            _query_encoders[id(encoder)] = entry
        return entry[1]


def int8_text_copy(encoder: Encoder) -> Encoder:
    """A shallow copy of `encoder` whose text modules (text_model, and a joint model's
    minilm_model) are deep copies with every nn.Linear dynamically quantized to int8, one
    scale per output channel (per tensor loses more: docs/benchmarks.md section 8)."""
    import torch  # heavy: only a process that already runs the model gets here
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    quantized = copy.copy(encoder)
    for name in ("text_model", "minilm_model"):
        module = getattr(encoder, name, None)
        if isinstance(module, torch.nn.Module):
            with warnings.catch_warnings():  # torch.ao.quantization's notice that it moves to torchao
                warnings.simplefilter("ignore")
                setattr(
                    quantized,
                    name,
                    quantize_dynamic(
                        copy.deepcopy(module), {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
                    ),
                )
    return quantized


def _register(name: str, kind: str, spec: dict, **fields: object) -> EmbeddingModel:
    # Registering runs the model once: its dimensions and actual backbone (after any fallback)
    # are what it loads as.
    encoder = load_model(spec)
    notes = str(fields.pop("notes", ""))
    requested = spec.get("backbone")
    if requested and encoder.backbone != requested:
        # Load the fallback directly from now on instead of retrying the missing weights
        # (a failed download costs seconds) on every worker start.
        spec = {**spec, "backbone": encoder.backbone, "requested_backbone": requested}
        notes = f"{fallback_note(requested, encoder.backbone)} {notes}".strip()
    model, _ = EmbeddingModel.objects.update_or_create(
        name=name,
        defaults=dict(
            kind=kind,
            spec=spec,
            backbone=encoder.backbone,
            text_tower=str(spec.get("text", fields.pop("text_tower", "gru"))),
            image_dim=encoder.image_dim,
            text_dim=encoder.text_dim,
            image_feat_dim=encoder.column_dims().get("image_feat", 0),
            text_feat_dim=encoder.column_dims().get("text_feat", 0),
            notes=notes,
            **fields,
        ),
    )
    # No HNSW index yet: a model's indexes are built in one pass once its vectors are stored
    # (finish_activation_if_complete), or when it is switched to (models.atomic_switch).
    return model


def register_baseline(backbone: str | None = None) -> EmbeddingModel:
    backbone = backbone or settings.EMBEDDINGS_IMAGE_BACKBONE
    spec = {"kind": "baseline", "backbone": backbone, "text": "minilm"}
    if backbone == "resnet50" and settings.RESNET50_WEIGHTS:
        spec["weights_path"] = settings.RESNET50_WEIGHTS
    # Named after the backbone it runs (load_model loads once per spec, so _register reuses
    # it): without ResNet50 weights, "baseline-efficientnet_lite0-fallback", a model of its
    # own beside a baseline that asked for EfficientNet-Lite0.
    used = load_model(spec).backbone
    name = f"baseline-{used}" if used == backbone else f"baseline-{used}-fallback"
    return _register(name, EmbeddingModel.Kind.BASELINE, spec)


def register_checkpoint(
    path: Path,
    name: str | None = None,
    training_data: dict | None = None,
    metrics: dict | None = None,
    curve: str = "",
    notes: str = "",
) -> EmbeddingModel:
    spec = {"kind": "checkpoint", "path": str(Path(path).resolve())}
    return _register(
        name or Path(path).stem,
        EmbeddingModel.Kind.JOINT,
        spec,
        notes=notes,
        checkpoint=spec["path"],
        training_data=training_data or {},
        metrics=metrics or {},
        curve=curve,
        text_tower=load_model(spec).text_kind,
    )


def ensure_active_model() -> EmbeddingModel:
    """The active model; on a fresh site, register and activate the default one."""
    active = EmbeddingModel.active()
    if active:
        return active
    if settings.EMBEDDINGS_CHECKPOINT:
        model = register_checkpoint(Path(settings.EMBEDDINGS_CHECKPOINT))
    else:
        model = register_baseline()
    # Nothing to serve yet, so there is nothing to keep serving: switch at once.
    atomic_switch(model)
    model.refresh_from_db()
    return model


def target_models() -> list[EmbeddingModel]:
    """Models new or changed products must be embedded with: the active one and any on its way."""
    ensure_active_model()
    return list(
        EmbeddingModel.objects.filter(
            status__in=[
                EmbeddingModel.Status.ACTIVE,
                EmbeddingModel.Status.ACTIVATING,
                EmbeddingModel.Status.EVALUATING,
            ]
        )
    )


def missing_count(model: EmbeddingModel) -> int:
    """Products without a vector computed from their current content under `model`."""
    return ProductVector.missing_product_ids(model).count()


def cold_web_workers(model: EmbeddingModel) -> list[str]:
    """Live web workers that have not reported `model` warm (loaded and run once)."""
    return [w.nodename for w in live_workers() if WEB_QUEUE in w.queue_list and model.pk not in w.warm_models]


def wait_for_web_workers(model: EmbeddingModel, timeout: float | None = None) -> bool:
    """Before a switch: wait until every live web worker has `model` warm (True), or for
    `timeout` seconds (ENCODER_WARM_WAIT_SECONDS; False, logged: a web worker that cannot load
    the model must not hold the activation back for ever)."""
    timeout = settings.ENCODER_WARM_WAIT_SECONDS if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while cold := cold_web_workers(model):
        if time.monotonic() >= deadline:
            logger.warning("switching to %s although web workers %s have not loaded it", model.name, cold)
            return False
        time.sleep(0.5)
    return True


def finish_activation_if_complete(model_id: int) -> bool:
    """Once every product has a current vector under an ACTIVATING model: build its HNSW
    indexes, then switch to it, or, when its activation is gated, hand it to the gate (which
    ends in ``complete_gate``).

    The indexes are built here, in one pass over the stored vectors, rather than at
    registration: filled row by row while the catalogue re-embeds, four HNSW graphs cost
    Postgres 10 ms of CPU per product, against 3.9 with this build (docs/benchmarks.md section 11).
    The build comes before the gate is claimed, so a long one (hours at 10M) never looks like a
    dead gate (restart_stalled_gate), and search never reads the model without them. A crash
    during the build leaves the model ACTIVATING: the reconciler's nudge calls this again and
    the build goes on from what is valid."""
    model = EmbeddingModel.objects.get(pk=model_id)
    if model.status != EmbeddingModel.Status.ACTIVATING or missing_count(model) > 0:
        return False
    # Outside a transaction: CONCURRENTLY, the serving model's ingest goes on meanwhile.
    built = create_indexes(model.pk, model.column_dims())
    if built:
        logger.info("vectors of %s complete; built its indexes %s", model.name, ", ".join(built))
    with transaction.atomic():
        model = EmbeddingModel.objects.select_for_update().get(pk=model_id)
        # Another task claimed or switched it meanwhile, or a product changed and waits for its vector.
        if model.status != EmbeddingModel.Status.ACTIVATING or missing_count(model) > 0:
            return False
        gated = bool((model.gate or {}).get("required"))
        if gated:
            # Claimed under the row lock: exactly one task runs the gate.
            model.status = EmbeddingModel.Status.EVALUATING
            model.gate = {**(model.gate or {}), "started_at": timezone.now().isoformat()}
            model.save(update_fields=["status", "gate"])
        else:
            wait_for_web_workers(model)  # no search may land on a web worker still loading it
            old = atomic_switch(model)
    if gated:
        logger.info("vectors of %s complete; running the activation gate", model.name)
        receivers = model_ready_for_gate.send(sender=EmbeddingModel, model=model)
        if not receivers:
            complete_gate(model, {"decision": "activated", "reason": "no gate installed"})
        return True
    if old is not None:
        retire(old)
    logger.info("activated embedding model %s", model.name)
    return True


def restart_stalled_gate(model: EmbeddingModel, stale_after: float) -> bool:
    """A gate that started over `stale_after` seconds ago and never decided died with its
    worker: put the model back to ACTIVATING, so the next completion check runs it again."""
    started = (model.gate or {}).get("started_at")
    if model.status != EmbeddingModel.Status.EVALUATING or not started:
        return False
    if (timezone.now() - datetime.fromisoformat(started)).total_seconds() < stale_after:
        return False
    updated = EmbeddingModel.objects.filter(pk=model.pk, status=EmbeddingModel.Status.EVALUATING).update(
        status=EmbeddingModel.Status.ACTIVATING
    )
    if updated:
        logger.warning("the activation gate of %s never finished (worker lost?); running it again", model.name)
    return bool(updated)


def complete_gate(model: EmbeddingModel, report: dict, keep_refused: bool = False) -> bool:
    """Record the gate's report; activate the model if it passed, else drop its vectors.

    A refused model stays registered (status READY) with the report, so an admin can still
    activate it after a warning (an ungated activation re-embeds the catalogue). Its vectors
    are dropped unless ``keep_refused`` (the evaluation suite scores refused models too).
    """
    report = {**report, "required": True}
    with transaction.atomic():
        model = EmbeddingModel.objects.select_for_update().get(pk=model.pk)
        if model.status != EmbeddingModel.Status.EVALUATING:
            return False
        model.gate = report
        if report.get("decision") == "activated":
            model.save(update_fields=["gate"])
            wait_for_web_workers(model)
            old = atomic_switch(model)
        else:
            model.status = EmbeddingModel.Status.READY
            model.save(update_fields=["gate", "status"])
            old = None
    if report.get("decision") == "activated":
        if old is not None:
            retire(old)
        logger.info("gate passed: activated embedding model %s", model.name)
        return True
    if not keep_refused:
        drop_vectors(model)
    logger.warning("gate refused embedding model %s: %s", model.name, report.get("reason"))
    return False


def retire(model: EmbeddingModel) -> None:
    """Drop a retired model's vectors and indexes (only ever after the switch)."""
    drop_vectors(model)


def drop_vectors(model: EmbeddingModel) -> None:
    """A model's indexes and vectors, its products' and their further photos'."""
    drop_indexes(model.pk)
    ProductVector.objects.filter(model=model).delete()
    PhotoVector.objects.filter(model=model).delete()
