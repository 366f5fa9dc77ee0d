"""A week of recordings whose every call writes a line to the file in LEDGER (a side effect
the rerun tests count). Loaded by path: only the standard library and legato here."""

from __future__ import annotations

import os

from legato import flow, task


def _note(line: str) -> None:
    with open(os.environ["LEDGER"], "a", encoding="utf-8") as f:
        f.write(line + "\n")


@task
def load(i: int) -> int:
    _note(f"load {i}")
    return i


@task
def extract(i: int) -> int:
    _note(f"extract {i}")
    return i * 10


@task
def qc(value: int) -> tuple[int, str]:
    _note(f"qc {value}")
    return value, "ok"  # a tuple is no JSON: stored as a file in the result storage


@task
def summary(values: list[int]) -> int:
    _note("summary")
    return sum(values)


@flow
def recording(i: int) -> int:
    return qc.submit(extract.submit(load.submit(i))).result()[0]


@flow
def week(n: int = 3) -> int:
    return summary(recording.map(range(n)))
