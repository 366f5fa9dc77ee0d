"""Flows for test_worker_stalls: a task that takes a while, and tasks that hog the machine."""

from __future__ import annotations

import os
import time

from legato import flow, task


@task(pool="cpu", retries=3)
def takes_a_second(effects: str) -> str:
    with open(effects, "a") as fh:
        fh.write(f"start {os.getpid()}\n")
    time.sleep(1.0)
    return f"done by {os.getpid()}"


@flow
def one_slow(effects: str) -> str:
    return takes_a_second(effects)


def _hold_the_gil(seconds: float) -> None:
    """Long C-level calls that never let another thread of this process run."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sum(range(20_000_000))


def _spin(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    x = 0
    while time.monotonic() < deadline:
        x += 1


@task(pool="cpu")
def gil_hog(seconds: float) -> str:
    _hold_the_gil(seconds)
    return "gil"


@task(pool="cpu")
def cpu_hog(seconds: float) -> str:
    _spin(seconds)
    return "cpu"


@task(pool="cpu", isolation="process")
def gil_hog_isolated(seconds: float) -> str:
    _hold_the_gil(seconds)
    return "gil"


@task(pool="cpu", isolation="process")
def cpu_hog_isolated(seconds: float) -> str:
    _spin(seconds)
    return "cpu"


@flow
def hogs(seconds: float = 3.0) -> list[str]:
    futures = [
        t.submit(seconds) for t in (gil_hog, cpu_hog, gil_hog_isolated, cpu_hog_isolated)
    ] + [t.submit(seconds) for t in (cpu_hog, gil_hog)]
    return [f.result() for f in futures]
