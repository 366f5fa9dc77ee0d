"""A 500-task flow for the worker-kill chaos test; each execution leaves a line in a file."""

from __future__ import annotations

import os
import time

from legato import flow, task


@task(pool="cpu", retries=5)
def work(i: int) -> int:
    time.sleep(0.04)
    with open(os.environ["EFFECTS"], "a") as fh:  # one line per finished execution
        fh.write(f"{i}\n")
        fh.flush()
        os.fsync(fh.fileno())
    return i


@flow
def many(n: int = 500) -> int:
    return sum(f.result() for f in work.map(range(n)))
