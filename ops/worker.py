"""Celery worker hooks: heartbeats, the task in flight, and a reconcile on start.

Connected from ops/apps.py; they act in Celery workers only (an eager task in another process is skipped).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import signals
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from ops.beat import Beater, beat_job
from ops.models import WorkerHeartbeat

logger = logging.getLogger(__name__)

# Tasks whose job must show "alive" while they run, by the kind of job their first argument names.
# (Imports beat from run_import itself, which the command line uses too.)
JOB_TASKS = {"embeddings.tasks.train_model": "training"}
RECONCILE_TASK = "catalog.tasks.reconcile"

_state: dict[str, Any] = {}


def _queues(consumer: Any) -> str:
    try:
        return ",".join(sorted(q.name for q in consumer.task_consumer.queues))
    except AttributeError:
        return ""


def _stamp_worker() -> None:
    now = timezone.now()
    updated = WorkerHeartbeat.objects.filter(nodename=_state["nodename"]).update(beat_at=now)
    if not updated:  # the row was pruned (or the database came back empty-handed): write it again
        _register(now)


def _register(now: Any) -> None:
    WorkerHeartbeat.objects.update_or_create(
        nodename=_state["nodename"],
        defaults={
            "queues": _state["queues"],
            "pid": os.getpid(),
            "started_at": now,
            "beat_at": now,
            "task": "",
            "task_args": [],
            "task_started_at": None,
        },
    )


@signals.worker_ready.connect
def on_worker_ready(sender: Any = None, **_: Any) -> None:
    _state["nodename"] = sender.hostname
    _state["queues"] = _queues(sender)
    try:
        _register(timezone.now())
    except Exception:  # a worker without its heartbeat row still works; the next beat retries
        logger.exception("cannot register worker heartbeat")
    _state["beater"] = Beater(_stamp_worker, settings.HEARTBEAT_SECONDS, "worker-heartbeat").start()
    # What a killed predecessor left half done (a batch taken from the filesystem broker is
    # gone with it) is queued again now, not at the next periodic run.
    try:
        sender.app.send_task(RECONCILE_TASK, queue="prepare")
        logger.info("worker ready: reconcile queued")
    except Exception:
        logger.exception("cannot queue the start-up reconcile")


@signals.worker_shutdown.connect
def on_worker_shutdown(**_: Any) -> None:
    beater = _state.pop("beater", None)
    if beater:
        beater.stop()
    if "nodename" in _state:
        try:
            close_old_connections()
            WorkerHeartbeat.objects.filter(nodename=_state["nodename"]).delete()
        except Exception:
            logger.warning("cannot remove worker heartbeat on shutdown")


def _nodename(task: Any) -> str | None:
    return getattr(task.request, "hostname", None) or _state.get("nodename")


@signals.task_prerun.connect
def on_task_prerun(sender: Any = None, args: Any = None, **_: Any) -> None:
    name = getattr(sender, "name", "")
    nodename = _nodename(sender)
    if sender is None or getattr(sender.request, "is_eager", False) or not nodename:
        return
    try:
        close_old_connections()
        WorkerHeartbeat.objects.filter(nodename=nodename).update(
            task=name, task_args=list(args or []), task_started_at=timezone.now()
        )
        kind = JOB_TASKS.get(name)
        if kind and args:
            beat_job(kind, int(args[0]))
            _state["job_beater"] = Beater(
                lambda: beat_job(kind, int(args[0])), settings.HEARTBEAT_SECONDS, f"beat-{kind}-{args[0]}"
            ).start()
    except Exception:
        logger.exception("cannot record the task in flight")


@signals.task_postrun.connect
def on_task_postrun(sender: Any = None, **_: Any) -> None:
    beater = _state.pop("job_beater", None)
    if beater:
        beater.stop()
    nodename = _nodename(sender) if sender is not None else None
    if not nodename or getattr(sender.request, "is_eager", False):
        return
    try:
        close_old_connections()
        WorkerHeartbeat.objects.filter(nodename=nodename).update(task="", task_args=[], task_started_at=None)
    except Exception:
        logger.warning("cannot clear the task in flight")
