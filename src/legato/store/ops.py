"""The operation records a run store applies in batches, and the records reads return.

Writes are small operation records: ``apply([...])`` commits a batch in one transaction (one
HTTP request for HttpStore), which is how the engine groups commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from legato.models import Artifact, FlowRun, LogRecord, Question, State, TaskRun

# The longest page one list call returns; the server refuses a longer one.
PAGE_MAX = 10_000


@dataclass(slots=True)
class Finish:
    """A claimed attempt's outcome, as a worker reports it (``finish_task_runs``): accepted
    only while attempt ``attempt`` still holds the run."""

    task_run_id: str
    attempt: int
    state: State
    values: dict[str, Any] = field(default_factory=dict)
    message: str | None = None


@dataclass(slots=True)
class InsertFlowRun:
    run: FlowRun
    message: str | None = None


@dataclass(slots=True)
class InsertTaskRun:
    run: TaskRun
    message: str | None = None


@dataclass(slots=True)
class UpdateFlowRun:
    """Move a flow run to ``state`` and set ``values`` (columns: result, error, started_at,
    ended_at, parameters, source); the change is written to the history."""

    id: str
    state: State
    at: float
    values: dict[str, Any] = field(default_factory=dict)
    message: str | None = None


@dataclass(slots=True)
class UpdateTaskRun:
    """Move a task run to ``state`` and set ``values`` (columns: attempts, result, error,
    started_at, ended_at, worker, cache_key, child_flow_run_id); written to the history."""

    id: str
    state: State
    at: float
    values: dict[str, Any] = field(default_factory=dict)
    message: str | None = None


@dataclass(slots=True)
class SupersedeTaskRun:
    """Mark a recorded call whose inputs changed on resume: its result is never served
    again. It keeps its state (no history row: nothing ran); ``key`` renames it when the
    new call takes over its explicit key."""

    id: str
    at: float
    key: str | None = None


@dataclass(slots=True)
class InsertLogs:
    records: list[LogRecord]


@dataclass(slots=True)
class InsertArtifact:
    artifact: Artifact


@dataclass(slots=True)
class PutCache:
    key: str
    task: str
    task_run_id: str
    result: Any
    created_at: float
    expires_at: float | None


@dataclass(slots=True)
class InsertQuestion:
    question: Question


Op = (
    InsertQuestion
    | InsertFlowRun
    | InsertTaskRun
    | UpdateFlowRun
    | UpdateTaskRun
    | SupersedeTaskRun
    | InsertLogs
    | InsertArtifact
    | PutCache
)


@dataclass(slots=True)
class LogEntry:
    id: int
    record: LogRecord
