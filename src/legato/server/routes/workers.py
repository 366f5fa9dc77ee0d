"""Workers: registration, state, heartbeats."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from legato.models import Worker
from legato.server.routes._common import Caller, Id, Routes, ScopeDep, StoreDep
from legato.store import wire as w
from legato.store.operations import OPERATIONS

routes = Routes()


@routes.op(OPERATIONS["list_workers"])
def list_workers(
    store: StoreDep,
    pool: Annotated[str | None, Query(max_length=200)] = None,
    include_offline: bool = False,
) -> list[Worker]:
    """Workers by pool and name."""
    return store.list_workers(pool, include_offline=include_offline)


@routes.op(OPERATIONS["register_worker"])
def register_worker(store: StoreDep, scope: ScopeDep, token: Caller, body: w.WorkerIn) -> None:
    """Record a worker that just started, bound to the token registering it."""
    scope.check_new_worker(token, body.worker.name, body.worker.pool)
    body.worker.token_id = token.id  # never what the body says
    store.register_worker(body.worker)


@routes.op(OPERATIONS["set_worker_state"])
def set_worker_state(
    store: StoreDep, scope: ScopeDep, token: Caller, worker_id: Id, body: w.WorkerStateIn
) -> None:
    """online | draining | offline."""
    scope.check_worker(token, worker_id)
    store.set_worker_state(worker_id, body.state)


@routes.op(OPERATIONS["heartbeat"])
def heartbeat(
    store: StoreDep, scope: ScopeDep, token: Caller, worker_id: Id, body: w.HeartbeatIn
) -> w.Lost:
    """Renew the leases a worker holds; ``lost`` lists the runs it must let go."""
    scope.check_worker(token, worker_id)
    lost = store.heartbeat(worker_id, body.held, body.lease_seconds, body.used)
    return w.Lost(lost=lost)
