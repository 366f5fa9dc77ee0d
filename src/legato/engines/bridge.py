"""Hand one claimed run to an engine and wait for its outcome (see ``WorkerProcess``).

The worker thread that claimed the run calls ``run_on_engine``: the call is pickled exactly
as for a local child process, submitted, its engine job id recorded on the task run
(fenced by the attempt), and waited for while the worker's heartbeats keep the lease. If the
lease is lost or the run cancelled (``cancelled`` is set), the engine job is cancelled.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from legato.engines import Backend, EngineCancelled, EngineJob, EngineLost, EngineOutcome
from legato.errors import Cancelled, EngineJobFailed, TaskTimeout
from legato.executors import ChildResult
from legato.models import FlowRun, LogRecord, TaskRun
from legato.store import InsertLogs, QueueStore

log = logging.getLogger("legato.engines")


def run_on_engine(
    backend: Backend,
    store: QueueStore,
    run: TaskRun | FlowRun,
    fn: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    context: dict[str, Any],
    timeout: float | None,
    resources: dict[str, float],
    cancelled: threading.Event,
) -> ChildResult:
    """Run ``fn(*args, **kwargs)`` as an engine job. Raises TaskTimeout, EngineJobFailed,
    EngineLost, EngineCancelled, or Cancelled (when ``cancelled`` was set)."""
    from legato._calls import pack

    payload = pack(fn, args, kwargs, context)
    name = run.task if isinstance(run, TaskRun) else run.flow
    job = EngineJob(run.id, run.attempts, name, payload, dict(resources), timeout)
    job_id = backend.submit(job)
    if isinstance(run, TaskRun):
        store.set_engine_job(run.id, run.attempts, f"{backend.kind}:{job_id}")
    log.info("%s %s attempt %d is %s job %s", name, run.id, run.attempts, backend.kind, job_id)
    outcome: EngineOutcome | None = None
    while outcome is None:
        if cancelled.is_set():
            backend.cancel(job_id)
            raise Cancelled()
        outcome = backend.wait(job_id, 0.25)
    flow_run_id = run.flow_run_id if isinstance(run, TaskRun) else run.id
    task_run_id = run.id if isinstance(run, TaskRun) else None
    streams = {"stdout": outcome.stdout, "stderr": outcome.stderr}
    if outcome.stdout or outcome.stderr:
        _ship_output(store, flow_run_id, task_run_id, f"{backend.kind} job {job_id}", streams)
    if outcome.status == "done" and outcome.outcome is not None:
        value, error, logs, artifacts = outcome.outcome
        return ChildResult(value, error, logs, artifacts)
    if outcome.status == "timeout":
        limit = f"{timeout:g} s" if timeout else "its time limit"
        raise TaskTimeout(f"stopped by {backend.kind} at {limit}: {outcome.detail}")
    if outcome.status == "cancelled":
        raise EngineCancelled(outcome.detail)
    if outcome.status == "crashed":
        raise EngineLost(outcome.detail)
    raise EngineJobFailed(outcome.detail)


def _ship_output(
    store: QueueStore, flow_run_id: str, task_run_id: str | None, job: str, streams: dict[str, str]
) -> None:
    """The job's stdout and stderr, into the run's log (one record per stream)."""
    now = time.time()
    records = [
        LogRecord(
            flow_run_id,
            task_run_id,
            now,
            logging.WARNING if stream == "stderr" else logging.INFO,
            f"legato.engine.{stream}",
            f"{job} {stream}:\n{text.rstrip()}",
        )
        for stream, text in streams.items()
        if text.strip()
    ]
    try:
        store.apply([InsertLogs(records)])
    except Exception as exc:  # the outcome matters more than its printout
        log.warning("could not store the output of %s: %s", job, exc)
