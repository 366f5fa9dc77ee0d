"""The SQL of retention: delete whole runs (a top-level run, its child runs, their task runs,
history, logs, artifacts, questions and share links), find the runs a prune would remove, and
sum up what the store holds.

Kept on purpose when a run goes: the audit log (who did what stays answerable), the records
schedules, file triggers and webhooks keep of what they already started (deleting them would
start those runs again), and notifications (their own outbox). Result files are not deleted
here: the rows name them (``DeletedRuns.refs``) and whoever holds the result storage removes
them, except those of cached calls, which a cache entry or a later cache hit may still name.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, select

from legato.errors import UsageError
from legato.models import STOPPED_STATES, DeletedRuns, State, StorageSummary
from legato.store import schema as s

# A run may be deleted once it has stopped for good; a crashed run counts (nothing will
# resume it once it is this old, and `legato runs delete` is asked for by name).
DELETABLE = STOPPED_STATES
FAILED_LIKE = (State.FAILED, State.CRASHED)
CHUNK = 500  # ids per IN list
MAX_DELETE = 1000  # top-level runs per call


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), CHUNK):
        yield list(ids[start : start + CHUNK])


def _refs(stored: Any) -> list[str]:
    """Result files a stored form (or a parameters dict holding stored forms) names."""
    import json

    if stored is None:
        return []
    value = json.loads(stored) if isinstance(stored, str) else stored
    if isinstance(value, dict) and isinstance(value.get("ref"), str):
        return [value["ref"]]
    if isinstance(value, dict):
        from legato.results import STORED_PARAMETER

        return [
            ref
            for v in value.values()
            if isinstance(v, dict) and STORED_PARAMETER in v
            for ref in _refs(v[STORED_PARAMETER])
        ]
    return []


class RetentionSql:
    """Mixed into SqlStore: it provides ``_write`` and ``_read``."""

    _write: Any
    _read: Any
    dialect: str

    def delete_runs(self, run_ids: Sequence[str], *, skip_active: bool = False) -> DeletedRuns:
        """Delete top-level runs and everything under them, in one transaction. UsageError
        naming the first that is a child run, not stopped, or unknown (nothing deleted);
        with ``skip_active`` (a prune), runs no longer stopped, or gone, are left out
        instead. The rows are locked first (PostgreSQL): a retry, resume or rerun racing
        with the delete waits for it, then finds the run gone."""
        if len(run_ids) > MAX_DELETE:
            raise UsageError(f"delete at most {MAX_DELETE} runs at once")
        fr, tr = s.flow_runs.c, s.task_runs.c
        done = DeletedRuns()
        with self._write() as conn:
            q = select(fr.id, fr.state, fr.parent_task_run_id).where(fr.id.in_(list(run_ids)))
            if self.dialect == "postgresql":
                q = q.with_for_update()
            roots = {r.id: r for r in conn.execute(q)}
            if skip_active:
                run_ids = [
                    i
                    for i in run_ids
                    if i in roots
                    and roots[i].parent_task_run_id is None
                    and State(roots[i].state) in DELETABLE
                ]
                roots = {i: roots[i] for i in run_ids}
            for rid in run_ids:
                row = roots.get(rid)
                if row is None:
                    raise UsageError(f"no run has id {rid!r}")
                if row.parent_task_run_id is not None:
                    raise UsageError(
                        f"flow run {rid} is a child run: delete its top-level run instead"
                    )
                if State(row.state) not in DELETABLE:
                    raise UsageError(
                        f"flow run {rid} is {row.state}: cancel it first, or let it end"
                    )
            runs = list(roots)
            seen = set(runs)
            frontier = list(runs)
            while frontier:  # every child run, however deep
                children = [
                    c
                    for chunk in _chunks(frontier)
                    for (c,) in conn.execute(
                        select(tr.child_flow_run_id).where(
                            tr.flow_run_id.in_(chunk), tr.child_flow_run_id.is_not(None)
                        )
                    )
                ]
                frontier = [c for c in dict.fromkeys(children) if c not in seen]
                runs += frontier
                seen.update(frontier)
            for chunk in _chunks(runs):
                for result, params in conn.execute(
                    select(fr.result, fr.parameters).where(fr.id.in_(chunk))
                ):
                    done.refs += _refs(result) + _refs(params)
                task_ids = []
                for tid, result, cache_key in conn.execute(
                    select(tr.id, tr.result, tr.cache_key).where(tr.flow_run_id.in_(chunk))
                ):
                    task_ids.append(tid)
                    if cache_key is None:
                        done.refs += _refs(result)
                    elif result is not None and _refs(result):
                        done.kept_cached += 1
                done.task_runs += len(task_ids)
                for tids in _chunks(task_ids):
                    conn.execute(delete(s.state_history).where(s.state_history.c.run_id.in_(tids)))
                conn.execute(delete(s.state_history).where(s.state_history.c.run_id.in_(chunk)))
                done.logs += conn.execute(
                    delete(s.logs).where(s.logs.c.flow_run_id.in_(chunk))
                ).rowcount
                done.artifacts += conn.execute(
                    delete(s.artifacts).where(s.artifacts.c.flow_run_id.in_(chunk))
                ).rowcount
                conn.execute(delete(s.questions).where(s.questions.c.flow_run_id.in_(chunk)))
                shares = [
                    i
                    for (i,) in conn.execute(
                        select(s.shares.c.id).where(s.shares.c.flow_run_id.in_(chunk))
                    )
                ]
                if shares:
                    conn.execute(
                        delete(s.share_accesses).where(s.share_accesses.c.share_id.in_(shares))
                    )
                    conn.execute(delete(s.shares).where(s.shares.c.id.in_(shares)))
                conn.execute(delete(s.task_runs).where(tr.flow_run_id.in_(chunk)))
                conn.execute(delete(s.flow_runs).where(fr.id.in_(chunk)))
            done.runs = len(run_ids)
            done.child_runs = len(runs) - len(run_ids)
        return done

    def prunable_runs(
        self, before: float, *, keep_failed: bool = False, limit: int = 200
    ) -> list[str]:
        """Top-level runs that stopped before ``before`` (ended, or created if they never
        ended), oldest first: what `legato db prune` removes next."""
        fr = s.flow_runs.c
        states = [st.value for st in DELETABLE if not (keep_failed and st in FAILED_LIKE)]
        when = func.coalesce(fr.ended_at, fr.created_at)
        q = (
            select(fr.id)
            .where(fr.parent_task_run_id.is_(None), fr.state.in_(states), when < before)
            .order_by(when, fr.id)
            .limit(max(1, min(limit, MAX_DELETE)))
        )
        with self._read() as conn:
            return [r.id for r in conn.execute(q)]

    def count_prunable(self, before: float, *, keep_failed: bool = False) -> int:
        fr = s.flow_runs.c
        states = [st.value for st in DELETABLE if not (keep_failed and st in FAILED_LIKE)]
        when = func.coalesce(fr.ended_at, fr.created_at)
        q = select(func.count()).where(
            fr.parent_task_run_id.is_(None), fr.state.in_(states), when < before
        )
        with self._read() as conn:
            return int(conn.execute(q).scalar_one())

    def storage_summary(self) -> StorageSummary:
        """Rows per table, the oldest top-level run, and the database's size on disk."""
        tables = ("flow_runs", "task_runs", "state_history", "logs", "artifacts", "questions")
        out = StorageSummary()
        with self._read() as conn:
            for name in tables:
                out.rows[name] = int(
                    conn.execute(
                        select(func.count()).select_from(s.metadata.tables[name])
                    ).scalar_one()
                )
            fr = s.flow_runs.c
            out.oldest_run_at = conn.execute(
                select(func.min(fr.created_at)).where(fr.parent_task_run_id.is_(None))
            ).scalar_one()
            out.top_level_runs = int(
                conn.execute(
                    select(func.count()).where(fr.parent_task_run_id.is_(None))
                ).scalar_one()
            )
            out.database_bytes = _database_bytes(conn, self.dialect)
        return out


def _database_bytes(conn: Connection, dialect: str) -> int | None:
    from sqlalchemy import text

    if dialect == "postgresql":
        return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
    if dialect == "sqlite":
        pages = conn.execute(text("PRAGMA page_count")).scalar_one()
        size = conn.execute(text("PRAGMA page_size")).scalar_one()
        return int(pages) * int(size)
    return None
