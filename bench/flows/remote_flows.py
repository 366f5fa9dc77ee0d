"""Flows for bench/remote.py: trivial tasks on a remote pool."""

from __future__ import annotations

from legato import flow, task


@task(pool="bench")
def inc(x: int) -> int:
    return x + 1


@flow
def fan_out(n: int) -> int:
    return sum(f.result() for f in inc.map(range(n)))


@flow
def chain(n: int) -> int:
    x = inc.submit(0)
    for _ in range(n - 1):
        x = inc.submit(x)  # each call depends on the one before
    return int(x.result())
