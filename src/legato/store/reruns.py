"""The SQL of a forced rerun (``legato runs rerun``): supersede the planned calls and reopen
their runs in one transaction. What to rerun is decided in ``legato.rerun``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, insert, update

from legato.errors import UsageError
from legato.models import STOPPED_STATES, State
from legato.rerun import RERUN_FROM, Rerun, moved_key, plan_rerun
from legato.store import rows as rowmap
from legato.store import schema as s
from legato.store.notify import QUEUE_CHANNEL

_FINAL = [st.value for st in STOPPED_STATES]


class RerunSql:
    """Mixed into SqlStore: it provides ``_write`` and ``_signal``."""

    _write: Any
    _signal: Any

    def rerun_calls(
        self, task_run_ids: Sequence[str], *, by: str, pool: str | None = None
    ) -> Rerun:
        """Supersede the chosen calls and their downstream and reopen their runs (PENDING);
        with ``pool`` the top-level run is queued there for a worker to replay, else the
        caller replays it. UsageError if the run is not stopped, or changed meanwhile."""
        plan = plan_rerun(self, task_run_ids)
        root = plan.root
        now = time.time()
        first = ", ".join(repr(t.key) for t in plan.chosen[:3])
        more = f" and {len(plan.chosen) - 3} more" if len(plan.chosen) > 3 else ""
        why = f"rerun from {first}{more} by {by}"
        fr, tr = s.flow_runs.c, s.task_runs.c
        with self._write() as conn:
            # Compare-and-set on the top-level run's state: nothing replays it meanwhile.
            opened = conn.execute(
                update(s.flow_runs)
                .where(fr.id == root.id, fr.state.in_([st.value for st in RERUN_FROM]))
                .where(fr.state == root.state.value)
                .values(
                    state=State.PENDING.value,
                    ended_at=None,
                    error=None,
                    worker=None,
                    lease_expires_at=None,
                    queued_at=now if pool else None,
                    pool=pool if pool else fr.pool,
                    updated_at=now,
                )
            ).rowcount
            if not opened:
                raise UsageError(f"flow run {root.id} changed state meanwhile; try again")
            children = [r.id for r in plan.reopened if r.id != root.id]
            if children:
                for start in range(0, len(children), 500):  # bounded IN lists
                    conn.execute(
                        update(s.flow_runs)
                        .where(fr.id.in_(children[start : start + 500]), fr.state.in_(_FINAL))
                        .values(
                            state=State.PENDING.value, ended_at=None, error=None, updated_at=now
                        )
                    )
            moved = conn.execute(
                update(s.task_runs)
                .where(and_(tr.id == bindparam("_id"), tr.superseded_at.is_(None)))
                .values(superseded_at=now, rerun_by=by[:200], key=bindparam("_key")),
                [{"_id": t.id, "_key": moved_key(t)} for t in plan.superseded],
            ).rowcount
            if moved != len(plan.superseded):  # a call was superseded meanwhile: roll back
                raise UsageError(f"flow run {root.id} changed meanwhile; try again")
            history = [rowmap.history(root.id, "flow", State.PENDING, now, why)]
            history += [
                rowmap.history(i, "flow", State.PENDING, now, f"reopened: {why}") for i in children
            ]
            history += [
                rowmap.history(t.id, "task", t.state, now, f"superseded: {why}")
                for t in plan.superseded
            ]
            conn.execute(insert(s.state_history), history)
            if pool:
                self._signal(conn, QUEUE_CHANNEL, {pool})
        return plan.done(pool)
