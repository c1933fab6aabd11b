"""Keep child processes running: restart a dead one (logged), backing off when it keeps dying.

Used by `manage.py runsite` for the Celery workers, Celery beat and gunicorn. No Django.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# A child that ran this long before dying is restarted at once (it was up: a kill, an OOM, a
# crash mid-task); a quicker death doubles the wait before the next start, up to MAX_BACKOFF
# (a broken config or a missing dependency kills a worker within seconds: no CPU spinning).
STABLE_AFTER = 10.0
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0

# gunicorn as `runsite` serves the site (bench.load_test starts the same command). Sync workers,
# one per core of the 2-core reference machine: a search is CPU-bound (the query encoder), so more
# workers than cores would wait on the CPU instead of in the listen queue.
WEB_WORKERS = 2
WEB_TIMEOUT_SECONDS = 120


def web_torch_threads() -> str:
    """Intra-op threads of each web worker's torch (WEB_TORCH_THREADS, default 1).

    A query is a batch of one: a second thread gains little (Lite0: 24.7 ms with one thread,
    27 ms with two, docs/benchmarks.md section 5), and with one worker per core two threads
    each would contend, every forward stalling at an OpenMP barrier whenever another process
    holds a core (docs/benchmarks.md sections 0 and 5).
    """
    # From the environment, not Django's settings: the container's command (serve_web) builds
    # gunicorn's command line before anything loads Django.
    return os.environ.get("WEB_TORCH_THREADS") or "1"


def gunicorn_argv(bind: str, workers: int = WEB_WORKERS, access_log: Path | None = None) -> list[str]:
    # --env reaches the workers' environment before they import torch (libgomp reads it once).
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "searchsite.wsgi:application",
        "--bind",
        bind,
        "--workers",
        str(workers),
        "--timeout",
        str(WEB_TIMEOUT_SECONDS),
        "--env",
        f"OMP_NUM_THREADS={web_torch_threads()}",
    ]
    return argv + (["--access-logfile", str(access_log)] if access_log else [])


# Celery workers as `runsite` starts them: queue -> processes. Two prepare processes, so a long
# admin import does not hold up the reconciler; one embed process, which runs the model on every
# core it has. Only the embed worker imports torch (docs/scaling.md, "Memory").
WORKER_CONCURRENCY = {"prepare": 2, "embed": 1}


def celery_worker_argv(queue: str, concurrency: int | None = None, name: str | None = None) -> list[str]:
    concurrency = WORKER_CONCURRENCY[queue] if concurrency is None else concurrency
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "searchsite",
        "worker",
        "-Q",
        queue,
        "-c",
        str(concurrency),
        "-n",
        name or f"{queue}@%h",
        "--loglevel",
        "INFO",
    ]


def celery_beat_argv(schedule: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "searchsite",
        "beat",
        "--loglevel",
        "INFO",
        "--schedule",
        str(schedule),
    ]


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path | None = None  # None: inherit the supervisor's stdout/stderr
    env: dict[str, str] | None = None
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = FIRST_BACKOFF
    next_start: float | None = None  # when a dead child is due to start again
    history: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


class Supervisor:
    """Starts children, restarts the ones that die, stops them all on request.

    `watch()` runs the restart loop on a daemon thread; `stop()` ends it and terminates every
    child (SIGTERM, then SIGKILL after `grace` seconds). Child pids are written to
    `pid_dir/<name>.pid` so operators (and the fault tests) can find them.
    """

    def __init__(
        self,
        log: Callable[[str], None],
        pid_dir: Path | None = None,
        poll_interval: float = 0.5,
        stable_after: float = STABLE_AFTER,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self.log = log
        self.pid_dir = pid_dir
        self.poll_interval = poll_interval
        self.stable_after = stable_after
        self.max_backoff = max_backoff
        self.children: dict[str, Child] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, name: str, argv: list[str], log: Path | None = None, env: dict[str, str] | None = None) -> Child:
        child = Child(name, argv, log, env)
        with self._lock:
            self.children[name] = child
            self._start(child)
        return child

    def _start(self, child: Child) -> None:
        out = open(child.log, "ab") if child.log else None
        try:
            # Its own process group: stop() can then end a child's own children too (a Celery
            # pool process busy with a training run must not outlive the site).
            child.process = subprocess.Popen(
                child.argv,
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                env={**os.environ, **child.env} if child.env else None,
                start_new_session=True,
            )
        finally:
            if out:
                out.close()  # the child has its own copy
        child.started_at = time.monotonic()
        child.next_start = None
        if self.pid_dir:
            self.pid_dir.mkdir(parents=True, exist_ok=True)
            # Written aside, then renamed: a reader never sees an empty or half-written file.
            partial = self.pid_dir / f".{child.name}.pid.partial"
            partial.write_text(f"{child.process.pid}\n")
            partial.replace(self.pid_dir / f"{child.name}.pid")

    def check(self) -> None:
        """One pass: notice dead children, restart those whose back-off has passed."""
        now = time.monotonic()
        with self._lock:
            if self._stopping.is_set():
                return
            for child in self.children.values():
                if child.process is None:
                    continue
                if child.next_start is None:
                    code = child.process.poll()
                    if code is None:
                        continue
                    lived = now - child.started_at
                    if lived >= self.stable_after:
                        child.backoff = FIRST_BACKOFF
                        delay = 0.0
                    else:
                        delay = child.backoff
                        child.backoff = min(child.backoff * 2, self.max_backoff)
                    child.next_start = now + delay
                    message = (
                        f"{child.name} (pid {child.process.pid}) {describe_exit(code)} after {lived:.0f}s; "
                        f"restarting {'now' if delay == 0 else f'in {delay:.0f}s'} (restart #{child.restarts + 1})"
                    )
                    child.history.append(message)
                    self.log(message)
                if child.next_start is not None and now >= child.next_start:
                    child.restarts += 1
                    self._start(child)
                    self.log(f"{child.name} restarted (pid {child.process.pid})")

    def watch(self) -> None:
        def loop() -> None:
            while not self._stopping.wait(self.poll_interval):
                try:
                    self.check()
                except Exception as exc:  # never let the watcher die silently
                    self.log(f"supervisor error: {exc!r}")

        self._thread = threading.Thread(target=loop, name="supervisor", daemon=True)
        self._thread.start()

    def stop(self, grace: float = 15.0) -> None:
        self._stopping.set()
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._lock:
            live = [c.process for c in self.children.values() if c.process and c.process.poll() is None]
            for process in live:
                process.terminate()
            deadline = time.monotonic() + grace
            for process in live:
                try:
                    process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
            for child in self.children.values():
                if child.process:
                    try:  # whatever the child left behind in its group (pool processes)
                        os.killpg(child.process.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            if self.pid_dir:
                for child in self.children.values():
                    (self.pid_dir / f"{child.name}.pid").unlink(missing_ok=True)


def serve_web(args: list[str] | None = None) -> None:
    """`python -m searchsite.supervisor [--bind ADDR] [--workers N] [--dry-run]`: gunicorn as
    runsite starts it, in the foreground (the container's command: Dockerfile). The process
    becomes gunicorn, so the container's stop signal reaches it."""
    parser = argparse.ArgumentParser(prog="python -m searchsite.supervisor", description=serve_web.__doc__)
    parser.add_argument("--bind", default="0.0.0.0:8000")
    # the container's setting, read here: this command runs without Django (Dockerfile)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_WORKERS") or WEB_WORKERS))
    parser.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    opts = parser.parse_args(args)
    argv = gunicorn_argv(opts.bind, opts.workers)
    if opts.dry_run:
        print(" ".join(argv))
        return
    os.execv(argv[0], argv)


if __name__ == "__main__":
    serve_web()
