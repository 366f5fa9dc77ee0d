"""How runs look on the terminal and in ``--json`` (stable field names, see DESIGN.md)."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from legato import timefmt
from legato.models import FlowRun, State, TaskRun

# Piped output is not cut to 80 columns: ids and errors stay whole for grep and scripts.
_WIDE = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
out = Console(highlight=False, soft_wrap=True, width=_WIDE)
err = Console(stderr=True, highlight=False, soft_wrap=True)

STATE_STYLE = {
    State.COMPLETED: "green",
    State.CACHED: "cyan",
    State.FAILED: "red",
    State.CRASHED: "red",
    State.CANCELLED: "magenta",
    State.RUNNING: "blue",
    State.PAUSED: "yellow",
    State.AWAITING_RETRY: "yellow",
    State.PENDING: "dim",
    State.SCHEDULED: "dim",
}


def iso(ts: float | None) -> str | None:
    return timefmt.iso(ts)


def short_time(ts: float | None) -> str:
    return timefmt.local_text(ts)


def duration(start: float | None, end: float | None) -> str:
    return timefmt.duration(start, end)


def styled(state: State) -> str:
    return f"[{STATE_STYLE.get(state, '')}]{state.value}[/]"


def styled_text(state: State) -> Text:
    """``styled`` as a Text, for a table cell."""
    return Text(state.value, style=STATE_STYLE.get(state, ""))


def add_row(table: Table, *cells: str | Text) -> None:
    """A table row whose plain strings are shown as they are, never read as Rich markup (a
    value such as ``[a.h5,b.h5]`` or an error quoting ``[0]`` must stay visible); styled
    cells come as Text."""
    table.add_row(*(Text(c) if isinstance(c, str) else c for c in cells))


def _result(stored: Any) -> tuple[Any, Any]:
    if isinstance(stored, dict) and "v" in stored:
        return stored["v"], None
    return None, stored


def task_run_json(tr: TaskRun) -> dict[str, Any]:
    value, ref = _result(tr.result)
    return {
        "id": tr.id,
        "task": tr.task,
        "key": tr.key,
        "state": tr.state.value,
        "attempts": tr.attempts,
        "pool": tr.pool,
        "worker": tr.worker,
        "started_at": iso(tr.started_at),
        "ended_at": iso(tr.ended_at),
        "error": tr.error,
        "depends_on": tr.depends_on,
        "resources": tr.resources,
        "tags": tr.tags,
        "cache_key": tr.cache_key,
        "result": value,
        "result_ref": ref,
        "child_flow_run_id": tr.child_flow_run_id,
        "created_at": iso(tr.created_at),
        "engine_job_id": tr.engine_job_id,
        "fingerprint": tr.fingerprint,
        # Set when a resume found this call's inputs changed: its result is not reused.
        "superseded_at": iso(tr.superseded_at),
        "rerun_by": tr.rerun_by,
        "priority": tr.priority,
    }


def flow_run_json(run: FlowRun, task_runs: list[TaskRun] | None = None) -> dict[str, Any]:
    value, ref = _result(run.result)
    data: dict[str, Any] = {
        "id": run.id,
        "flow": run.flow,
        "state": run.state.value,
        "parameters": run.parameters,
        "tags": run.tags,
        "pool": run.pool,
        "parent_task_run_id": run.parent_task_run_id,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "error": run.error,
        "result": value,
        "result_ref": ref,
        "source": run.source,
        "deployment": run.deployment,
        "version": run.version,
        "worker": run.worker,
        "attempts": run.attempts,
        "priority": run.priority,
    }
    if task_runs is not None:
        data["task_runs"] = [task_run_json(t) for t in task_runs]
    return data


def with_iso_times(data: dict[str, Any]) -> dict[str, Any]:
    """The same record with its epoch-second times (``*_at``, ``last_heartbeat``) as ISO 8601
    UTC strings, as every ``--json`` prints them."""
    return {
        k: iso(v)
        if (k.endswith("_at") or k == "last_heartbeat") and isinstance(v, int | float)
        else v
        for k, v in data.items()
    }


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def runs_table(runs: list[FlowRun]) -> Table:
    table = Table(box=None, pad_edge=False)
    for col in ("ID", "FLOW", "STATE", "STARTED", "DURATION", "PARAMETERS"):
        table.add_column(col, no_wrap=col != "PARAMETERS", overflow="fold")
    for r in runs:
        params = json.dumps(r.parameters)
        add_row(
            table,
            r.id,
            r.flow,
            styled_text(r.state),
            short_time(r.started_at or r.created_at),
            duration(r.started_at, r.ended_at),
            params if len(params) <= 60 else params[:57] + "...",
        )
    return table


def task_runs_table(task_runs: list[TaskRun]) -> Table:
    table = Table(box=None, pad_edge=False)
    for col in ("KEY", "STATE", "TRIES", "POOL", "WORKER", "DURATION", "ERROR"):
        table.add_column(col, overflow="fold")
    for t in task_runs:
        state = styled_text(t.state)
        if t.rerun_by is not None:
            state.append(f" (rerun by {t.rerun_by})", style="dim")
        elif t.superseded_at is not None:
            state.append(" (inputs changed on resume)", style="dim")
        add_row(
            table,
            t.key,
            state,
            str(t.attempts),
            t.pool or "-",
            (t.worker or "-") + (f" (job {t.engine_job_id})" if t.engine_job_id else ""),
            duration(t.started_at, t.ended_at) if t.started_at else "-",
            (t.error or "")[:200],
        )
    return table


def level_name(level: int) -> str:
    return logging.getLevelName(level)
