"""What the reconciler and the health page need to know about processes that may have died."""

from __future__ import annotations

from django.db import models


class WorkerHeartbeat(models.Model):
    """One Celery worker (by node name), written every WORKER_HEARTBEAT_SECONDS while it lives;
    web workers write one too (queues "web", every ENCODER_WARM_POLL_SECONDS).

    `task`/`task_args` name the task its pool is running, so the reconciler knows which
    embedding batch is in flight (the filesystem broker keeps no record of it).
    """

    nodename = models.CharField(max_length=200, primary_key=True)
    queues = models.CharField(max_length=200)  # comma-separated
    pid = models.IntegerField()
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField(db_index=True)
    task = models.CharField(max_length=200, blank=True)
    task_args = models.JSONField(default=list, blank=True)
    task_started_at = models.DateTimeField(null=True, blank=True)
    # Web workers (queues "web") list the models whose towers they have loaded and run
    # (embeddings/warm.py); a switch waits for every live one to have the new model.
    warm_models = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return f"{self.nodename} ({self.queues})"

    @property
    def queue_list(self) -> list[str]:
        return [q for q in self.queues.split(",") if q]


class JobHeartbeat(models.Model):
    """A long job (an import, a training run) is alive while its process beats here."""

    class Kind(models.TextChoices):
        IMPORT = "import"
        TRAINING = "training"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    job_id = models.BigIntegerField()
    owner = models.CharField(max_length=200, blank=True)  # host:pid of the process running it
    beat_at = models.DateTimeField()
    resumes = models.PositiveIntegerField(default=0)  # times the reconciler restarted it

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "job_id"], name="one_heartbeat_per_job")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.job_id} beat {self.beat_at:%H:%M:%S}"


class EmbedLease(models.Model):
    """The reconciler queued this product under this model at `queued_at`: not again before the lease ends."""

    product_id = models.BigIntegerField()
    model_id = models.BigIntegerField()
    queued_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["product_id", "model_id"], name="one_lease_per_vector")]
