"""A flow for the restart chaos tests: tasks on a remote pool, each leaving a line."""

from __future__ import annotations

import os
import time

from legato import flow, task


@task(pool="cpu", retries=3)
def step(i: int) -> int:
    time.sleep(0.1)
    with open(os.environ["EFFECTS"], "a") as fh:
        fh.write(f"{i}\n")
    return i


@flow
def steady(n: int = 40) -> int:
    return sum(f.result() for f in step.map(range(n)))
