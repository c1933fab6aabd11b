"""Read the broker's queues without consuming them: depth, and which tasks wait there.

Works on both brokers the site runs on: kombu's filesystem transport (one file per
message under BROKER_DIR/queue) and Redis (one list per queue, plus the "unacked" hash
of messages a worker has taken but not acknowledged).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

QUEUES = ("prepare", "embed")


@dataclass
class Message:
    queue: str
    task: str
    args: list
    unacked: bool = False  # Redis: taken by a worker, not yet acknowledged


def _decode(envelope: dict, queue: str, unacked: bool = False) -> Message | None:
    try:
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return Message(queue, envelope["headers"]["task"], list(args), unacked)
    except (KeyError, ValueError, TypeError, IndexError):
        return None  # not a Celery task message (or another protocol): not ours to read


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)


def _queue_dir() -> Path:
    return Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])


def messages(queues: tuple[str, ...] = QUEUES) -> Iterator[Message]:
    """Every task message waiting in (or, on Redis, taken from and not acked by) these queues."""
    if settings.REDIS_URL:
        client = _redis()
        for queue in queues:
            for raw in client.lrange(queue, 0, -1):
                message = _decode(json.loads(raw), queue)
                if message:
                    yield message
        for raw in client.hvals("unacked"):
            try:
                envelope, _exchange, routing_key = json.loads(raw)
            except ValueError:
                continue
            if routing_key in queues:
                message = _decode(envelope, routing_key, unacked=True)
                if message:
                    yield message
        return
    folder = _queue_dir()
    for queue in queues:
        for path in folder.glob(f"*.{queue}.msg"):
            try:
                envelope = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # taken by a worker while we listed the folder
            message = _decode(envelope, queue)
            if message:
                yield message


def depths(queues: tuple[str, ...] = QUEUES) -> dict[str, dict[str, int]]:
    """{queue: {"waiting": n, "unacked": n}}; unacked is always 0 on the filesystem broker."""
    out = {q: {"waiting": 0, "unacked": 0} for q in queues}
    if settings.REDIS_URL:
        client = _redis()
        for queue in queues:
            out[queue]["waiting"] = int(client.llen(queue))
        for raw in client.hvals("unacked"):
            try:
                routing_key = json.loads(raw)[2]
            except (ValueError, IndexError):
                continue
            if routing_key in out:
                out[routing_key]["unacked"] += 1
        return out
    folder = _queue_dir()
    for queue in queues:
        out[queue]["waiting"] = sum(1 for _ in folder.glob(f"*.{queue}.msg"))
    return out


def broker_name() -> str:
    return "redis" if settings.REDIS_URL else "filesystem"
