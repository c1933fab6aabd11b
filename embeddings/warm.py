"""Keep a web process's encoders warm: the active model, and any model being activated.

A model is activated by re-embedding the whole catalogue first (minutes), so a process
that polls for ACTIVATING models has loaded the new towers, and run them once, long
before the switch: the first searches after it are as fast as any other. Search keeps
using the old model until the switch, whatever this thread is doing.
"""
from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connection
from PIL import Image

from embeddings.models import EmbeddingModel
from embeddings.reconcile import SERVING
from embeddings.registry import encoder_for

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
    # One forward pass each: the first one allocates and picks kernels (hundreds of ms).
    encoder.encode_texts(["warm up"])
    encoder.encode_images([Image.new("RGB", (224, 224), (128, 128, 128))])
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


def start_warm_loop(interval: float | None = None) -> None:
    """Poll for models to warm every `interval` seconds on a daemon thread (once per process)."""
    if _started.is_set():
        return
    _started.set()
    interval = settings.ENCODER_WARM_POLL_SECONDS if interval is None else interval

    def loop() -> None:
        while True:
            try:
                close_old_connections()
                warm_targets()
            except Exception as exc:  # the database may be restarting: try again next round
                logger.warning("encoder warm-up: %s", exc)
                connection.close()
            time.sleep(interval)

    threading.Thread(target=loop, name="encoder-warm-up", daemon=True).start()
