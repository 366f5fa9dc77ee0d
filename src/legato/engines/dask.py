"""Dask pools: each task run attempt is one Dask task (a key) on a distributed cluster.

The pool names a scheduler (``address=tcp://host:8786``), or none: then the bridge starts a
``LocalCluster`` for you (``n_workers``, ``threads_per_worker``, worker ``resources``; on
127.0.0.1, dashboard off). Task resources map to Dask worker resources through
``resource_map`` (default ``gpu=GPU``), so ``resources={"gpu": 1}`` only lands on workers
started with ``--resources GPU=1``; names not in the map are not sent to Dask.

A task with a ``timeout`` runs in a child process on the Dask worker, killed at its timeout;
other tasks run in the worker's thread, as Dask tasks usually do. A worker lost mid-task
(``KilledWorker``, or a key the scheduler lost) is a CRASHED attempt, which we retry under
our own attempt fencing: set ``distributed.scheduler.allowed-failures`` to 0 on the scheduler
so that Dask hands a lost task back to us instead of rerunning it itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from typing import Any

from legato.engines import (
    COMMON_RESOURCES,
    UNLIMITED,
    EngineJob,
    EngineOutcome,
    parse_options,
    read_outcome,
)
from legato.errors import EngineError
from legato.models import Pool

log = logging.getLogger("legato.engines.dask")

MAX_GPUS = 4096  # a cap on what we count, never a real limit


def _pairs(text: str) -> dict[str, str]:
    """``GPU=1,MEMORY=64`` -> {"GPU": "1", "MEMORY": "64"}."""
    return parse_options([p for p in text.replace(" ", ",").split(",") if p])


class DaskBackend:
    kind = "dask"

    def __init__(self, pool: Pool) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise EngineError(
                "a dask pool needs the distributed package: pip install 'legato[dask]'"
            ) from None
        self.pool = pool
        options = pool.options
        self.resource_map = _pairs(options.get("resource_map", "gpu=GPU"))
        self.max_tasks = int(options["max_tasks"]) if options.get("max_tasks") else None
        self.cluster: Any = None
        address = options.get("address")
        try:
            if address:
                self.client = Client(address, timeout="30s")
            else:
                resources = {k: float(v) for k, v in _pairs(options.get("resources", "")).items()}
                self.cluster = LocalCluster(
                    n_workers=int(options.get("n_workers") or (os.cpu_count() or 1)),
                    threads_per_worker=int(options.get("threads_per_worker") or 1),
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    resources=resources or None,
                )
                self.client = Client(self.cluster)
        except OSError as exc:
            raise EngineError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        self._futures: dict[str, Any] = {}
        self._done: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def capacity(self) -> dict[str, float]:
        """Threads as ``cpu``; mapped resources from the workers' declared resources; every
        other resource unconstrained (Dask does not schedule on it)."""
        workers = self.client.scheduler_info(n_workers=-1).get("workers", {})
        capacity = {name: UNLIMITED for name in COMMON_RESOURCES}
        capacity["cpu"] = float(sum(w.get("nthreads", 1) for w in workers.values()) or 1)
        for ours, theirs in self.resource_map.items():
            total = sum(float(w.get("resources", {}).get(theirs, 0)) for w in workers.values())
            capacity[ours] = total
        if "gpu" in capacity:
            capacity["gpu"] = min(capacity["gpu"], MAX_GPUS)
        return capacity

    def concurrency(self) -> int:
        if self.max_tasks:
            return self.max_tasks
        threads = self.capacity()["cpu"]
        return max(64, int(threads) * 4)

    def submit(self, job: EngineJob) -> str:
        key = f"legato-{job.run_id}-{job.attempt}"
        resources = {
            self.resource_map[k]: v
            for k, v in job.resources.items()
            if k in self.resource_map and v > 0
        }
        done = threading.Event()
        future = self.client.submit(
            run_on_worker,
            job.payload,
            job.timeout,
            key=key,
            pure=False,
            resources=resources or None,
        )
        with self._lock:
            self._futures[key] = future
            self._done[key] = done
        future.add_done_callback(lambda _f: done.set())
        return key

    def wait(self, job_id: str, timeout: float) -> EngineOutcome | None:
        with self._lock:
            future = self._futures.get(job_id)
            done = self._done.get(job_id)
        if future is None or done is None:
            return EngineOutcome("crashed", detail=f"Dask key {job_id} is unknown to this bridge")
        if not done.wait(timeout):
            return None
        with self._lock:
            self._futures.pop(job_id, None)
            self._done.pop(job_id, None)
        return _outcome(job_id, future)

    def cancel(self, job_id: str) -> None:
        with self._lock:
            future = self._futures.pop(job_id, None)
            self._done.pop(job_id, None)
        if future is not None:
            with contextlib.suppress(Exception):
                future.cancel(force=True)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()


def _outcome(key: str, future: Any) -> EngineOutcome:
    from distributed import KilledWorker

    status = future.status
    if status == "finished":
        try:
            data = future.result()
        except Exception as exc:  # the result was lost between the worker and us
            return EngineOutcome("crashed", detail=f"Dask key {key}: result lost ({exc})")
        shipped = read_outcome(data["outcome"])
        return EngineOutcome(
            "done", shipped, f"Dask key {key} finished", data["stdout"], data["stderr"]
        )
    if status == "error":
        error = future.exception()
        if isinstance(error, KilledWorker):
            return EngineOutcome("crashed", detail=f"Dask key {key}: its worker was lost ({error})")
        return EngineOutcome("failed", detail=f"Dask key {key}: {type(error).__name__}: {error}")
    # cancelled or lost: the scheduler let go of the key (restart, lost client)
    return EngineOutcome("crashed", detail=f"Dask key {key} {status} by the scheduler")


def run_on_worker(payload: bytes, timeout: float | None) -> dict[str, Any]:
    """Runs on the Dask worker: the call, in this thread, or in a child process when it has
    a timeout (a thread cannot be stopped). Returns the pickled outcome and any output."""
    if timeout is not None:
        return _in_child(payload, timeout)
    return {"outcome": _in_thread(payload), "stdout": "", "stderr": ""}


def _in_thread(payload: bytes) -> bytes:
    import cloudpickle

    from legato import logs
    from legato._calls import unpack
    from legato.context import RunContext, current_run
    from legato.errors import CallNotLoadable

    records: list[object] = []
    artifacts: list[object] = []
    try:  # the flow's modules, importable by name (never drop the worker's own)
        fn, args, kwargs, context = unpack(payload, add_path=True)
    except CallNotLoadable as exc:
        return bytes(cloudpickle.dumps((None, exc, records, artifacts)))
    logs.install(context.pop("log_level", "INFO"))
    context.pop("capture_output", None)
    token = current_run.set(
        RunContext(emit_log=records.append, emit_artifact=artifacts.append, **context)
    )
    value, error = None, None
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:  # shipped back to the bridge, which decides on retries
        error = exc
    finally:
        current_run.reset(token)
    try:
        data: bytes = cloudpickle.dumps((value, error, records, artifacts))
    except Exception as exc:
        from legato.errors import SerializationError

        failure = SerializationError(f"the task's result cannot be sent back: {exc}")
        data = cloudpickle.dumps((None, failure, records, artifacts))
    return data


def _in_child(payload: bytes, timeout: float) -> dict[str, Any]:
    import cloudpickle

    from legato.errors import TaskTimeout

    with tempfile.TemporaryDirectory(prefix="legato-dask-") as tmp:
        call, out = os.path.join(tmp, "call.pkl"), os.path.join(tmp, "outcome.pkl")
        with open(call, "wb") as fh:
            fh.write(payload)
        with (
            open(os.path.join(tmp, "stdout"), "w+b") as so,
            open(os.path.join(tmp, "stderr"), "w+b") as se,
        ):
            proc = subprocess.Popen(
                [sys.executable, "-m", "legato.engines.job", call, out],
                stdout=so,
                stderr=se,
                start_new_session=True,
            )
            timed_out = False
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            so.seek(0)
            se.seek(0)
            stdout = so.read().decode("utf-8", "replace")
            stderr = se.read().decode("utf-8", "replace")
        if timed_out:
            error = TaskTimeout(f"the task ran past its timeout of {timeout:g} s and was stopped")
            data = cloudpickle.dumps((None, error, [], []))
        elif os.path.exists(out):
            with open(out, "rb") as fh:
                data = fh.read()
        else:
            raise RuntimeError(
                f"the task's process exited with status {proc.returncode} without a result; "
                f"stderr: {stderr[-2000:]}"
            )
    return {"outcome": data, "stdout": stdout, "stderr": stderr}
