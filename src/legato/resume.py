"""Carry on a flow run that stopped: resumed after a crash or a pause, retried after a failure.

The flow function runs again from the top; calls already COMPLETED or CACHED return their
stored results without running; failed, cancelled and never-started calls run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from legato.engine import run_flow
from legato.errors import Cancelled, Paused, UsageError
from legato.models import RESUME_FROM, RETRY_FROM, FlowRun, State
from legato.owners import owner_alive
from legato.runtime import get_runtime

NOT_RUN = "not run: upstream"  # how a call that did not run for its upstream's sake fails
RESUMABLE = {State.PAUSED, State.CRASHED, State.RUNNING, State.PENDING, State.AWAITING_RETRY}
RETRYABLE = set(RETRY_FROM)


def root_of(store: Any, run: FlowRun) -> FlowRun:
    """The top-level run a child flow run belongs to (a child resumes through its parent)."""
    while run.parent_task_run_id:
        parent_call = store.get_task_run(run.parent_task_run_id)
        run = store.get_flow_run(parent_call.flow_run_id)
    return run


def continue_run(
    run_id: str,
    *,
    retry: bool = False,
    on_start: Callable[[FlowRun], None] | None = None,
) -> tuple[FlowRun, BaseException | None]:
    """Resume (or, with ``retry``, retry) a flow run in this process until it ends or pauses.
    ``on_start`` is called once the run may be carried on, before it runs (the CLI records
    the action in the audit log then, not hours later when the run ends).

    Returns the run as it ended and the exception that ended it, if any.
    """
    rt = get_runtime()
    run = root_of(rt.store, rt.store.get_flow_run(run_id))
    allowed = RETRYABLE if retry else RESUMABLE
    if run.state not in allowed:
        verb = "retry" if retry else "resume"
        hint = (
            " (use `legato runs retry` for a failed or cancelled run)"
            if not retry and run.state in RETRYABLE
            else " (use `legato runs resume` for a paused or crashed run)"
            if retry and run.state in RESUMABLE
            else ""
        )
        raise UsageError(f"flow run {run.id} is {run.state.value}: cannot {verb} it{hint}")
    if run.state is State.RUNNING and owner_alive(run.owner, run.id):
        raise UsageError(
            f"flow run {run.id} is still running in process {run.owner}; "
            "cancel it first, or wait for it to end"
        )
    if not run.source:
        raise UsageError(f"flow run {run.id} has no recorded source, so its code cannot be found")
    from legato.loader import load_flow

    flow = load_flow(run.source)
    params = flow.load_params(run.parameters, rt.results)
    if retry:
        _reopen_expired_questions(run)
    if on_start is not None:
        on_start(run)
    outcome: BaseException | None = None
    try:
        run_flow(flow, params, run_id=run.id, resume=not retry)
    except (Paused, Cancelled, Exception) as exc:
        outcome = exc
    rt.recorder.flush()
    return rt.store.get_flow_run(run.id), outcome


def pending_questions(run: FlowRun, store: Any = None) -> list[Any]:
    """Questions still waiting in a run and its child runs (in ``store``, default the
    runtime's)."""
    from legato.models import QuestionState

    store = store if store is not None else get_runtime().store
    found = []
    for current, _task_runs in _paused_tree(store, run):
        found.extend(store.list_questions(states=[QuestionState.PENDING], flow_run_id=current.id))
    return found


def _paused_tree(store: Any, run: FlowRun) -> Iterator[tuple[FlowRun, list[Any]]]:
    """``run`` and its PAUSED child runs, breadth first, children in the order they were
    called, each with its task runs (read once)."""
    runs = [run]
    for current in runs:
        task_runs = store.get_task_runs(current.id)
        yield current, task_runs
        runs.extend(
            store.get_flow_run(tr.child_flow_run_id)
            for tr in task_runs
            if tr.child_flow_run_id and tr.state is State.PAUSED
        )


def failed_while_waiting(store: Any, run: FlowRun, limit: int = 20) -> list[Any]:
    """Task runs already FAILED or CRASHED in a paused run and its paused child runs: an
    answer carries the run on, and it fails unless the flow handles them. Newest records
    only (a call replay superseded is not one)."""
    found: list[Any] = []
    for _current, task_runs in _paused_tree(store, run):
        for tr in task_runs:
            failed = tr.state in (State.FAILED, State.CRASHED) and not tr.child_flow_run_id
            if failed and tr.superseded_at is None and not (tr.error or "").startswith(NOT_RUN):
                found.append(tr)  # causes, not their echoes
        if len(found) >= limit:
            break
    return found[:limit]


def queue_answered_run(store: Any, flow_run_id: str) -> str | None:
    """Server mode: after an answer, put the paused top-level run back in its pool's queue so
    a worker carries it on (by replay). Returns the pool, or None if the run was not PAUSED
    (another question still waits in it, or someone resumed it already)."""
    from legato.deployments import DEFAULT_POOL

    run = root_of(store, store.get_flow_run(flow_run_id))
    pool = run.pool or DEFAULT_POOL
    if store.queue_flow_run(run.id, pool, allowed_from=[State.PAUSED]):
        return str(pool)
    return None


def queue_for_workers(store: Any, run_id: str, *, retry: bool) -> tuple[FlowRun, str]:
    """Server mode, an operator's retry or resume: put the stopped top-level run back in its
    pool's queue (``default`` for runs started outside a deployment), where a worker carries
    it on by replay. Returns the run and the pool; UsageError if it is not stopped."""
    from legato.deployments import DEFAULT_POOL

    root = root_of(store, store.get_flow_run(run_id))
    allowed = list(RETRY_FROM if retry else RESUME_FROM)
    pool = root.pool or DEFAULT_POOL
    if not store.queue_flow_run(root.id, pool, allowed_from=allowed):
        verb = "retried" if retry else "resumed"
        states = ", ".join(s.value for s in allowed)
        now = store.get_flow_run(root.id).state.value
        raise UsageError(f"flow run {root.id} is {now}: only a {states} run can be {verb}")
    return root, str(pool)


def _reopen_expired_questions(run: FlowRun) -> None:
    """On retry, a question that timed out with no default (and so failed the run) is asked
    again, with the same time to answer."""
    from legato.models import QuestionState, now

    store = get_runtime().store
    stack = [run]
    while stack:
        current = stack.pop()
        for q in store.list_questions(states=[QuestionState.EXPIRED], flow_run_id=current.id):
            if q.answer is None and q.default is None:
                window = (q.timeout_at or q.created_at) - q.created_at
                store.update_question(
                    q.id,
                    allowed_from=[QuestionState.EXPIRED],
                    state=QuestionState.PENDING,
                    values={
                        "answered_at": None,
                        "answered_by": None,
                        "created_at": now(),
                        "timeout_at": now() + window if window > 0 else None,
                    },
                )
        stack.extend(
            store.get_flow_run(tr.child_flow_run_id)
            for tr in store.get_task_runs(current.id)
            if tr.child_flow_run_id and not tr.state.is_success
        )
