"""Remote pools: claims with leases and fencing, outcomes, requeues, wake-ups."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from legato.models import FlowRun, TaskRun
from legato.server.routes._common import Id, MaxWait, ResultRoot, Routes, StoreDep, check_results
from legato.store import wire as w
from legato.store.operations import OPERATIONS

routes = Routes()


@routes.op(OPERATIONS["claim_task_runs"])
def claim_task_runs(store: StoreDep, body: w.ClaimIn) -> list[TaskRun]:
    """Claim queued task runs of a pool that fit the worker's free resources."""
    return store.claim_task_runs(
        body.pool,
        body.worker,
        body.free,
        limit=body.limit,
        lease_seconds=body.lease_seconds,
    )


@routes.op(OPERATIONS["finish_task_run"])
def finish_task_run(
    store: StoreDep, root: ResultRoot, task_run_id: Id, body: w.FinishIn
) -> w.Changed:
    """Record a claimed attempt's outcome; ``changed`` is false for a stale attempt."""
    check_results(root, body)
    done = store.finish_task_run(task_run_id, body.attempt, body.state, body.values, body.message)
    return w.Changed(changed=done)


@routes.op(OPERATIONS["requeue_expired"])
def requeue_expired(store: StoreDep, body: w.RequeueIn) -> list[TaskRun]:
    """CRASHED for every expired lease, queued again while attempts remain."""
    return store.requeue_expired(body.now)


@routes.op(OPERATIONS["queue_depths"])
def queue_depths(
    store: StoreDep,
) -> dict[str, int]:
    """Queued task runs per pool."""
    return store.queue_depths()


@routes.op(OPERATIONS["queue_versions"])
def queue_versions(
    store: StoreDep,
    pool: Annotated[list[str], Query(max_length=1000)],
) -> dict[str, int]:
    """Wake-up counters of these pools, to pass to the wait below."""
    return store.queue_versions(pool)


@routes.op(OPERATIONS["next_queued_at"])
def next_queued_at(store: StoreDep, pool: Id) -> w.NextAt:
    """When the earliest queued task run of the pool becomes claimable (null if none)."""
    return w.NextAt(at=store.next_queued_at(pool))


@routes.op(OPERATIONS["wait_for_queue"])
def wait_for_queue(store: StoreDep, max_wait: MaxWait, body: w.WaitQueueIn) -> w.Woke:
    """Long-poll: wait (at most 30 s) until work may have been queued in the pools."""
    return w.Woke(woke=store.wait_for_queue(body.seen, min(body.timeout, max_wait)))


@routes.op(OPERATIONS["claim_flow_runs"])
def claim_flow_runs(store: StoreDep, body: w.FlowClaimIn) -> list[FlowRun]:
    """Claim flow runs queued for a pool (deployment runs, answered paused runs)."""
    return store.claim_flow_runs(
        body.pool, body.worker, limit=body.limit, lease_seconds=body.lease_seconds
    )


@routes.op(OPERATIONS["queue_flow_run"])
def queue_flow_run(store: StoreDep, run_id: Id, body: w.QueueFlowRunIn) -> w.Changed:
    """Queue an existing flow run for a pool (compare-and-set on its state)."""
    changed = store.queue_flow_run(run_id, body.pool, allowed_from=body.allowed_from)
    return w.Changed(changed=changed)


@routes.op(OPERATIONS["requeue_expired_flow_runs"])
def requeue_expired_flow_runs(store: StoreDep, body: w.RequeueIn) -> w.Ids:
    """Flow runs whose lease expired: CRASHED, then queued again."""
    return w.Ids(ids=store.requeue_expired_flow_runs(body.now))


@routes.op(OPERATIONS["set_engine_job"])
def set_engine_job(store: StoreDep, task_run_id: Id, body: w.EngineJobIn) -> w.Changed:
    """Record the engine job id of a claimed attempt (fenced by the attempt number)."""
    return w.Changed(changed=store.set_engine_job(task_run_id, body.attempt, body.job_id))
