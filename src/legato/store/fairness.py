"""Fair shares of a pool: the order in which claims take queued task runs.

Each queued task run gets a *claim key* when it is queued; claims take the lowest first (one
index scan, ``ix_task_runs_claim``). The key is start-time fair queueing over top-level runs:
a task run queued by run R gets ``max(V, last_R) + 1``, where ``V`` is the lowest key still
queued in the pool (the pool's present) and ``last_R`` the highest key R already has queued.
So R's own task runs keep their order, a run that queues 1,000 at once gets keys
``V+1 .. V+1000``, and a run queueing 5 later gets ``V'+1 .. V'+5`` from the present of that
moment: its calls go in among the flood's instead of after it. A week of 1,000 child runs is
one top-level run (``root_id``): it shares the pool as one user does.

Priorities are bands: the key is offset by ``-priority * BAND``, so a higher priority always
comes first, and within a band the order is fair. A task run requeued for a retry keeps its
key (it was fairly placed when first queued, and goes on ahead of what queued since).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from legato.models import State
from legato.store import schema as s

BAND = 1e12  # keys per priority level: far more task runs than a pool sees in its life
_QUEUED = (State.PENDING.value, State.AWAITING_RETRY.value)


def owner_of(row: dict[str, Any]) -> str:
    return str(row.get("root_id") or row.get("flow_run_id") or "")


def assign(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Set ``claim_key`` on each row being queued (a dict with ``pool``, ``priority``,
    ``root_id`` or ``flow_run_id``), in order, from what is queued now."""
    c = s.task_runs.c
    present: dict[tuple[str, int], float | None] = {}
    last: dict[tuple[str, int, str], float] = {}
    for row in rows:
        pool, priority, owner = row["pool"], int(row.get("priority") or 0), owner_of(row)
        band = (pool, priority)
        if band not in present:
            present[band] = conn.execute(
                select(func.min(c.claim_key)).where(
                    c.pool == pool, c.state.in_(_QUEUED), c.priority == priority
                )
            ).scalar_one()
        mine = (pool, priority, owner)
        if mine not in last:
            by = c.root_id == owner if row.get("root_id") else c.flow_run_id == owner
            found = conn.execute(
                select(func.max(c.claim_key)).where(
                    by, c.pool == pool, c.state.in_(_QUEUED), c.priority == priority
                )
            ).scalar_one()
            floor = -priority * BAND
            last[mine] = max(x for x in (found, present[band], floor) if x is not None)
        last[mine] += 1
        row["claim_key"] = last[mine]
