"""Reading the broker's queues without consuming them, on the filesystem transport and on Redis."""

from __future__ import annotations

import base64
import json
import os

import pytest
import redis

from ops import broker

REDIS_TEST_URL = os.environ.get("FAULTS_REDIS_URL", "redis://127.0.0.1:6379/11")


def envelope(task: str, args: list, queue: str) -> dict:
    body = base64.b64encode(json.dumps([args, {}, {}]).encode()).decode()
    return {
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"task": task, "id": "x"},
        "properties": {"body_encoding": "base64", "delivery_info": {"routing_key": queue}},
    }


@pytest.fixture
def fs_broker(settings, tmp_path):
    settings.REDIS_URL = ""
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path)}
    return tmp_path


@pytest.fixture
def redis_broker(settings):
    settings.REDIS_URL = REDIS_TEST_URL
    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.delete("embed", "prepare", "unacked")
    yield client
    client.delete("embed", "prepare", "unacked")


def test_it_reads_the_filesystem_queue(fs_broker):
    (fs_broker / "1_a.embed.msg").write_text(
        json.dumps(envelope("embeddings.tasks.embed_products", [[1, 2], 7], "embed"))
    )
    (fs_broker / "2_b.embed.msg").write_text(json.dumps(envelope("embeddings.tasks.embed_products", [[3], 7], "embed")))
    (fs_broker / "3_c.prepare.msg").write_text(json.dumps(envelope("catalog.tasks.reconcile", [], "prepare")))
    (fs_broker / "4_d.embed.msg").write_text("not json")  # half-written: skipped, not an error
    found = sorted((m.queue, m.task, str(m.args)) for m in broker.messages())
    assert found == [
        ("embed", "embeddings.tasks.embed_products", "[[1, 2], 7]"),
        ("embed", "embeddings.tasks.embed_products", "[[3], 7]"),
        ("prepare", "catalog.tasks.reconcile", "[]"),
    ]
    assert broker.depths() == {"prepare": {"waiting": 1, "unacked": 0}, "embed": {"waiting": 3, "unacked": 0}}
    assert broker.broker_name() == "filesystem"


def test_it_reads_redis_lists_and_unacked(redis_broker):
    redis_broker.lpush("embed", json.dumps(envelope("embeddings.tasks.embed_products", [[1, 2], 7], "embed")))
    redis_broker.lpush("prepare", json.dumps(envelope("catalog.tasks.reconcile", [], "prepare")))
    taken = envelope("embeddings.tasks.embed_products", [[5], 7], "embed")
    redis_broker.hset("unacked", "tag", json.dumps([taken, "", "embed"]))
    found = sorted((m.queue, str(m.args), m.unacked) for m in broker.messages())
    assert found == [("embed", "[[1, 2], 7]", False), ("embed", "[[5], 7]", True), ("prepare", "[]", False)]
    assert broker.depths() == {"prepare": {"waiting": 1, "unacked": 0}, "embed": {"waiting": 1, "unacked": 1}}
