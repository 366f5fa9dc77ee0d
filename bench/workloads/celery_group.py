"""Celery's fan-out: a group of N `inc` signatures, `.get()` for the results. A worker with
2 prefork processes (`--pool prefork --concurrency 2`, Celery's defaults otherwise), Redis as
broker and result backend, at BENCH_CELERY_REDIS_URL (a database of the benchmark's own).

Before every rep the Redis database is flushed and a new worker started (its queue bindings
live in that database), then warmed by a small untimed group.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # like the other peers
sys.path.insert(0, str(HERE.parent))

import redis  # noqa: E402
from celery import group  # noqa: E402

from workloads import _common as C  # noqa: E402
from workloads.celery_app import READY_KEY, REDIS_URL, inc  # noqa: E402

START_GUARD_S = 120  # not a timing check: only stops a worker that never starts blocking us
_worker: list[subprocess.Popen[bytes]] = []


def stop_worker() -> None:
    while _worker:
        proc = _worker.pop()
        proc.terminate()  # warm shutdown: the worker stops its pool processes itself
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def fresh_worker() -> None:
    """Stop the worker, flush the database, start a new worker and wait for it to consume."""
    stop_worker()
    db = redis.Redis.from_url(REDIS_URL)
    db.flushdb()
    cmd = [sys.executable, "-m", "celery", "-A", "workloads.celery_app", "worker"]
    cmd += ["--pool", "prefork", "--concurrency", "2", "--loglevel", "WARNING"]
    # Same process group as this script: the harness stops both if this one fails.
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    worker = subprocess.Popen(cmd, env=env, stdout=sys.stderr)
    _worker.append(worker)
    deadline = time.monotonic() + START_GUARD_S
    # Short waits, under redis-py's socket timeout, so that a worker that died is seen.
    while db.blpop([READY_KEY], timeout=1) is None:
        if worker.poll() is not None:
            raise SystemExit(f"the Celery worker exited with {worker.returncode} on start")
        if time.monotonic() > deadline:
            raise SystemExit(f"the Celery worker was not ready in {START_GUARD_S} s")
    fan_out(20)  # untimed: the worker's first tasks


def fan_out(n: int) -> int:
    return sum(group(inc.s(i) for i in range(n)).apply_async().get())


if __name__ == "__main__":
    try:
        C.main("celery", {"concurrent": fan_out}, fresh_worker)
    finally:
        stop_worker()
