"""Flows the browser tests run against a live server (loaded by path by `legato run` and by
the worker, so only the standard library, legato and its pydantic here)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from pydantic import Field

from legato import artifact, ask, flow, get_logger, task


def _wait_for(gate: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} never appeared")
        time.sleep(0.05)


@task
def fetch(i: int) -> int:
    get_logger().info("fetched item %d", i)
    return i


@task
def hold(first: int, gate: str) -> int:
    get_logger().info("waiting for the gate")
    _wait_for(gate)
    get_logger().warning("gate opened")
    return first


@task
def report(total: int) -> int:
    artifact.markdown(f"# Report\n\nThe total is **{total}**.", title="summary")
    artifact.table([{"item": "a", "score": 1}, {"item": "b", "score": 2}], title="scores")
    artifact.link("https://example.org/report", title="full report")
    get_logger().info("reported %d", total)
    return total


@flow
def pipeline(n: int, gate: str) -> int:
    """fetch xN -> hold (waits for the gate file) -> report."""
    parts = [fetch.submit(i) for i in range(n)]
    total = hold.submit(parts[0], gate, wait_for=parts[1:])
    return report.submit(total).result()


@flow
def review(path: str) -> str:
    """Asks a person, then carries on."""
    fetch(1)
    ok = ask(f"Does {path} look right?", schema=bool)
    get_logger().info("answer: %s", ok)
    return "accepted" if ok else "rejected"


@task
def flaky(marker: str) -> str:
    if not Path(marker).exists():
        raise RuntimeError(f"{marker} is missing")
    return "ok"


@flow
def fragile(marker: str) -> str:
    """Fails until the marker file exists."""
    fetch(2)
    return flaky(marker)


@flow
def recording(path: str) -> str:
    fetch(3)
    flaky(path)
    return path


@flow
def weekly(paths: list[str]) -> None:
    """One child flow run per recording."""
    recording.map(paths)


def _note(ledger: str, line: str) -> None:
    with open(ledger, "a", encoding="utf-8") as f:
        f.write(line + "\n")


@task
def prepare(i: int, ledger: str) -> int:
    _note(ledger, f"prepare {i}")
    return i


@task
def extract(i: int, ledger: str) -> int:
    _note(ledger, f"extract {i}")
    return i * 10


@task
def check(value: int, ledger: str) -> int:
    _note(ledger, f"check {value}")
    return value


@task
def tally(values: list[int], ledger: str) -> int:
    _note(ledger, "tally")
    return sum(values)


@flow
def ledgered(i: int, ledger: str) -> int:
    """prepare -> extract -> check, each call a line in the ledger file."""
    return check.submit(extract.submit(prepare.submit(i, ledger), ledger), ledger).result()


@flow
def ledgered_week(n: int, ledger: str) -> int:
    """n recordings, then a tally that depends on all of them."""
    return tally(ledgered.map(range(n), ledger=ledger), ledger)


@flow
def calibrate(sample: str, frames: Annotated[int, Field(ge=1)] = 10) -> str:
    """A flow with typed parameters, for the deployment form."""
    fetch(frames)
    return f"{sample}:{frames}"
