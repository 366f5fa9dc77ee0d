"""The SQL of pool definitions (process, slurm, dask, kubernetes) and engine job ids.

A pool needs no definition to be used: a pool nobody defined is served by Legato's own
workers (``process``). ``legato pools create gpu --type slurm --option partition=gpu`` records
how an engine-backed pool is reached; ``legato worker start --pool gpu`` reads it and runs a
bridge to that engine instead of local child processes (see ``legato.engines``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import delete, insert, select, update

from legato.models import Pool, State
from legato.store import schema as s


def _pool(row: Any) -> Pool:
    return Pool(
        name=row.name,
        type=row.type,
        options={str(k): str(v) for k, v in json.loads(row.options).items()},
        created_at=row.created_at,
    )


class PoolSql:
    """Mixed into SqlStore: it provides ``_write`` and ``_read``."""

    _write: Any
    _read: Any

    def put_pool(self, pool: Pool) -> None:
        """Create or replace a pool definition (by name); ``created_at`` is kept on replace."""
        p = s.pools.c
        row = {
            "name": pool.name,
            "type": pool.type,
            "options": json.dumps(pool.options, sort_keys=True),
            "created_at": pool.created_at or time.time(),
        }
        with self._write() as conn:
            existing = conn.execute(select(p.created_at).where(p.name == pool.name)).first()
            if existing is None:
                conn.execute(insert(s.pools), [row])
            else:
                row["created_at"] = existing.created_at
                conn.execute(update(s.pools).where(p.name == pool.name).values(row))

    def get_pool(self, name: str) -> Pool | None:
        with self._read() as conn:
            row = conn.execute(select(s.pools).where(s.pools.c.name == name)).first()
        return None if row is None else _pool(row)

    def list_pools(self) -> list[Pool]:
        with self._read() as conn:
            return [_pool(r) for r in conn.execute(select(s.pools).order_by(s.pools.c.name))]

    def delete_pool(self, name: str) -> bool:
        with self._write() as conn:
            return bool(conn.execute(delete(s.pools).where(s.pools.c.name == name)).rowcount)

    def set_engine_job(self, task_run_id: str, attempt: int, job_id: str) -> bool:
        """Record the engine's id for the attempt running a task run (fenced like a result:
        False if that attempt no longer holds it). Written to the history too."""
        from legato.store.sql import _history

        c = s.task_runs.c
        now = time.time()
        with self._write() as conn:
            done = conn.execute(
                update(s.task_runs)
                .where(c.id == task_run_id, c.attempts == attempt, c.state == State.RUNNING.value)
                .values(engine_job_id=job_id)
            ).rowcount
            if done:
                conn.execute(
                    insert(s.state_history),
                    [_history(task_run_id, "task", State.RUNNING, now, f"engine job {job_id}")],
                )
        return bool(done)
