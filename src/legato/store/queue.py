"""The SQL of remote pools: claims with leases and fencing, heartbeats, re-queues, workers.

A task run waiting for a pool's workers is PENDING with ``queued_at`` set. A claim moves it to
RUNNING for one worker, bumps ``attempts`` (the fencing token) and sets a lease; the holder
renews the lease by heartbeat; a result is accepted only from the attempt that holds it. A run
whose lease expired is CRASHED and, while attempts remain, queued again.
Claims use ``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite a write transaction is taken up
front (``BEGIN IMMEDIATE``), which serialises claimers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, text, tuple_, update

from legato.attempts import Outcome, RetryRule, decide
from legato.models import (
    FlowRun,
    Pool,
    State,
    TaskRun,
    Waiting,
    Worker,
    WorkerState,
    check_transition,
)
from legato.store import rows as rowmap
from legato.store import schema as s
from legato.store.fairness import BAND
from legato.store.notify import DONE_CHANNEL, QUEUE_CHANNEL, Notifier, pack
from legato.store.ops import Finish

# A queued task run: waiting for its first claim, or for its next attempt after a failure.
_QUEUED = (State.PENDING.value, State.AWAITING_RETRY.value)


def fits(needs: dict[str, float], free: dict[str, float]) -> bool:
    return all(free.get(k, 0.0) + 1e-9 >= v for k, v in needs.items() if v > 0)


_CLAIM = (
    update(s.task_runs)
    .where(s.task_runs.c.id == bindparam("_id"))
    .values(
        state=State.RUNNING.value,
        worker=bindparam("worker"),
        attempts=s.task_runs.c.attempts + 1,
        started_at=bindparam("now"),
        lease_expires_at=bindparam("lease"),
        queued_at=None,
        ended_at=None,
    )
)


class QueueSql:
    """Mixed into SqlStore: it provides ``_write``, ``_read``, ``dialect``, ``notifier``."""

    dialect: str
    notifier: Notifier
    # True when every write goes through this process (a server over SQLite): then local
    # notifications see every change and waits need not poll.
    sole_writer: bool = False
    _write: Any
    _read: Any
    _listen: Any
    _listener: Any

    # -- wake-ups -------------------------------------------------------------------------

    def _signal(self, conn: Connection, channel: str, payloads: set[str]) -> None:
        """Announce ``payloads`` on ``channel`` when this transaction commits."""
        if not payloads:
            return
        if self.dialect == "postgresql":
            conn.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                [{"channel": channel, "payload": p} for p in pack(sorted(payloads))],
            )
        else:
            pending = conn.info.setdefault("legato_signals", [])
            prefix = "queue:" if channel == QUEUE_CHANNEL else "done:"
            pending.extend(prefix + p for p in payloads)

    def _deliver_local(self, conn: Connection) -> None:
        """After a SQLite commit: wake waiters in this process."""
        self.notifier.notify_many(conn.info.pop("legato_signals", []))

    def queue_versions(self, pools: Sequence[str]) -> dict[str, int]:
        """Remember before looking for work; pass to ``wait_for_queue``."""
        self._listen()
        return self.notifier.versions([f"queue:{p}" for p in pools])

    def wait_for_queue(self, seen: dict[str, int], timeout: float) -> bool:
        """Block until work may have been queued in one of the pools, or ``timeout``.

        On SQLite another process's commit is not signalled here: the wait is capped at a
        short poll interval instead, unless this process is the only writer (the server).
        """
        return self.notifier.wait(seen, self._wait_cap(timeout))

    async def wait_for_queue_async(self, seen: dict[str, int], timeout: float) -> bool:
        """``wait_for_queue`` for an event loop (the server's long-polls): no thread waits."""
        await self._listen_async()
        return await self.notifier.wait_async(seen, self._wait_cap(timeout))

    def _wait_cap(self, timeout: float) -> float:
        """How long one wait may rely on this process's wake-ups alone."""
        if self.dialect == "sqlite" and not self.sole_writer:
            return min(timeout, 0.25)
        return timeout

    async def _listen_async(self) -> None:
        if self.dialect == "postgresql" and self._listener is None:
            await asyncio.to_thread(self._listen)  # connects: not on the event loop

    # -- claims -----------------------------------------------------------------------------

    def claim_task_runs(
        self,
        pool: str,
        worker: str,
        free: dict[str, float],
        *,
        limit: int = 1,
        lease_seconds: float = 30.0,
    ) -> list[TaskRun]:
        """Claim up to ``limit`` queued task runs of ``pool`` that fit in ``free``."""
        now = time.time()
        c = s.task_runs.c
        # Lowest claim key first: priority bands, fair between top-level runs (fairness.py).
        q = (
            select(c.id, c.resources, c.tags, c.flow_run_id)
            .where(c.pool == pool, c.state.in_(_QUEUED), c.queued_at <= now)
            .order_by(c.claim_key, c.id)
            .limit(max(limit * 4, 16))
        )
        if self.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True)
        left = dict(free)
        with self._write() as conn:
            limits = self._limits_in_force(conn)
            taken: dict[str, int] = {}  # claimed in this batch, per limit
            chosen = []
            for row in conn.execute(q):
                needs = json.loads(row.resources)
                keys: list[str] | None = []
                if limits:
                    keys = self._limits_reached(conn, limits, row.id, taken)
                if keys is None:
                    continue
                if fits(needs, left):
                    for k, v in needs.items():
                        left[k] = left.get(k, 0.0) - v
                    for key in keys:
                        taken[key] = taken.get(key, 0) + 1
                    chosen.append(row.id)
                    if len(chosen) == limit:
                        break
            if not chosen:
                return []
            conn.execute(
                _CLAIM,
                [
                    {"_id": i, "worker": worker, "now": now, "lease": now + lease_seconds}
                    for i in chosen
                ],
            )
            conn.execute(
                insert(s.state_history),
                [
                    rowmap.history(i, "task", State.RUNNING, now, f"claimed by {worker}")
                    for i in chosen
                ],
            )
            rows = conn.execute(select(s.task_runs).where(c.id.in_(chosen))).all()
        by_id = {r.id: rowmap.task_run(r) for r in rows}
        return [by_id[i] for i in chosen]

    # -- concurrency limits ---------------------------------------------------------------------

    def _limits_in_force(self, conn: Connection) -> dict[str, int]:
        rows = conn.execute(select(s.concurrency_limits)).all()
        if rows and self.dialect == "postgresql":
            # Counting then claiming must not interleave between claimers: one at a time
            # while limits exist (SQLite's write lock already serialises claims).
            conn.execute(text("SELECT pg_advisory_xact_lock(7436)"))
        return {r.name: r.limit for r in rows}

    def _limits_reached(
        self, conn: Connection, limits: dict[str, int], run_id: str, taken: dict[str, int]
    ) -> list[str] | None:
        """The limits that apply to this task run, or None if claiming it would pass one
        (counting RUNNING task runs plus those ``taken`` in this claim)."""
        from sqlalchemy import func

        c = s.task_runs.c
        f = s.flow_runs.c
        row = conn.execute(
            select(c.pool, c.tags, f.flow)
            .join(s.flow_runs, f.id == c.flow_run_id)
            .where(c.id == run_id)
        ).first()
        if row is None:
            return []
        running = c.state == State.RUNNING.value
        checks: list[tuple[str, Any]] = []
        if f"pool:{row.pool}" in limits:
            checks.append(
                (f"pool:{row.pool}", select(func.count()).where(running, c.pool == row.pool))
            )
        if f"flow:{row.flow}" in limits:
            checks.append(
                (
                    f"flow:{row.flow}",
                    select(func.count())
                    .select_from(s.task_runs.join(s.flow_runs, f.id == c.flow_run_id))
                    .where(running, f.flow == row.flow),
                )
            )
        for tag in json.loads(row.tags):
            if f"tag:{tag}" in limits:
                pattern = "%" + json.dumps(tag) + "%"
                checks.append(
                    (f"tag:{tag}", select(func.count()).where(running, c.tags.like(pattern)))
                )
        for key, q in checks:
            if int(conn.execute(q).scalar() or 0) + taken.get(key, 0) >= limits[key]:
                return None
        return [key for key, _ in checks]

    def claim_flow_runs(
        self, pool: str, worker: str, *, limit: int = 1, lease_seconds: float = 30.0
    ) -> list[FlowRun]:
        """Claim up to ``limit`` flow runs queued for ``pool`` (deployments, answered runs)."""
        now = time.time()
        c = s.flow_runs.c
        q = (
            select(c.id)
            .where(c.pool == pool, c.state.in_(_QUEUED), c.queued_at <= now)
            .order_by(c.priority.desc(), c.queued_at, c.id)
            .limit(limit)
        )
        if self.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True)
        with self._write() as conn:
            chosen = [r.id for r in conn.execute(q)]
            if not chosen:
                return []
            conn.execute(
                update(s.flow_runs)
                .where(c.id == bindparam("_id"))
                .values(
                    state=State.RUNNING.value,
                    worker=bindparam("worker"),
                    attempts=c.attempts + 1,
                    lease_expires_at=bindparam("lease"),
                    queued_at=None,
                    updated_at=bindparam("now"),
                    started_at=func.coalesce(c.started_at, bindparam("now")),
                ),
                [
                    {"_id": i, "worker": worker, "now": now, "lease": now + lease_seconds}
                    for i in chosen
                ],
            )
            conn.execute(
                insert(s.state_history),
                [
                    rowmap.history(i, "flow", State.RUNNING, now, f"claimed by {worker}")
                    for i in chosen
                ],
            )
            rows = conn.execute(select(s.flow_runs).where(c.id.in_(chosen))).all()
        return [rowmap.flow_run(r) for r in rows]

    def queue_flow_run(self, run_id: str, pool: str, *, allowed_from: Sequence[State]) -> bool:
        """Put an existing flow run (paused and answered, crashed...) back in ``pool``'s queue."""
        for old in allowed_from:
            check_transition(f"flow run {run_id}", old, State.PENDING)
        now = time.time()
        c = s.flow_runs.c
        with self._write() as conn:
            done = conn.execute(
                update(s.flow_runs)
                .where(c.id == run_id, c.state.in_([a.value for a in allowed_from]))
                .values(
                    state=State.PENDING.value,
                    pool=pool,
                    queued_at=now,
                    worker=None,
                    lease_expires_at=None,
                    updated_at=now,
                )
            ).rowcount
            if done:
                conn.execute(
                    insert(s.state_history),
                    [rowmap.history(run_id, "flow", State.PENDING, now, f"queued for pool {pool}")],
                )
                self._signal(conn, QUEUE_CHANNEL, {pool})
        return bool(done)

    def next_queued_at(self, pool: str) -> float | None:
        """When the earliest queued task run of ``pool`` becomes claimable (retries wait)."""
        from sqlalchemy import func

        found = []
        for table in (s.task_runs, s.flow_runs):
            c = table.c
            q = select(func.min(c.queued_at)).where(c.pool == pool, c.state.in_(_QUEUED))
            with self._read() as conn:
                value = conn.execute(q).scalar()
            if value is not None:
                found.append(float(value))
        return min(found) if found else None

    def heartbeat(
        self, worker_id: str, held: dict[str, int], lease_seconds: float, used: dict[str, float]
    ) -> list[str]:
        """Renew the leases a worker holds (task run id -> attempt); returns the ids it no
        longer holds (cancelled, or re-queued after its lease ran out): kill those."""
        now = time.time()
        # Claims record the worker's name on the runs it holds.
        name = select(s.workers.c.name).where(s.workers.c.id == worker_id).scalar_subquery()
        with self._write() as conn:
            conn.execute(
                update(s.workers)
                .where(s.workers.c.id == worker_id)
                .values(last_heartbeat=now, used=json.dumps(used))
            )
            renewed: set[str] = set()
            pairs = list(held.items())
            # One UPDATE per table for all held runs (a per-run UPDATE made heartbeats slow
            # enough to lose leases with hundreds of runs in flight).
            for table in (s.task_runs, s.flow_runs):
                t = table.c
                for start in range(0, len(pairs), 500):
                    chunk = pairs[start : start + 500]
                    stmt = (
                        update(table)
                        .where(
                            tuple_(t.id, t.attempts).in_(chunk),
                            t.state == State.RUNNING.value,
                            t.worker == name,  # only the runs this worker claimed
                        )
                        .values(lease_expires_at=now + lease_seconds)
                        .returning(t.id)
                    )
                    renewed.update(conn.execute(stmt).scalars())
            lost = [run_id for run_id in held if run_id not in renewed]
        return lost

    def finish_task_run(
        self,
        task_run_id: str,
        attempt: int,
        state: State,
        values: dict[str, Any],
        message: str | None = None,
    ) -> bool:
        """Record the outcome of a claimed attempt; False (nothing written) if that attempt no
        longer holds the run: a late result from a dead attempt is refused."""
        return self.finish_task_runs([Finish(task_run_id, attempt, state, values, message)])[0]

    def finish_task_runs(self, finishes: Sequence[Finish]) -> list[bool]:
        """``finish_task_run`` for many outcomes in one transaction (a worker's completions
        are grouped: one commit for all that ended meanwhile); one answer per outcome."""
        for f in finishes:
            check_transition(f"task run {f.task_run_id}", State.RUNNING, f.state)  # claimed
        if not finishes:
            return []
        now = time.time()
        c = s.task_runs.c
        ids = [f.task_run_id for f in finishes]
        held = select(c.id, c.attempts, c.pool).where(c.id.in_(ids), c.state == State.RUNNING.value)
        if self.dialect == "postgresql":
            held = held.with_for_update()  # nobody changes them between this look and the write
        with self._write() as conn:
            holders = {r.id: (r.attempts, r.pool) for r in conn.execute(held)}
            accepted = [holders.get(f.task_run_id, (None,))[0] == f.attempt for f in finishes]
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            history, pools, done = [], set(), set()
            for f, ok in zip(finishes, accepted, strict=True):
                if not ok:
                    continue
                row = rowmap.encode(f.values)
                row.update(state=f.state.value, lease_expires_at=None)
                if f.state in (State.PENDING, State.AWAITING_RETRY):  # handed back or retried
                    row.setdefault("queued_at", now)
                    row["worker"] = None
                    pools.add(holders[f.task_run_id][1])
                else:
                    done.add(f.task_run_id)
                row.update(_id=f.task_run_id, _attempt=f.attempt)
                groups.setdefault(tuple(sorted(row)), []).append(row)
                history.append(rowmap.history(f.task_run_id, "task", f.state, now, f.message))
            for columns, rows in groups.items():
                # One statement per shape of outcome; the WHERE stays as the race backstop.
                stmt = (
                    update(s.task_runs)
                    .where(
                        c.id == bindparam("_id"),
                        c.attempts == bindparam("_attempt"),
                        c.state == State.RUNNING.value,
                    )
                    .values({k: bindparam(k) for k in columns if not k.startswith("_")})
                )
                conn.execute(stmt, rows)
            if history:
                conn.execute(insert(s.state_history), history)
            self._signal(conn, QUEUE_CHANNEL, pools)
            self._signal(conn, DONE_CHANNEL, done)
        return accepted

    def requeue_expired(self, now: float | None = None) -> list[TaskRun]:
        """Task runs whose lease ran out: CRASHED, then queued again while attempts remain.
        Returns them as they are now."""
        now = time.time() if now is None else now
        c = s.task_runs.c
        q = select(c.id, c.attempts, c.max_attempts, c.pool).where(
            c.state == State.RUNNING.value, c.lease_expires_at < now
        )
        if self.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True)
        with self._write() as conn:
            rows = conn.execute(q).all()
            if not rows:
                return []
            history = []
            pools = set()
            done = []
            for r in rows:
                history.append(rowmap.history(r.id, "task", State.CRASHED, now, "lease expired"))
                # The attempt policy's budget; a lost lease is queued again at once (the store
                # does not know the task's retry delays).
                if decide(RetryRule(), r.attempts, r.max_attempts, Outcome.LOST).retry:
                    values = {"state": State.PENDING.value, "queued_at": now}
                    history.append(rowmap.history(r.id, "task", State.PENDING, now, "re-queued"))
                    pools.add(r.pool)
                else:
                    values = {"state": State.CRASHED.value, "ended_at": now}
                    values["error"] = "the worker running it was lost (lease expired)"
                    done.append(r.id)
                values.update(worker=None, lease_expires_at=None)
                conn.execute(update(s.task_runs).where(c.id == r.id).values(values))
            conn.execute(insert(s.state_history), history)
            self._signal(conn, QUEUE_CHANNEL, pools)
            self._signal(conn, DONE_CHANNEL, set(done))
            result = conn.execute(select(s.task_runs).where(c.id.in_([r.id for r in rows]))).all()
        return [rowmap.task_run(r) for r in result]

    def requeue_expired_flow_runs(self, now: float | None = None) -> list[str]:
        """Flow runs whose worker was lost: CRASHED, then queued again (they resume by replay,
        so finished work is not redone). Returns their ids."""
        now = time.time() if now is None else now
        c = s.flow_runs.c
        q = select(c.id, c.pool).where(c.state == State.RUNNING.value, c.lease_expires_at < now)
        if self.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True)
        with self._write() as conn:
            rows = conn.execute(q).all()
            if not rows:
                return []
            conn.execute(
                update(s.flow_runs)
                .where(c.id.in_([r.id for r in rows]))
                .values(
                    state=State.PENDING.value,
                    queued_at=now,
                    worker=None,
                    lease_expires_at=None,
                    updated_at=now,
                )
            )
            history = []
            for r in rows:
                history.append(rowmap.history(r.id, "flow", State.CRASHED, now, "lease expired"))
                history.append(rowmap.history(r.id, "flow", State.PENDING, now, "re-queued"))
            conn.execute(insert(s.state_history), history)
            self._signal(conn, QUEUE_CHANNEL, {r.pool for r in rows if r.pool})
        return [r.id for r in rows]

    # -- workers ------------------------------------------------------------------------------

    def register_worker(self, worker: Worker) -> None:
        row = worker.to_json()
        row["capacity"] = json.dumps(worker.capacity)
        row["used"] = json.dumps(worker.used)
        with self._write() as conn:
            conn.execute(insert(s.workers), [row])

    def worker_owner(self, worker_id: str) -> tuple[str | None, str] | None:
        """(the token that registered it, its pool), or None if no such worker. The server
        checks runner tokens against it; no HTTP route serves it."""
        w = s.workers.c
        with self._read() as conn:
            row = conn.execute(select(w.token_id, w.pool).where(w.id == worker_id)).first()
        return None if row is None else (row.token_id, row.pool)

    def worker_name_owners(self, name: str) -> set[str | None]:
        """The tokens that registered workers named ``name`` (claims name the worker, and a
        claimed run records that name). No HTTP route serves it."""
        w = s.workers.c
        with self._read() as conn:
            return set(conn.execute(select(w.token_id).where(w.name == name)).scalars())

    def lease_holders(
        self, task_run_ids: Sequence[str], flow_run_ids: Sequence[str] = ()
    ) -> dict[str, str]:
        """Run id -> the name of the worker holding its lease, for those of the ids claimed
        now (RUNNING with a worker). The server's check that only the runner holding a lease
        writes a claimed run; no HTTP route serves it."""
        out: dict[str, str] = {}
        with self._read() as conn:
            for table, ids in (
                (s.task_runs, list(task_run_ids)),
                (s.flow_runs, list(flow_run_ids)),
            ):
                c = table.c
                for start in range(0, len(ids), 500):
                    q = select(c.id, c.worker).where(
                        c.id.in_(ids[start : start + 500]),
                        c.state == State.RUNNING.value,
                        c.worker.is_not(None),
                    )
                    out.update({r.id: r.worker for r in conn.execute(q)})
        return out

    def set_worker_state(self, worker_id: str, state: str) -> None:
        with self._write() as conn:
            conn.execute(
                update(s.workers)
                .where(s.workers.c.id == worker_id)
                .values(state=state, last_heartbeat=time.time())
            )

    def list_workers(
        self, pool: str | None = None, *, include_offline: bool = False
    ) -> list[Worker]:
        w = s.workers.c
        q = select(s.workers).order_by(w.pool, w.name)
        if pool is not None:
            q = q.where(w.pool == pool)
        if not include_offline:
            q = q.where(w.state != WorkerState.OFFLINE.value)
        with self._read() as conn:
            return [rowmap.worker(r) for r in conn.execute(q)]

    def queue_depths(self) -> dict[str, int]:
        """Queued task runs per pool (Prometheus, `legato pools ls`)."""
        from sqlalchemy import func

        c = s.task_runs.c
        q = (
            select(c.pool, func.count())
            .where(c.state.in_(_QUEUED), c.queued_at.is_not(None))
            .group_by(c.pool)
        )
        f = s.flow_runs.c
        fq = (
            select(f.pool, func.count())
            .where(f.state.in_(_QUEUED), f.queued_at.is_not(None))
            .group_by(f.pool)
        )
        depths: dict[str, int] = {}
        with self._read() as conn:
            for pool, n in [*conn.execute(q), *conn.execute(fq)]:
                depths[str(pool)] = depths.get(str(pool), 0) + int(n)
        return depths

    def waiting(self, per_pool: int = 5) -> list[Waiting]:
        """Per pool, the flow runs with task runs queued there (or queued there themselves,
        a deployment's run waiting for a worker), in the order claims serve them (highest
        priority, then fair share by claim key), at most ``per_pool`` each."""
        c, f = s.task_runs.c, s.flow_runs.c
        queued = (
            select(
                c.pool,
                c.flow_run_id,
                func.max(c.priority),
                func.count(),
                func.min(c.queued_at),
                func.min(c.claim_key),
            )
            .where(c.state.in_(_QUEUED), c.queued_at.is_not(None), c.pool.is_not(None))
            .group_by(c.pool, c.flow_run_id)
        )
        busy = (
            select(c.pool, c.flow_run_id, func.count())
            .where(c.state == State.RUNNING.value, c.pool.is_not(None))
            .group_by(c.pool, c.flow_run_id)
        )
        runs = select(f.pool, f.id, f.flow, f.priority, f.queued_at).where(
            f.state.in_(_QUEUED), f.queued_at.is_not(None), f.pool.is_not(None)
        )
        with self._read() as conn:
            rows = conn.execute(queued).all()
            running = {(p, fr): int(n) for p, fr, n in conn.execute(busy)}
            whole = conn.execute(runs.order_by(f.priority.desc(), f.queued_at).limit(1000)).all()
            ids = list({r[1] for r in rows})
            names: dict[str, str] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                names.update(conn.execute(select(f.id, f.flow).where(f.id.in_(chunk))).all())
        found = [
            Waiting(
                pool=str(p),
                flow_run_id=fr,
                flow=names.get(fr, "?"),
                priority=int(pri),
                queued=int(n),
                running=running.get((p, fr), 0),
                since=float(since),
            )
            for p, fr, pri, n, since, _key in rows
        ]
        found += [
            Waiting(str(p), i, name, int(pri), 1, 0, float(at), kind="flow")
            for p, i, name, pri, at in whole
        ]
        # Claims serve queued flow runs first (by priority, then age), then task runs by
        # claim key: the lowest key a flow run holds is where it stands.
        keys = {(r[0], r[1]): r[5] for r in rows}

        def place(w: Waiting) -> tuple[str, int, float]:
            if w.kind == "flow":
                return w.pool, 0, -w.priority * BAND + w.since
            key = keys.get((w.pool, w.flow_run_id))
            return w.pool, 1, float("inf") if key is None else float(key)

        found.sort(key=place)
        out: list[Waiting] = []
        for w in found:
            if sum(1 for o in out if o.pool == w.pool) < per_pool:
                out.append(w)
        return out

    # -- pools: the definition a worker serves, engine job ids ----------------------------

    def get_pool(self, name: str) -> Pool | None:
        with self._read() as conn:
            row = conn.execute(select(s.pools).where(s.pools.c.name == name)).first()
        return None if row is None else rowmap.pool(row)

    def set_engine_job(self, task_run_id: str, attempt: int, job_id: str) -> bool:
        """Record the engine's id for the attempt running a task run (fenced like a result:
        False if that attempt no longer holds it). Written to the history too."""
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
                    [
                        rowmap.history(
                            task_run_id, "task", State.RUNNING, now, f"engine job {job_id}"
                        )
                    ],
                )
        return bool(done)
