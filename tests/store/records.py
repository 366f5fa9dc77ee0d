"""Records the store contract suites build (the same on every backend)."""

from __future__ import annotations

from typing import Any

from legato.models import FlowRun, LogRecord, State, TaskRun, new_id
from legato.store import Store

T0 = 1_800_000_000.0


def flow_run(**values: Any) -> FlowRun:
    fields: dict[str, Any] = {
        "id": new_id(),
        "flow": "etl",
        "state": State.RUNNING,
        "parameters": {"path": "/data/ü.csv", "n": 3, "nested": {"a": [1, 2.5, None, True]}},
        "tags": ["nightly", "gpu"],
        "created_at": T0,
        "started_at": T0,
        "source": "pipelines.etl:etl",
    }
    fields.update(values)
    return FlowRun(**fields)


def task_run(flow_run_id: str, key: str, **values: Any) -> TaskRun:
    fields: dict[str, Any] = {
        "id": new_id(),
        "flow_run_id": flow_run_id,
        "task": key.split(":")[0],
        "key": key,
        "state": State.PENDING,
        "created_at": T0 + 1,
    }
    fields.update(values)
    return TaskRun(**fields)


def log(
    flow_run_id: str, message: str, level: int = 20, task_run_id: str | None = None
) -> LogRecord:
    return LogRecord(flow_run_id, task_run_id, T0 + 2, level, "legato.run.etl", message)


def states(store: Store, run_id: str) -> list[State]:
    return [h.state for h in store.get_history(run_id)]
