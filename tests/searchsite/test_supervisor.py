"""runsite's supervisor: a dead child is restarted and logged, with back-off; stop ends all."""

from __future__ import annotations

import os
import signal
import sys
import time

from searchsite.supervisor import Supervisor, describe_exit

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
CRASHER = [sys.executable, "-c", "raise SystemExit(3)"]


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_a_killed_child_is_restarted_and_logged(tmp_path):
    lines: list[str] = []
    supervisor = Supervisor(lines.append, pid_dir=tmp_path, poll_interval=0.05)
    child = supervisor.add("worker-embed", SLEEPER)
    other = supervisor.add("web", SLEEPER)
    first_pid, other_pid = child.pid, other.pid
    assert (tmp_path / "worker-embed.pid").read_text().strip() == str(first_pid)
    supervisor.watch()
    try:
        os.kill(first_pid, signal.SIGKILL)
        wait_until(lambda: child.pid != first_pid and child.process.poll() is None)
        assert child.restarts == 1 and other.pid == other_pid and other.restarts == 0
        assert any(f"worker-embed (pid {first_pid}) killed by SIGKILL" in line for line in lines), lines
        assert any("worker-embed restarted" in line for line in lines)
        assert (tmp_path / "worker-embed.pid").read_text().strip() == str(child.pid)
    finally:
        supervisor.stop(grace=5)
    assert child.process.poll() is not None and other.process.poll() is not None
    assert not (tmp_path / "web.pid").exists()


def test_a_child_that_keeps_dying_backs_off():
    lines: list[str] = []
    supervisor = Supervisor(lines.append, poll_interval=0.02, stable_after=30, max_backoff=0.4)
    child = supervisor.add("beat", CRASHER)
    supervisor.watch()
    try:
        wait_until(lambda: child.restarts >= 4, timeout=20)
    finally:
        supervisor.stop(grace=2)
    assert "exited with code 3" in lines[0] and "restarting in 1s" in lines[0]
    assert child.backoff == 0.4  # doubled each time, capped
    starts = [line for line in lines if "restarting in" in line]
    assert len(starts) >= 4


def test_stop_terminates_children_that_ignore_nothing(tmp_path):
    supervisor = Supervisor(lambda _: None, poll_interval=0.05)
    children = [supervisor.add(f"c{i}", SLEEPER) for i in range(3)]
    supervisor.watch()
    supervisor.stop(grace=5)
    assert all(c.process.returncode == -signal.SIGTERM for c in children)


def test_exit_descriptions():
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(0) == "exited with code 0"
