"""The reads behind the dashboard: filtered pages of runs, a run's task runs, the items x steps
matrix of a mapping run, a log tail, what each worker holds.

Every read is bounded: pages have a limit, filters use indexed columns where they can, and
the widest read (the matrix) is bounded by the size of one parent run. Served only by the
server over SqlStore, so these are not part of the Store protocol.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, func, or_, select

from legato.models import FlowRun, LogRecord, Question, QuestionState, State, TaskRun
from legato.store import rows as rowmap
from legato.store import schema as s
from legato.store.ops import LogEntry

# Columns of a task run that a page shows: not the result or the payload, which can be big.
_TASK_COLUMNS = [
    c
    for c in s.task_runs.c
    if c.name not in ("result", "payload", "resources", "tags", "cache_key")
]


@dataclass(slots=True)
class RunFilter:
    """What the runs page asks for; empty fields filter nothing."""

    flow: str | None = None
    states: Sequence[State] = ()
    tag: str | None = None
    since: float | None = None
    until: float | None = None
    text: str | None = None
    top_level: bool = True


@dataclass(slots=True)
class ItemRow:
    """One item of a mapping run: its child flow run and the state of each step."""

    key: str
    run_id: str
    state: State
    label: str
    steps: dict[str, State] = field(default_factory=dict)


@dataclass(slots=True)
class ItemMatrix:
    steps: list[str]
    items: list[ItemRow]
    counts: dict[str, dict[str, int]]  # step -> state -> items
    run_counts: dict[str, int]  # child flow run state -> items


@dataclass(slots=True)
class Holding:
    """A run a worker holds now."""

    worker: str
    kind: str  # "task" | "flow"
    run_id: str
    flow_run_id: str
    name: str
    started_at: float | None


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _label(parameters: str, key: str) -> str:
    """What names an item: its first parameter's value (a recording's path), else its key."""
    try:
        params = json.loads(parameters)
    except ValueError:
        return key
    if isinstance(params, dict) and params:
        value = next(iter(params.values()))
        text = value if isinstance(value, str) else json.dumps(value)
        return text if len(text) <= 60 else "..." + text[-57:]  # a path's end names it
    return key


class ViewsSql:
    """Mixed into SqlStore: it provides ``_read``."""

    _read: Any

    def _filtered(self, q: Select[Any], f: RunFilter) -> Select[Any]:
        c = s.flow_runs.c
        if f.top_level:
            q = q.where(c.parent_task_run_id.is_(None))
        if f.flow:
            q = q.where(c.flow == f.flow)
        if f.states:
            q = q.where(c.state.in_([st.value for st in f.states]))
        if f.since is not None:
            q = q.where(c.created_at >= f.since)
        if f.until is not None:
            q = q.where(c.created_at < f.until)
        if f.tag:
            q = q.where(c.tags.like(_like(json.dumps(f.tag)), escape="\\"))
        if f.text:
            pattern = _like(f.text)
            q = q.where(
                or_(
                    c.id.startswith(f.text, autoescape=True),
                    c.flow.like(pattern, escape="\\"),
                    c.parameters.like(pattern, escape="\\"),
                    c.error.like(pattern, escape="\\"),
                )
            )
        return q

    def search_flow_runs(
        self, f: RunFilter, *, limit: int = 50, offset: int = 0
    ) -> tuple[list[FlowRun], int]:
        """A page of flow runs matching ``f``, newest first, and how many match in all."""
        c = s.flow_runs.c
        page = self._filtered(select(s.flow_runs), f)
        page = page.order_by(c.created_at.desc(), c.id.desc()).limit(limit).offset(offset)
        count = self._filtered(select(func.count()).select_from(s.flow_runs), f)
        with self._read() as conn:
            runs = [rowmap.flow_run(r) for r in conn.execute(page)]
            total = int(conn.execute(count).scalar_one())
        return runs, total

    def flow_names(self, limit: int = 500) -> list[str]:
        """Distinct flow names (for the filter), by name."""
        c = s.flow_runs.c
        q = select(c.flow).distinct().order_by(c.flow).limit(limit)
        with self._read() as conn:
            return [str(name) for (name,) in conn.execute(q)]

    def flow_runs_by_ids(self, ids: Sequence[str]) -> dict[str, FlowRun]:
        out: dict[str, FlowRun] = {}
        unique = list(dict.fromkeys(ids))
        with self._read() as conn:
            for i in range(0, len(unique), 500):
                q = select(s.flow_runs).where(s.flow_runs.c.id.in_(unique[i : i + 500]))
                out.update((r.id, rowmap.flow_run(r)) for r in conn.execute(q))
        return out

    def task_runs_of(self, flow_run_id: str, *, limit: int = 5000) -> list[TaskRun]:
        """A flow run's task runs in creation order, without results or payloads."""
        c = s.task_runs.c
        q = (
            select(*_TASK_COLUMNS)
            .where(c.flow_run_id == flow_run_id)
            .order_by(c.created_at, c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return [rowmap.task_run(r) for r in conn.execute(q)]

    def log_tail(
        self,
        flow_run_id: str,
        *,
        task_run_id: str | None = None,
        min_level: int = 0,
        limit: int = 500,
    ) -> list[LogEntry]:
        """The newest ``limit`` log records of a run, oldest first."""
        c = s.logs.c
        q = select(s.logs).where(c.flow_run_id == flow_run_id)
        if task_run_id:
            q = q.where(c.task_run_id == task_run_id)
        if min_level:
            q = q.where(c.level >= min_level)
        q = q.order_by(c.id.desc()).limit(limit)
        with self._read() as conn:
            rows = conn.execute(q).all()
        return [
            LogEntry(
                r.id, LogRecord(r.flow_run_id, r.task_run_id, r.at, r.level, r.logger, r.message)
            )
            for r in reversed(rows)
        ]

    def item_matrix(self, parent_id: str) -> ItemMatrix:
        """The child flow runs a run mapped (its items) x the tasks each ran (its steps)."""
        t, fr = s.task_runs.c, s.flow_runs.c
        children = (
            select(t.key, t.child_flow_run_id, fr.state, fr.parameters)
            .join(s.flow_runs, fr.id == t.child_flow_run_id)
            .where(t.flow_run_id == parent_id, t.child_flow_run_id.is_not(None))
            .order_by(t.created_at, t.id)
        )
        child_ids = (
            select(t.child_flow_run_id)
            .where(t.flow_run_id == parent_id, t.child_flow_run_id.is_not(None))
            .scalar_subquery()
        )
        step_q = (
            select(t.flow_run_id, t.task, t.state)
            .where(t.flow_run_id.in_(child_ids))
            .order_by(t.created_at, t.id)
        )
        with self._read() as conn:
            items = {
                r.child_flow_run_id: ItemRow(
                    r.key, r.child_flow_run_id, State(r.state), _label(r.parameters, r.key)
                )
                for r in conn.execute(children)
            }
            cells = conn.execute(step_q).all()
        steps: dict[str, None] = {}
        for run_id, task, state in cells:
            steps.setdefault(task)
            item = items.get(run_id)
            if item is not None:
                item.steps[task] = State(state)  # the newest call of a step wins
        counts: dict[str, dict[str, int]] = {step: {} for step in steps}
        run_counts: dict[str, int] = {}
        for item in items.values():
            run_counts[item.state.value] = run_counts.get(item.state.value, 0) + 1
            for step, state in item.steps.items():
                by_state = counts[step]
                by_state[state.value] = by_state.get(state.value, 0) + 1
        return ItemMatrix(list(steps), list(items.values()), counts, run_counts)

    def holdings(self) -> list[Holding]:
        """Task runs and flow runs RUNNING on a worker now, by worker."""
        t, fr = s.task_runs.c, s.flow_runs.c
        running = State.RUNNING.value
        tq = select(t.worker, t.id, t.flow_run_id, t.key, t.started_at).where(
            t.state == running, t.worker.is_not(None)
        )
        fq = select(fr.worker, fr.id, fr.flow, fr.started_at).where(
            fr.state == running, fr.worker.is_not(None)
        )
        with self._read() as conn:
            out = [
                Holding(r.worker, "task", r.id, r.flow_run_id, r.key, r.started_at)
                for r in conn.execute(tq.limit(5000))
            ]
            out += [
                Holding(r.worker, "flow", r.id, r.id, r.flow, r.started_at)
                for r in conn.execute(fq.limit(5000))
            ]
        return sorted(out, key=lambda h: (h.worker, h.started_at or 0.0))

    def running_per_pool(self) -> dict[str, int]:
        """Task runs RUNNING on each pool's workers."""
        t = s.task_runs.c
        q = (
            select(t.pool, func.count())
            .where(t.state == State.RUNNING.value, t.pool.is_not(None))
            .group_by(t.pool)
        )
        with self._read() as conn:
            return {str(pool): int(n) for pool, n in conn.execute(q)}

    def recent_answers(self, limit: int = 20) -> list[Question]:
        """Questions answered or expired, newest answer first."""
        c = s.questions.c
        q = (
            select(s.questions)
            .where(c.state != QuestionState.PENDING.value)
            .order_by(c.answered_at.desc())
            .limit(limit)
        )
        with self._read() as conn:
            return [rowmap.question(r) for r in conn.execute(q)]
