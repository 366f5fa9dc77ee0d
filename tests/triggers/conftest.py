"""Shared set-up of the trigger tests: a file of flows, deployed on a fresh SQLite store, and
a clock the tests move by hand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from legato.deployments import deploy
from legato.loader import load_flow
from legato.models import Deployment
from legato.store import Store, open_store

FLOWS = """
from pydantic import BaseModel

from legato import ask, flow, get_logger, task


class Grade(BaseModel):
    ok: bool
    score: int
    note: str = ""


@flow
def process(path: str) -> str:
    return path


@flow
def process_batch(paths: list[str]) -> int:
    return len(paths)


@flow
def nightly(label: str = "night") -> str:
    return label


@flow
def from_hook(sample: str, threshold: float = 0.5) -> str:
    return f"{sample}:{threshold}"


@flow
def review(sample: str) -> bool:
    return ask(f"QC passed for {sample}?", schema=bool)


@flow
def grade(sample: str) -> dict:
    return ask(f"Grade {sample}", schema=Grade).model_dump()


@flow
def deadline(sample: str) -> bool:
    return ask(f"Keep {sample}?", schema=bool, timeout=60, default=True, notify="slack:#qc")


@flow
def broken(sample: str) -> None:
    raise ValueError(f"disk full while writing {sample}")


@task
def extract_keypoints(sample: str) -> None:
    get_logger().warning("frame 12 unreadable in %s", sample)
    raise RuntimeError(f"CUDA out of memory on {sample}")


@flow
def recording_fails(sample: str) -> None:
    extract_keypoints(sample)


@flow
def week_fails(n: int = 2) -> None:
    for f in recording_fails.map([f"S-{i}" for i in range(n)]):
        f.exception()  # each child's failure is seen; the week fails as a whole below
    raise RuntimeError("some recordings failed")
"""


class Clock:
    """``now()`` for the scheduler and the file watcher, moved by the test."""

    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def flows_file(tmp_path: Path) -> Path:
    path = tmp_path / "lab_flows.py"
    path.write_text(FLOWS)
    return path


@pytest.fixture
def store(legato_home: Path, tmp_path: Path) -> Iterator[Store]:
    made = open_store(f"sqlite:///{tmp_path / 'triggers.db'}")
    yield made
    made.close()


def deploy_flow(store: Store, flows_file: Path, flow: str, name: str | None = None) -> Deployment:
    return deploy(
        store,
        load_flow(f"{flows_file}:{flow}"),
        name=name or flow,
        pool="default",
        parameters={},
        tags=[],
    )
