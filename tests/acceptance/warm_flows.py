"""Flows for test_warm_workers: which process ran each task run."""

from __future__ import annotations

import os

from legato import flow, task


@task(pool="cpu")
def light(i: int) -> int:
    return os.getpid()


@task(pool="cpu", isolation="process")
def isolated(i: int) -> int:
    return os.getpid()


@task(pool="cpu", retries=1)
def crashes_once(marker: str) -> int:
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(9)  # the process dies under the task: a crash, not an exception
    return os.getpid()


@flow
def where(n: int, marker: str) -> dict[str, list[int]]:
    return {
        "light": [f.result() for f in light.map(range(n))],
        "isolated": [f.result() for f in isolated.map(range(5))],
        "crashed_then": [crashes_once(marker)],
        "after": [f.result() for f in light.map(range(n, 2 * n))],
    }
