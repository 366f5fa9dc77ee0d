"""Flows whose call order depends on data, for the replay chaos test.

Every task body appends what it was called with to a ledger (one JSON line, written with a
single ``os.write`` so a kill cannot tear it) and may kill its own process at a chosen point.
Everything is read from the environment when called, not at import: the test forks these
runs from interpreters that imported this module before the environment was set.
"""

from __future__ import annotations

import json
import os
import queue
from typing import Any

from legato import flow, task

_calls = 0  # task bodies started in this process


def expected_measure(item: str, arg: int) -> str:
    return f"{item}|{arg}|{item.upper()}{arg}"


def expected_summary(measured: str) -> str:
    return f"{measured}|sum|{measured[::-1]}"


def _body(task_name: str, inputs: str, out: str) -> str:
    """Ledger the call, crashing before or after it when this is the chosen call."""
    global _calls
    n = _calls
    _calls += 1
    crash_at = int(os.environ.get("CRASH_AT", "-1"))
    when = os.environ.get("CRASH_WHEN", "after")
    if n == crash_at and when == "before":
        os._exit(137)
    line = json.dumps({"task": task_name, "inputs": inputs, "execution": os.environ["EXECUTION"]})
    fd = os.open(os.environ["LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
    if n == crash_at:
        os._exit(137)  # after the side effect, before its result is recorded
    return out


@task
def measure(item: str, arg: int) -> str:
    return _body("measure", f"{item}|{arg}", expected_measure(item, arg))


@task
def summarize(measured: str) -> str:
    return _body("summarize", measured, expected_summary(measured))


def _items() -> list[str]:
    return [w for w in os.environ["ITEMS"].split(",") if w]


def _arg() -> int:
    return int(os.environ["ARG"])


@flow
def over_a_set() -> dict[str, str]:
    """Iterates a set: its order follows PYTHONHASHSEED, which differs between processes."""
    return {w: measure(w, _arg()) for w in set(_items())}


@flow
def over_a_dict() -> dict[str, str]:
    """Iterates a dict built in the order ORDER gives (say, a database query's rows)."""
    rows = {w: len(w) for w in os.environ["ORDER"].split(",")}
    futures = {w: measure.submit(w, _arg()) for w in rows}
    return {w: f.result() for w, f in futures.items()}


@flow
def as_completed() -> dict[str, str]:
    """Summarizes measurements in the order they finish."""
    done: queue.Queue[tuple[str, Any]] = queue.Queue()
    items = sorted(set(_items()))
    for w in items:
        measure.submit(w, _arg()).add_done_callback(lambda f, w=w: done.put((w, f)))
    out = {}
    for _ in items:
        w, fut = done.get()
        out[w] = summarize(fut.result())
    return out


@flow
def over_a_listing() -> dict[str, str]:
    """Maps over a directory listing, which may have gained files since the crash."""
    names = sorted(os.listdir(os.environ["LISTING"]))
    futures = measure.map(names, _arg())
    return {w: f.result() for w, f in zip(names, futures, strict=True)}
