"""A task call in flight in the engine: what runs, under which record, for which future."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from legato.futures import Future
from legato.models import TaskRun

if TYPE_CHECKING:
    from legato.api import Task


@dataclass(slots=True)
class TaskCall:
    task: Task[..., Any]
    run: TaskRun  # its record: state, attempts, key
    future: Future[Any]  # settled with the outcome
    args: tuple[Any, ...]  # as given: futures among them until the call starts
    kwargs: dict[str, Any]
    deps: list[Future[Any]]  # what it waits for: data futures and wait_for alike
    started: bool = False  # its first attempt is already recorded RUNNING (an inline call)

    @property
    def name(self) -> str:
        return self.task.name
