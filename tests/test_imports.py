"""Processes that run no model never import torch (docs/scaling.md, "Memory").

torch, torchvision, timm and transformers take a process from ~100 MB to ~700 MB resident and
cost seconds to import. The model-running code sits behind one door,
``embeddings.registry.load_model``; nltk (3 s, ~130 MB) behind ``ml.wordnet``'s reader.
The first test imports every other module of the site in a fresh process, as Django, Celery's
task autodiscovery and the URL conf would, and fails on a new top-level import of a heavy
library. The second runs the real `prepare` worker (as runsite starts it) through a real import
with thumbnails, and management commands that run no model, and looks at what they loaded.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import REPO, SMALL_CSV

HEAVY = ("torch", "torchvision", "timm", "transformers", "nltk", "sklearn", "matplotlib")

# The model-running side: what only the embed worker, the web workers (query encoding),
# training and model registration import, always through embeddings.registry.load_model
# (or, for nltk, ml.wordnet).
MODEL_SIDE = {
    "ml.backbones",
    "ml.checkpoints",
    "ml.distill",
    "ml.encoders",
    "ml.features",
    "ml.losses",
    "ml.query_views",
    "ml.text_inputs",
    "ml.tokenizer",
    "ml.towers",
    "ml.training",
    "ml.wordnet_nltk",
    "searchsite.wsgi",  # the web process: loads the active model before serving (embeddings/warm.py)
}
PACKAGES = ("searchsite", "catalog", "embeddings", "ops", "ml")


def site_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if "migrations" in parts:
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if name not in MODEL_SIDE and name != "searchsite.test_settings":
                names.append(name)
    return names


def child_env() -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "searchsite.test_settings"}


def test_model_side_list_names_real_modules() -> None:
    # A renamed module must not silently drop out of the check below.
    for name in MODEL_SIDE:
        assert (REPO / (name.replace(".", "/") + ".py")).is_file(), name


def heavy_after_importing(modules: list[str]) -> list[str]:
    """The heavy libraries a fresh process holds after django.setup() and importing `modules`."""
    code = (
        "import importlib, json, sys, django; django.setup(); "
        f"[importlib.import_module(m) for m in {modules!r}]; "
        f"print(json.dumps(sorted(h for h in {HEAVY!r} if h in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_modules_outside_the_model_side_import_no_heavy_library() -> None:
    modules = site_modules()
    assert "catalog.tasks" in modules and "catalog.gate" in modules and "embeddings.registry" in modules
    heavy = heavy_after_importing(modules)
    assert heavy == [], (
        f"{heavy}: a module outside the model side imports a heavy library at the top; reach the model "
        "through embeddings.registry.load_model instead (python -X importtime shows the chain)"
    )


def test_the_model_side_does_load_torch() -> None:
    # The check above would pass vacuously if it could not see torch being imported.
    assert "torch" in heavy_after_importing(["ml.encoders"])


def torch_mapped(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def group_pids(leader: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == leader:
                    pids.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                pass
    return pids


def catalogue_zip(csv_path: Path) -> bytes:
    """The CSV and its photos as one ZIP, as a shop uploads them in the admin."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.write(csv_path, csv_path.name)
        for image in sorted((csv_path.parent / "images").iterdir()):
            archive.write(image, f"images/{image.name}")
    return out.getvalue()


# A management command in a process of its own: exits 3 if it imported torch.
COMMAND_PROBE = (
    "import sys, django; django.setup(); from django.core.management import call_command; "
    "call_command(*sys.argv[1:]); sys.exit(3 if 'torch' in sys.modules else 0)"
)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_prepare_worker_and_commands_run_without_torch(tmp_path) -> None:
    import redis
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.db import transaction

    from catalog.models import ImportJob, Product
    from catalog.uploads import queue_import
    from searchsite.celery import app
    from searchsite.supervisor import celery_worker_argv
    from tests.integration.test_worker import database_url

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.flushdb()
    app.conf.task_always_eager = False
    env = {
        **child_env(),
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.CELERY_BROKER_URL,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "VITRINE_DATA_DIR": str(settings.DATA_DIR),
    }
    log = tmp_path / "worker-prepare.log"
    worker = subprocess.Popen(
        celery_worker_argv("prepare"),
        cwd=REPO,
        env=env,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # queue_import registers the first model (this test process runs it, as the web process does)
        # and queues the import; the worker unpacks, saves products and photos, makes thumbnails.
        with transaction.atomic():
            job = queue_import(SimpleUploadedFile("small.zip", catalogue_zip(SMALL_CSV), "application/zip"))
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.status not in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING):
                break
            assert worker.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        assert job.created == 40, (job.status, job.summary(), job.errors[:3], log.read_text()[-3000:])
        assert Product.objects.exclude(thumbnail="").count() == 40
        pids = group_pids(worker.pid)
        assert len(pids) == 3  # the main process and runsite's two pool processes
        assert not [pid for pid in pids if torch_mapped(pid)], "the prepare worker loaded torch"
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(30)
        broker.flushdb()
        app.conf.task_always_eager = True
    for argv in (["check"], ["showmigrations", "catalog"], ["embed_missing"], ["prune_search_log"]):
        out = subprocess.run(
            [sys.executable, "-c", COMMAND_PROBE, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, (
            f"manage.py {' '.join(argv)}: exit {out.returncode} (3: imported torch)\n{out.stderr[-2000:]}"
        )
