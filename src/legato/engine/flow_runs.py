"""A flow run from start to end: opened (or reopened on resume and retry), its function run
under an engine, retried under the flow's ``retries``, and its outcome recorded."""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from legato.context import current_run
from legato.engine.core import ENGINE_LOGGER, FlowRunEngine
from legato.errors import Cancelled, LegatoError, Paused, UsageError, describe
from legato.models import FlowRun, LogRecord, State, TaskRun, new_id, now
from legato.owners import owner_id
from legato.store import InsertFlowRun, InsertLogs, UpdateFlowRun

if TYPE_CHECKING:
    from legato.api import Flow
    from legato.runtime import Runtime


def run_flow(
    flow: Flow[..., Any],
    params: dict[str, Any],
    *,
    run_id: str | None = None,
    resume: bool = False,
    parent: FlowRunEngine | None = None,
    parent_task_run_id: str | None = None,
    priority: int | None = None,
) -> tuple[Any, Any]:
    """Run (or resume) a flow run to its end; returns (value, stored form of the value).

    ``params`` must already be validated. ``priority``: a new run's (default its flow's; a
    child run gets its parent call's). Raises what the flow raised, ``Paused`` when it
    waits for an answer, ``Cancelled`` when cancelled.
    """
    from legato.runtime import get_runtime

    rt = parent.rt if parent is not None else get_runtime()
    run = _recorded(rt, run_id)
    if run is not None and run.state.is_success:
        return rt.results.decode(run.result), run.result
    records: list[TaskRun] = []
    replaying = run is not None  # a recorded run is resumed or retried: its calls replay
    if run is None:
        run = _start(rt, flow, params, run_id, parent_task_run_id, priority)
    else:
        records = _reopen(rt, run, resume, parent_task_run_id)
    attempt = 0
    while True:
        attempt += 1
        engine = FlowRunEngine(
            rt,
            flow,
            run,
            records,
            replaying=replaying,
            root_id=parent.root_id if parent is not None else None,
        )
        with _attached(rt, engine, parent, flow):
            try:
                value = flow.fn(**params)
                engine.settle()
                stored = rt.results.encode(value, what=f"result of flow {flow.name!r}")
            except BaseException as exc:
                if _retries_left(flow, engine, exc, attempt):
                    records = _retry(rt, run, engine, exc, attempt)
                    replaying = True
                    continue
                _record_end(rt, run, engine, exc)
                raise
        t = now()
        rt.recorder.commit(
            *engine.superseded(t),
            UpdateFlowRun(run.id, State.COMPLETED, t, {"result": stored, "ended_at": t}),
        )
        return value, stored


def _recorded(rt: Runtime, run_id: str | None) -> FlowRun | None:
    if run_id is None:
        return None
    try:
        return rt.store.get_flow_run(run_id)
    except LegatoError:
        return None  # a child flow run whose id was chosen before it was recorded


def _start(
    rt: Runtime,
    flow: Flow[..., Any],
    params: dict[str, Any],
    run_id: str | None,
    parent_task_run_id: str | None,
    priority: int | None,
) -> FlowRun:
    t = now()
    run = FlowRun(
        id=run_id or new_id(),
        flow=flow.name,
        state=State.RUNNING,
        parameters=flow.dump_params(params, rt.results),
        parent_task_run_id=parent_task_run_id,
        pool=flow.pool,
        tags=list(flow.tags),
        priority=flow.priority if priority is None else priority,
        created_at=t,
        started_at=t,
        source=flow.source,
        owner=owner_id(),
    )
    rt.recorder.commit(InsertFlowRun(run))
    return run


