"""Flows for bench/engines.py: trivial tasks on a dask pool, one task on a slurm pool."""

from __future__ import annotations

import time

from legato import flow, task


@task(pool="dask")
def trivial(i: int) -> int:
    return i


@flow
def trivial_many(n: int) -> int:
    return sum(f.result() for f in trivial.map(range(n)))


@task(pool="hpc")
def started_at() -> float:
    return time.time()


@flow
def slurm_start() -> float:
    return started_at()
