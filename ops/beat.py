"""Heartbeats: a thread that stamps a row while a process (a worker, a job) is alive.

A process killed with SIGKILL stops beating; whoever reads the row sees it go stale.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from ops.models import JobHeartbeat, WorkerHeartbeat

logger = logging.getLogger(__name__)


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def stale_before(now: datetime | None = None) -> datetime:
    """Beats older than this mean the process is gone (three missed beats)."""
    return (now or timezone.now()) - timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS)


class Beater:
    """Calls `stamp` every `interval` seconds on a daemon thread until stopped."""

    def __init__(self, stamp: Callable[[], None], interval: float, name: str) -> None:
        self._stamp = stamp
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Beater:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                close_old_connections()
                self._stamp()
            except Exception as exc:  # the database may be restarting; the next beat retries
                logger.warning("heartbeat %s failed: %s", self._thread.name, exc)
                connection.close()
        connection.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=self._interval + 5)


def beat_job(kind: str, job_id: int) -> None:
    JobHeartbeat.objects.update_or_create(
        kind=kind, job_id=job_id, defaults={"beat_at": timezone.now(), "owner": owner()}
    )


@contextmanager
def beating(kind: str, job_id: int) -> Iterator[None]:
    """Keep a job's heartbeat fresh for as long as the block runs (in this process)."""
    beat_job(kind, job_id)
    beater = Beater(lambda: beat_job(kind, job_id), settings.HEARTBEAT_SECONDS, f"beat-{kind}-{job_id}").start()
    try:
        yield
    finally:
        beater.stop()


def job_is_alive(kind: str, job_id: int, now: datetime | None = None) -> bool:
    return JobHeartbeat.objects.filter(kind=kind, job_id=job_id, beat_at__gte=stale_before(now)).exists()


def live_workers(now: datetime | None = None) -> list[WorkerHeartbeat]:
    return list(WorkerHeartbeat.objects.filter(beat_at__gte=stale_before(now)).order_by("nodename"))


def in_flight(task: str, now: datetime | None = None) -> list[list]:
    """Arguments of `task` as being run right now by a live worker."""
    return [w.task_args for w in live_workers(now) if w.task == task]