def _reopen(
    rt: Runtime, run: FlowRun, resume: bool, parent_task_run_id: str | None = None
) -> list[TaskRun]:
    """Take the recorded run over (resume or retry); returns its task runs to replay. A
    child run a forced rerun reopened moves under its parent's new call."""
    rt.recorder.flush()
    values: dict[str, Any] = {"ended_at": None, "error": None, "owner": owner_id()}
    if parent_task_run_id and parent_task_run_id != run.parent_task_run_id:
        values["parent_task_run_id"] = parent_task_run_id
    # Compare-and-set: of two processes resuming the same run, one wins.
    if not rt.store.transition_flow_run(
        run.id,
        State.RUNNING,
        allowed_from=[run.state],
        values=values,
        message="resumed" if resume else "retried",
    ):
        raise UsageError(f"flow run {run.id} changed state meanwhile; try again")
    return rt.store.get_task_runs(run.id)


@contextmanager
def _attached(
    rt: Runtime, engine: FlowRunEngine, parent: FlowRunEngine | None, flow: Flow[..., Any]
) -> Iterator[None]:
    """While the flow function runs: the engine is watched for cancellation (by the runtime,
    or its parent's engine), the flow's timeout is armed, and calls find it as current."""
    if parent is None:
        rt.watch(engine)
    else:
        parent.adopt(engine)
    timer = None
    if flow.timeout is not None:
        from legato.errors import FlowTimeout

        timeout = FlowTimeout(f"flow {flow.name!r} ran past its timeout of {flow.timeout:g} s")
        timer = threading.Timer(flow.timeout, engine.cancel, [timeout])
        timer.daemon = True
        timer.start()
    token = current_run.set(engine.context())
    try:
        yield
    finally:
        current_run.reset(token)
        if timer is not None:
            timer.cancel()
        if parent is None:
            rt.unwatch(engine)
        else:
            parent.disown(engine)


def _retries_left(
    flow: Flow[..., Any], engine: FlowRunEngine, exc: BaseException, attempt: int
) -> bool:
    """The flow raised an error (not a pause, cancellation or Ctrl-C) with retries left."""
    if not isinstance(exc, Exception) or isinstance(exc, Paused | Cancelled):
        return False
    return attempt <= flow.retries and not engine.cancelled.is_set()


def _retry(
    rt: Runtime, run: FlowRun, engine: FlowRunEngine, exc: BaseException, attempt: int
) -> list[TaskRun]:
    """The flow raised with retries left: record it, and return the calls to replay."""
    engine.settle_quietly()
    rt.recorder.commit(
        UpdateFlowRun(
            run.id,
            State.RUNNING,
            now(),
            {"error": describe(exc)},
            message=f"flow retry {attempt} after {describe(exc)}",
        )
    )
    return rt.store.get_task_runs(run.id)  # the commit above flushed the rest


def _record_end(rt: Runtime, run: FlowRun, engine: FlowRunEngine, exc: BaseException) -> None:
    """The flow function stopped with ``exc``: settle what it started and record why."""
    recorder = rt.recorder
    if isinstance(exc, Paused):
        engine.settle_quietly()  # what already started finishes and is recorded
        recorder.commit(UpdateFlowRun(run.id, State.PAUSED, now(), message=str(exc)))
        return
    if isinstance(exc, Cancelled | KeyboardInterrupt):
        engine.cancel()
        engine.settle_quietly()
        if isinstance(exc, Cancelled):
            recorder.commit(UpdateFlowRun(run.id, State.CANCELLED, now(), {"ended_at": now()}))
        else:  # the person stopped the process: the run can be resumed where it stopped
            message = "interrupted (Ctrl-C)"
            recorder.commit(UpdateFlowRun(run.id, State.CRASHED, now(), message=message))
        return
    if engine.cancelled.is_set():
        engine.settle_quietly()  # cancelled or timed out: processes were killed
    else:
        # The flow raised: what it already started finishes and is recorded, so a retry
        # replays it instead of redoing it. Nothing new starts.
        engine.stop_new_calls(exc)
        engine.settle_quietly()
    t = now()
    text = "".join(traceback.format_exception(exc)).rstrip()
    failed = LogRecord(run.id, None, t, logging.ERROR, ENGINE_LOGGER, f"flow run failed:\n{text}")
    recorder.record(InsertLogs([failed]))
    recorder.commit(UpdateFlowRun(run.id, State.FAILED, t, {"error": describe(exc), "ended_at": t}))
