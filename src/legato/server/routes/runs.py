"""Flow runs and task runs: the run store's batches, reads and waits."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Annotated, Any

from anyio import to_thread
from fastapi import HTTPException, Query, Request

from legato.audit import run_action
from legato.deployments import DEFAULT_POOL
from legato.models import Artifact, FlowRun, Role, State, StateChange, TaskRun
from legato.server.routes._common import (
    Audit,
    Caller,
    Id,
    Limit,
    MaxWait,
    ResultRoot,
    Routes,
    ScopeDep,
    StoreDep,
    check_results,
)
from legato.server.scope import check_pool
from legato.server.waits import long_poll
from legato.store import LogEntry
from legato.store import wire as w
from legato.store.operations import OPERATIONS
from legato.store.ops import (
    InsertFlowRun,
    InsertTaskRun,
    SupersedeTaskRun,
    UpdateFlowRun,
    UpdateTaskRun,
)
from legato.store.roles import AsyncWaits

routes = Routes()


@routes.op(OPERATIONS["apply_ops"])
def apply_ops(
    store: StoreDep, scope: ScopeDep, token: Caller, root: ResultRoot, body: w.OpsIn
) -> None:
    """Commit a batch of operations in one transaction (all or nothing)."""
    check_results(root, body)
    ops = [op.to_op() for op in body.ops]
    for op in ops:  # where a runner limited to pools may put work
        if isinstance(op, InsertFlowRun):
            check_pool(token, op.run.pool or DEFAULT_POOL, "start flow runs in")
        elif isinstance(op, InsertTaskRun) and op.run.pool is not None:
            check_pool(token, op.run.pool, "queue tasks for")
        elif isinstance(op, UpdateTaskRun | UpdateFlowRun) and "pool" in op.values:
            check_pool(token, op.values["pool"] or DEFAULT_POOL, "move runs to")
    # Only a claimed run's lease holder writes it; cancelling one is anyone's (a flow
    # cancels its remote tasks, which another token's worker holds).
    tasks = [
        op.id
        for op in ops
        if isinstance(op, UpdateTaskRun | SupersedeTaskRun) and not _is_cancel(op)
    ]
    flows = [op.id for op in ops if isinstance(op, UpdateFlowRun) and not _is_cancel(op)]
    scope.check_holds(token, tasks, flows)
    store.apply(ops, request_id=body.request_id)


CANCEL_VALUES = frozenset({"ended_at", "error"})


def _is_cancel(op: object) -> bool:
    return (
        isinstance(op, UpdateTaskRun | UpdateFlowRun)
        and op.state is State.CANCELLED
        and not set(op.values) - CANCEL_VALUES
    )


@routes.op(OPERATIONS["list_flow_runs"])
def list_flow_runs(
    store: StoreDep,
    flow: Annotated[str | None, Query(max_length=500)] = None,
    state: Annotated[list[State] | None, Query()] = None,
    parent_task_run_id: Annotated[str | None, Query(max_length=200)] = None,
    top_level: bool = False,
    limit: Limit = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> list[FlowRun]:
    """Flow runs, newest first."""
    return store.list_flow_runs(
        flow=flow,
        states=state,
        parent_task_run_id=parent_task_run_id,
        top_level=top_level,
        limit=limit,
        offset=offset,
    )


@routes.op(OPERATIONS["get_flow_run"])
def get_flow_run(store: StoreDep, run_id: Id) -> FlowRun:
    """One flow run by id or unique id prefix (404 if none)."""
    return store.get_flow_run(run_id)


@routes.op(OPERATIONS["transition_flow_run"])
def transition_flow_run(
    store: StoreDep,
    scope: ScopeDep,
    token: Caller,
    root: ResultRoot,
    run_id: Id,
    body: w.TransitionIn,
    audit: Audit,
) -> w.Changed:
    """Compare-and-set a flow run's state (cancel, resume, retry: each in the audit log).
    Operators may cancel; any other change is for runners, and for a claimed run only its
    lease holder's."""
    check_results(root, body)
    if not token.role.allows(Role.RUNNER):
        if body.state is not State.CANCELLED or set(body.values) - CANCEL_VALUES:
            raise HTTPException(
                403,
                detail=f"token {token.name!r} (role {token.role.value}) may only cancel runs "
                "(setting at most ended_at and error); any other change needs a runner token",
            )
    elif body.state is not State.CANCELLED:
        scope.check_holds(token, [], [run_id])
    if "pool" in body.values:
        check_pool(token, body.values["pool"] or DEFAULT_POOL, "move runs to")
    changed = store.transition_flow_run(
        run_id,
        body.state,
        allowed_from=body.allowed_from,
        values=body.values,
        message=body.message,
    )
    action = run_action(body.state, body.allowed_from, body.message)
    if changed and action is not None:
        audit(action, store.get_flow_run(run_id).id)
    return w.Changed(changed=changed)


@routes.op(OPERATIONS["get_task_runs"])
def get_task_runs(store: StoreDep, run_id: Id) -> list[TaskRun]:
    """Every task run of a flow run, in creation order."""
    return store.get_task_runs(run_id)


@routes.op(OPERATIONS["get_logs"])
def get_logs(
    store: StoreDep,
    run_id: Id,
    task_run_id: Annotated[str | None, Query(max_length=200)] = None,
    after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
    min_level: Annotated[int, Query(ge=0, le=1000)] = 0,
    limit: Limit = 1000,
) -> list[LogEntry]:
    """Log records of a flow run after ``after_id``, oldest first."""
    return store.get_logs(
        run_id, task_run_id=task_run_id, after_id=after_id, min_level=min_level, limit=limit
    )


@routes.op(OPERATIONS["get_artifacts"])
def get_artifacts(store: StoreDep, run_id: Id) -> list[Artifact]:
    """Artifacts of a flow run and its task runs, oldest first."""
    return store.get_artifacts(run_id)


@routes.op(OPERATIONS["get_history"])
def get_history(store: StoreDep, run_id: Id) -> list[StateChange]:
    """Every state change of a flow or task run, oldest first."""
    return store.get_history(run_id)


@routes.op(OPERATIONS["get_task_run"])
def get_task_run(store: StoreDep, task_run_id: Id) -> TaskRun:
    """One task run (404 if none)."""
    return store.get_task_run(task_run_id)


@routes.op(OPERATIONS["wait_for_task_runs"])
async def wait_for_task_runs(
    request: Request, store: StoreDep, max_wait: MaxWait, body: w.WaitTaskRunsIn
) -> list[TaskRun]:
    """Long-poll: wait (at most 30 s) until some of ``ids`` end; return those that did. A
    token holds at most LEGATO_MAX_WAITS_PER_TOKEN waits at once: 429 and Retry-After beyond."""
    timeout = min(body.timeout, max_wait)

    def waiting() -> Coroutine[Any, Any, list[TaskRun]]:
        if isinstance(store, AsyncWaits):
            return store.wait_for_task_runs_async(body.ids, timeout)
        # a store that can only block: one thread per wait
        return to_thread.run_sync(store.wait_for_task_runs, body.ids, timeout)

    return await long_poll(request, waiting, gone=[])


@routes.op(OPERATIONS["get_cached"])
def get_cached(
    store: StoreDep,
    key: Annotated[str, Query(min_length=1, max_length=1000)],
    now: Annotated[float, Query(allow_inf_nan=False)],
) -> w.Cached:
    """The cached result for a key, unless it expired by ``now``."""
    result = store.get_cached(key, now)
    return w.Cached(found=result is not None, result=result)
