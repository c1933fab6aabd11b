"""SECRET_KEY: never a published default; a random one made on first run, kept (0600) and
shared by every process started on the same data dir."""

from __future__ import annotations

import multiprocessing
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from searchsite.secret_key import load_or_create_secret_key
from tests.searchsite.test_security import REPO, settings_env


def test_a_secret_key_is_made_once_private_and_reused(tmp_path):
    path = tmp_path / "data" / "secret_key"
    key = load_or_create_secret_key(path)
    assert len(key) >= 50
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret_key(path) == key
    assert load_or_create_secret_key(tmp_path / "other" / "secret_key") != key
    assert list(path.parent.iterdir()) == [path]  # no temporary files left behind


def _race(path: str, barrier, results) -> None:
    barrier.wait()
    results.put(load_or_create_secret_key(Path(path)))


def test_processes_starting_together_agree_on_one_key(tmp_path):
    path = tmp_path / "secret_key"
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(path), barrier, results)) for _ in range(8)]
    for p in procs:
        p.start()
    keys = {results.get(timeout=30) for _ in procs}
    for p in procs:
        p.join(10)
    assert keys == {path.read_text().strip()}


def test_a_damaged_key_file_is_refused_not_used(tmp_path):
    path = tmp_path / "secret_key"
    path.write_text("short\n")
    with pytest.raises(RuntimeError, match="shorter than 50"):
        load_or_create_secret_key(path)


def test_settings_without_secret_key_use_the_kept_one(tmp_path):
    def secret_key(**env: str) -> str:
        show = "import searchsite.settings as s; print(s.SECRET_KEY)"
        result = subprocess.run(
            [sys.executable, "-c", show],
            cwd=REPO,
            env=settings_env(tmp_path, **env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    first = secret_key()
    assert first == (tmp_path / "data" / "secret_key").read_text().strip()
    assert secret_key() == first
    assert secret_key(SECRET_KEY="from-the-environment") == "from-the-environment"


def test_compose_refuses_to_start_without_a_secret_key():
    compose = (REPO / "docker-compose.yml").read_text()
    assert "${SECRET_KEY:?" in compose
    assert "change-me" not in compose
    assert "change-me" not in (REPO / ".env.example").read_text()
