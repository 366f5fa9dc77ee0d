"""The SQL behind the server's /metrics: run counts per state, recent task durations.

Both reads are bounded: counts group by an indexed column; durations come from the newest
task runs by primary key (ids are time-ordered), never from a scan of the whole table.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import func, select

from legato.store import schema as s


class StatsSql:
    """Mixed into SqlStore."""

    _read: Any

    def count_runs(self) -> dict[str, dict[str, int]]:
        """Flow runs and task runs per state: ``{"flow": {...}, "task": {...}}``."""
        out: dict[str, dict[str, int]] = {}
        with self._read() as conn:
            for kind, table in (("flow", s.flow_runs), ("task", s.task_runs)):
                q = select(table.c.state, func.count()).group_by(table.c.state)
                out[kind] = {str(state): int(n) for state, n in conn.execute(q)}
        return out

    def recent_task_durations(self, limit: int = 2000) -> list[tuple[str, str, float]]:
        """(task, state, seconds) of the task runs that ended among the newest ``limit``."""
        c = s.task_runs.c
        q = select(c.task, c.state, c.started_at, c.ended_at).order_by(c.id.desc()).limit(limit)
        with self._read() as conn:
            rows = conn.execute(q).all()
        out = []
        for r in rows:
            if r.started_at is not None and r.ended_at is not None:
                seconds = r.ended_at - r.started_at
                if math.isfinite(seconds):
                    out.append((str(r.task), str(r.state), max(0.0, float(seconds))))
        return out
