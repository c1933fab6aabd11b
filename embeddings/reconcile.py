"""Re-queue what a crash lost: vectors missing under the target models, dead trainings.

Run on every worker start and periodically (catalog.tasks.reconcile). Never floods the
queue: a product is only queued again when no batch holding it waits in the broker, none
is being run by a live worker, the reconciler did not itself queue it within the lease
(RECONCILE_LEASE_SECONDS), and it was not saved within RECONCILE_GRACE_SECONDS (the
import that saved it is about to queue it).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from embeddings.dispatch import missing_ids, queue_embedding
from embeddings.models import EmbeddingModel, ProductVector, TrainingJob, product_model
from embeddings.registry import restart_stalled_gate
from embeddings.tasks import embed_products, train_model
from ops import beat, broker
from ops.models import EmbedLease, JobHeartbeat

logger = logging.getLogger(__name__)

EMBED_TASK = "embeddings.tasks.embed_products"
TRAIN_TASK = "embeddings.tasks.train_model"


@dataclass
class VectorReport:
    queued: dict[str, int] = field(default_factory=dict)  # model name -> products queued again
    pending: int = 0  # missing products left alone: queued, in flight, leased or just saved
    nudged: list[str] = field(default_factory=list)  # activating models with nothing missing


@dataclass
class TrainingReport:
    failed: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)


def pending_batches(messages: list[broker.Message] | None = None) -> dict[int, set[int]]:
    """model id -> product ids in an embedding batch that waits in the broker or runs on a live worker."""
    pending: dict[int, set[int]] = defaultdict(set)
    waiting = messages if messages is not None else list(broker.messages(("embed",)))
    arg_lists = [m.args for m in waiting if m.task == EMBED_TASK and not m.unacked]
    # An unacked Redis message whose worker died would only come back after the visibility
    # timeout; the live workers' own record of what they run is the truth for in-flight work.
    arg_lists += beat.in_flight(EMBED_TASK)
    for args in arg_lists:
        if len(args) >= 2 and isinstance(args[0], list):
            pending[int(args[1])].update(int(i) for i in args[0])
    return pending


# The models products must have current vectors under (as registry.target_models, but without
# registering a first model: the reconciler never loads towers).
SERVING = (EmbeddingModel.Status.ACTIVE, EmbeddingModel.Status.ACTIVATING, EmbeddingModel.Status.EVALUATING)


def target_models() -> list[EmbeddingModel]:
    return list(EmbeddingModel.objects.filter(status__in=SERVING))


def reconcile_vectors(
    now: datetime | None = None, messages: list[broker.Message] | None = None, saving_since: datetime | None = None
) -> VectorReport:
    """saving_since: a live import started then; what it saved is queued by it at the end of each chunk."""
    now = now or timezone.now()
    report = VectorReport()
    lease_start = now - timedelta(seconds=settings.RECONCILE_LEASE_SECONDS)
    EmbedLease.objects.filter(queued_at__lt=lease_start).delete()
    models = target_models()
    if not models:
        return report
    pending = pending_batches(messages)
    recent = now - timedelta(seconds=settings.RECONCILE_GRACE_SECONDS)
    if saving_since is not None:
        recent = min(recent, saving_since)
    just_saved = set(product_model().objects.filter(updated_at__gte=recent).values_list("pk", flat=True))
    for model in models:
        if restart_stalled_gate(model, settings.GATE_STALE_SECONDS):
            model.refresh_from_db()
        missing = set(missing_ids(model))
        leased = set(EmbedLease.objects.filter(model_id=model.pk).values_list("product_id", flat=True))
        todo = sorted(missing - pending.get(model.pk, set()) - leased - just_saved)
        report.pending += len(missing) - len(todo)
        if todo:
            # The lease first: a crash between the two leaves a lease, never a double queue.
            EmbedLease.objects.bulk_create(
                [EmbedLease(product_id=pk, model_id=model.pk, queued_at=now) for pk in todo],
                update_conflicts=True,
                unique_fields=["product_id", "model_id"],
                update_fields=["queued_at"],
            )
            queue_embedding(todo, [model])
            report.queued[model.name] = len(todo)
            logger.warning("reconcile: %d products had no current vector under %s; queued again", len(todo), model.name)
        elif not missing and model.status == EmbeddingModel.Status.ACTIVATING and not pending.get(model.pk):
            # Every vector landed but the batch that should have finished the switch died
            # first: an empty batch runs the task's completion step again.
            transaction.on_commit(partial(embed_products.delay, [], model.pk))
            report.nudged.append(model.name)
    return report


def interrupted_message(job: TrainingJob) -> str:
    progress = job.progress or {}
    where = progress.get("phase", "start")
    if "epoch" in progress:
        where = f"epoch {progress['epoch']} of {progress.get('epochs', '?')}"
    return (
        f"Interrupted: the process running this training stopped (crash, kill or site restart) during {where}; "
        "no model was registered. Start a new training."
    )


def reconcile_trainings(now: datetime | None = None, messages: list[broker.Message] | None = None) -> TrainingReport:
    """RUNNING trainings whose process stopped beating end FAILED; lost QUEUED ones are sent again."""
    now = now or timezone.now()
    stale = beat.stale_before(now)
    report = TrainingReport()
    for job in TrainingJob.objects.filter(status=TrainingJob.Status.RUNNING):
        heartbeat = JobHeartbeat.objects.filter(kind=JobHeartbeat.Kind.TRAINING, job_id=job.pk).first()
        last_sign = heartbeat.beat_at if heartbeat else job.created_at
        if last_sign >= stale:
            continue
        updated = TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.RUNNING).update(
            status=TrainingJob.Status.FAILED, error=interrupted_message(job), finished_at=now
        )
        if updated:
            report.failed.append(job.pk)
            logger.warning("reconcile: training #%d was running with no live process; marked failed", job.pk)
    waiting = messages if messages is not None else list(broker.messages(("embed",)))
    queued_ids = {int(m.args[0]) for m in waiting if m.task == TRAIN_TASK and m.args}
    queued_ids |= {int(a[0]) for a in beat.in_flight(TRAIN_TASK) if a}
    lost_before = now - timedelta(seconds=settings.RECONCILE_LEASE_SECONDS)
    for job in TrainingJob.objects.filter(status=TrainingJob.Status.QUEUED, created_at__lt=lost_before):
        if job.pk in queued_ids:
            continue
        # Sent again at most once per lease: the heartbeat row remembers when.
        heartbeat, created = JobHeartbeat.objects.get_or_create(
            kind=JobHeartbeat.Kind.TRAINING, job_id=job.pk, defaults={"beat_at": now, "owner": "reconciler"}
        )
        if not created:
            if heartbeat.beat_at >= lost_before:
                continue
            heartbeat.beat_at, heartbeat.owner, heartbeat.resumes = now, "reconciler", heartbeat.resumes + 1
            heartbeat.save()
        transaction.on_commit(partial(train_model.delay, job.pk))
        report.requeued.append(job.pk)
    return report


def not_searchable(model: EmbeddingModel) -> int:
    """Products without a vector computed from their current content under `model`."""
    return ProductVector.missing_product_ids(model).count()
