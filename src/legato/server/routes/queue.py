"""Remote pools: claims with leases and fencing, outcomes, requeues, wake-ups."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Annotated, Any

from anyio import to_thread
from fastapi import HTTPException, Query, Request

from legato.audit import queue_action
from legato.deployments import DEFAULT_POOL
from legato.models import RESUME_FROM, RETRY_FROM, FlowRun, Role, TaskRun, Waiting
from legato.rerun import Rerun
from legato.server.routes._common import (
    Audit,
    Caller,
    Id,
    MaxWait,
    ResultRoot,
    Routes,
    ScopeDep,
    StoreDep,
    check_results,
)
from legato.server.scope import check_pool
from legato.server.waits import long_poll
from legato.store import Finish
from legato.store import wire as w
from legato.store.operations import OPERATIONS
from legato.store.roles import AsyncWaits

routes = Routes()


@routes.op(OPERATIONS["claim_task_runs"])
def claim_task_runs(
    store: StoreDep, scope: ScopeDep, token: Caller, body: w.ClaimIn
) -> list[TaskRun]:
    """Claim queued task runs of a pool that fit the worker's free resources."""
    check_pool(token, body.pool, "claim from")
    scope.check_worker_name(token, body.worker)
    return store.claim_task_runs(
        body.pool,
        body.worker,
        body.free,
        limit=body.limit,
        lease_seconds=body.lease_seconds,
    )


@routes.op(OPERATIONS["finish_task_run"])
def finish_task_run(
    store: StoreDep,
    scope: ScopeDep,
    token: Caller,
    root: ResultRoot,
    task_run_id: Id,
    body: w.FinishIn,
) -> w.Changed:
    """Record a claimed attempt's outcome; ``changed`` is false for a stale attempt."""
    check_results(root, body)
    scope.check_holds(token, [task_run_id])
    done = store.finish_task_run(task_run_id, body.attempt, body.state, body.values, body.message)
    return w.Changed(changed=done)


@routes.op(OPERATIONS["finish_task_runs"])
def finish_task_runs(
    store: StoreDep, scope: ScopeDep, token: Caller, root: ResultRoot, body: w.FinishManyIn
) -> w.ChangedMany:
    """Many claimed attempts' outcomes in one transaction; one ``changed`` for each, false
    for a stale attempt."""
    check_results(root, body)
    scope.check_holds(token, [f.task_run_id for f in body.finishes])
    finishes = [
        Finish(f.task_run_id, f.attempt, f.state, f.values, f.message) for f in body.finishes
    ]
    return w.ChangedMany(changed=store.finish_task_runs(finishes))


@routes.op(OPERATIONS["requeue_expired"])
def requeue_expired(store: StoreDep, token: Caller, body: w.RequeueIn) -> list[TaskRun]:
    """CRASHED for every expired lease, queued again while attempts remain. Expired by the
    server's clock: only an admin may name another time (a runner could otherwise expire
    every lease in every pool)."""
    return store.requeue_expired(body.now if token.role is Role.ADMIN else None)


@routes.op(OPERATIONS["waiting"])
def waiting(store: StoreDep, per_pool: Annotated[int, Query(ge=1, le=100)] = 5) -> list[Waiting]:
    """Per pool, the flow runs with task runs queued there, in the order claims serve them
    (queued flow runs first, then by claim key: priority, then fair share)."""
    return store.waiting(per_pool)


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
async def wait_for_queue(
    request: Request, store: StoreDep, max_wait: MaxWait, body: w.WaitQueueIn
) -> w.Woke:
    """Long-poll: wait (at most 30 s) until work may have been queued in the pools. A token
    holds at most LEGATO_MAX_WAITS_PER_TOKEN waits at once: 429 and Retry-After beyond."""
    timeout = min(body.timeout, max_wait)

    def waiting() -> Coroutine[Any, Any, bool]:
        if isinstance(store, AsyncWaits):
            return store.wait_for_queue_async(body.seen, timeout)
        # a store that can only block: one thread per wait
        return to_thread.run_sync(store.wait_for_queue, body.seen, timeout)

    return w.Woke(woke=await long_poll(request, waiting, gone=False))


@routes.op(OPERATIONS["claim_flow_runs"])
def claim_flow_runs(
    store: StoreDep, scope: ScopeDep, token: Caller, body: w.FlowClaimIn
) -> list[FlowRun]:
    """Claim flow runs queued for a pool (deployment runs, answered paused runs)."""
    check_pool(token, body.pool, "claim from")
    scope.check_worker_name(token, body.worker)
    return store.claim_flow_runs(
        body.pool, body.worker, limit=body.limit, lease_seconds=body.lease_seconds
    )


@routes.op(OPERATIONS["queue_flow_run"])
def queue_flow_run(
    store: StoreDep,
    scope: ScopeDep,
    token: Caller,
    run_id: Id,
    body: w.QueueFlowRunIn,
    audit: Audit,
) -> w.Changed:
    """Queue an existing flow run for a pool (compare-and-set on its state). Operators queue
    runs that stopped (resume, retry) for their own pool; handing a running run back is for
    its lease holder."""
    check_pool(token, body.pool, "queue work for")
    stopped = {*RETRY_FROM, *RESUME_FROM}
    if not token.role.allows(Role.RUNNER):
        own = store.get_flow_run(run_id).pool or DEFAULT_POOL
        if not set(body.allowed_from) <= stopped or body.pool != own:
            raise HTTPException(
                403,
                detail=f"token {token.name!r} (role {token.role.value}) may queue only "
                f"paused, failed, cancelled or crashed runs, for their own pool ({own})",
            )
    elif not set(body.allowed_from) <= stopped:
        scope.check_holds(token, [], [run_id])
    changed = store.queue_flow_run(run_id, body.pool, allowed_from=body.allowed_from)
    action = queue_action(body.allowed_from)
    if changed and action is not None:
        audit(action, store.get_flow_run(run_id).id, {"pool": body.pool})
    return w.Changed(changed=changed)


@routes.op(OPERATIONS["rerun_calls"])
def rerun_calls(store: StoreDep, token: Caller, body: w.RerunIn, audit: Audit) -> Rerun:
    """Rerun chosen calls of a stopped run and every call downstream of them: they are
    superseded, and the top-level run is queued for its own pool, where a worker replays
    it. Recorded in the audit log as the token's rerun."""
    from legato.rerun import plan_rerun

    root = plan_rerun(store, body.task_run_ids).root
    pool = root.pool or DEFAULT_POOL
    check_pool(token, pool, "queue work for")
    done = store.rerun_calls(body.task_run_ids, by=token.name, pool=pool)
    audit("run.rerun", done.root, done.detail())
    return done


@routes.op(OPERATIONS["requeue_expired_flow_runs"])
def requeue_expired_flow_runs(store: StoreDep, token: Caller, body: w.RequeueIn) -> w.Ids:
    """Flow runs whose lease expired (by the server's clock, as above): CRASHED, then
    queued again."""
    now = body.now if token.role is Role.ADMIN else None
    return w.Ids(ids=store.requeue_expired_flow_runs(now))


@routes.op(OPERATIONS["set_engine_job"])
def set_engine_job(
    store: StoreDep, scope: ScopeDep, token: Caller, task_run_id: Id, body: w.EngineJobIn
) -> w.Changed:
    """Record the engine job id of a claimed attempt (fenced by the attempt number)."""
    scope.check_holds(token, [task_run_id])
    return w.Changed(changed=store.set_engine_job(task_run_id, body.attempt, body.job_id))
