"""The Celery app of bench/workloads/celery_group.py: Redis as broker and result backend
(BENCH_CELERY_REDIS_URL), one trivial task, Celery's defaults otherwise."""

from __future__ import annotations

import os
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_ready

from workloads import _common as C

REDIS_URL = os.environ["BENCH_CELERY_REDIS_URL"]
READY_KEY = "bench:worker-ready"

app = Celery("bench", broker=REDIS_URL, backend=REDIS_URL)
inc = app.task(name="bench.inc")(C.inc)


@worker_ready.connect
def _say_ready(**_: Any) -> None:
    """Tell the benchmark the worker consumes: its queues are declared from here on."""
    redis.Redis.from_url(REDIS_URL).rpush(READY_KEY, os.getpid())
