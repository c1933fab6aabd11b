"""Keep a web process's encoders warm: the active model, and any model being activated.

A web worker warms the active model while it loads the app, before it accepts a request,
and then polls for models being activated (ACTIVATING, EVALUATING). Activating a model
re-embeds the whole catalogue first (minutes), so a polling process has loaded the new
towers, and run them once, long before the switch; search keeps using the old model until
then, whatever this thread is doing. Each web worker reports the models it has warm in its
heartbeat row (ops.WorkerHeartbeat, queues "web"), and the switch itself waits until every
live web worker has the new model (registry.wait_for_web_workers): a quick re-embed (a small
catalogue) cannot beat the poll.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone
from PIL import Image

from embeddings.models import EmbeddingModel
from embeddings.reconcile import SERVING
from embeddings.registry import WEB_QUEUE, encoder_for
from ops.beat import stale_before
from ops.models import WorkerHeartbeat

logger = logging.getLogger(__name__)

_warm: set[tuple[int, str]] = set()  # (model id, checkpoint/spec) already loaded and run here
_retry_at: dict[tuple[int, str], float] = {}
_started = threading.Event()


def _key(model: EmbeddingModel) -> tuple[int, str]:
    return model.pk, repr(sorted(model.spec.items()))


def warm_model(model: EmbeddingModel) -> float:
    """Load `model`'s towers in this process and run each once; return the seconds it took."""
    started = time.perf_counter()
    encoder = encoder_for(model)
    # One forward pass each, through the methods search calls: the first one allocates and
    # picks kernels (hundreds of ms).
    encoder.encode_text_signals(["warm up"])
    encoder.encode_image_signals([Image.new("RGB", (224, 224), (128, 128, 128))])
    _warm.add(_key(model))
    return time.perf_counter() - started


def warm_targets() -> list[str]:
    """Warm every active model, and any on its way (activating, evaluating), not warm yet; return the names."""
    warmed = []
    models = sorted(
        EmbeddingModel.objects.filter(status__in=SERVING),
        key=lambda m: m.status != EmbeddingModel.Status.ACTIVE,  # the serving model first
    )
    for model in models:
        if _key(model) in _warm or time.monotonic() < _retry_at.get(_key(model), 0.0):
            continue
        try:
            took = warm_model(model)
        except Exception:  # a broken checkpoint: say so, and try again a minute later, not every poll
            logger.exception("encoder warm-up of %s failed", model.name)
            _retry_at[_key(model)] = time.monotonic() + 60
            continue
        logger.info("encoder %s warm in this process (%.1fs)", model.name, took)
        warmed.append(model.name)
    return warmed


def nodename() -> str:
    return f"{WEB_QUEUE}@{socket.gethostname()}:{os.getpid()}"


def report_warm() -> None:
    """Stamp this web worker's heartbeat with the models it has warm."""
    now = timezone.now()
    warm = sorted({pk for pk, _ in _warm})
    updated = WorkerHeartbeat.objects.filter(nodename=nodename()).update(beat_at=now, warm_models=warm)
    if not updated:
        # Rows of web workers gone for good (restarted, replaced) are not kept for ever.
        WorkerHeartbeat.objects.filter(queues=WEB_QUEUE, beat_at__lt=stale_before(now)).delete()
        WorkerHeartbeat.objects.update_or_create(
            nodename=nodename(),
            defaults={
                "queues": WEB_QUEUE,
                "pid": os.getpid(),
                "started_at": now,
                "beat_at": now,
                "warm_models": warm,
            },
        )


def forget_worker() -> None:
    """On a clean exit: this worker no longer serves, so no switch has to wait for it."""
    try:
        WorkerHeartbeat.objects.filter(nodename=nodename()).delete()
    except Exception:  # noqa: BLE001 - the database may be gone first; the row just goes stale
        pass


def warm_round() -> None:
    """Warm what needs it and report it; a database that is restarting just waits for the next round."""
    try:
        close_old_connections()
        warm_targets()
        report_warm()
    except Exception as exc:
        logger.warning("encoder warm-up: %s", exc)
        connection.close()


def start_warm_loop(interval: float | None = None) -> None:
    """Warm now, then every `interval` seconds on a daemon thread (once per process).

    searchsite.wsgi calls this as a gunicorn worker loads the app, before the worker accepts
    its first request: it never serves on a cold model.
    """
    if _started.is_set():
        return
    _started.set()
    interval = settings.ENCODER_WARM_POLL_SECONDS if interval is None else interval
    warm_round()
    atexit.register(forget_worker)

    def loop() -> None:
        while True:
            time.sleep(interval)
            warm_round()

    threading.Thread(target=loop, name="encoder-warm-up", daemon=True).start()
