"""`legato worker health`: 1 before any worker ran on the home, 0 while the server takes its
heartbeats, 1 again once they stop (what container health checks rely on)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.acceptance.conftest import Legato


def _until(check: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_health_follows_the_workers_heartbeats(legato: Legato, home: Path) -> None:
    fast = {"LEGATO_HEARTBEAT_SECONDS": "0.5"}
    before = legato("worker", "health", env=fast)
    assert before.returncode == 1 and "no worker has run" in before.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env.update(LEGATO_HOME=str(home), **fast)
    worker = subprocess.Popen(
        [sys.executable, "-m", "legato", "worker", "start", "--pool", "p", "--name", "box-1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _until(lambda: legato("worker", "health", env=fast).returncode == 0, "never healthy")
        healthy = legato("worker", "health", env=fast)
        assert "box-1: last heartbeat" in healthy.stderr
    finally:
        worker.kill()
        worker.wait(30)
    _until(
        lambda: legato("worker", "health", "--max-age", "1", env=fast).returncode == 1,
        "still healthy after the worker died",
    )
    stale = legato("worker", "health", "--max-age", "1", env=fast)
    assert "the last heartbeat was" in stale.stderr
