"""A worker: claims task runs queued for its pool and runs each in a child process.

Claims carry a lease that a heartbeat thread renews; the attempt number is the fencing token,
so a result from an attempt that lost its lease is refused by the store. A run the store says
this worker no longer holds (cancelled, or re-queued after a lost lease) has its process tree
killed. SIGTERM drains: no new claims; running work gets ``grace`` seconds, then what is left
is killed and handed back to the queue. GPU ids are handed out exclusively through
``CUDA_VISIBLE_DEVICES``.

With a ``backend`` (``legato.engines``: Slurm, Dask, Kubernetes) the same loop is a bridge:
each claimed run is handed to the engine instead of a child process, and the engine's
outcome is recorded under the same lease, fencing and retry rules.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from legato.attempts import Outcome, RetryRule, decide
from legato.engines import Backend, EngineCancelled, EngineLost
from legato.errors import Cancelled, EngineJobFailed, TaskTimeout
from legato.executors import ChildResult, LocalResources, run_in_child, run_warm
from legato.grouping import GroupCommit
from legato.models import FlowRun, State, TaskRun, Worker, WorkerState, new_id
from legato.results import ResultStorage
from legato.store import Finish, InsertArtifact, InsertLogs, Op
from legato.store import QueueStore as Store  # the worker's role of the store
from legato.warm_pool import WarmPool

log = logging.getLogger("legato.worker")


# Light task runs (a median under LIGHT_SECONDS over the last runs) are claimed PREFETCH per
# process: the next ones are at hand when one ends, and claims and outcomes go in batches.
LIGHT_SECONDS = 0.1
PREFETCH = 32


class RecentDurations:
    """How long this worker's last task runs took: light ones are claimed ahead."""

    def __init__(self, keep: int = 32) -> None:
        self._keep = keep
        self._seen: list[float] = []
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._seen.append(seconds)
            del self._seen[: -self._keep]

    def light(self) -> bool:
        with self._lock:
            seen = sorted(self._seen)
        return len(seen) >= 4 and seen[len(seen) // 2] < LIGHT_SECONDS


@dataclass
class Running:
    run: TaskRun | FlowRun
    needs: dict[str, float]
    gpus: list[int]
    cancelled: threading.Event = field(default_factory=threading.Event)
    done: Future[None] | None = None


class WorkerProcess:
    def __init__(
        self,
        store: Store,
        results: ResultStorage,
        *,
        pool: str,
        capacity: dict[str, float],
        name: str | None = None,
        concurrency: int | None = None,
        heartbeat: float = 5.0,
        grace: float = 30.0,
        backend: Backend | None = None,
        health_file: Path | None = None,
    ) -> None:
        self.store = store
        # Touched whenever the server took a heartbeat: `legato worker health` reads its age.
        self.health_file = health_file
        self.results = results
        self.pool = pool
        self.capacity = capacity
        self.name = name or f"{pool}@{socket.gethostname()}:{os.getpid()}"
        # Processes at once: as asked, or one per CPU. Without --concurrency, light task runs
        # are claimed ahead of the processes (see slots()).
        self.concurrency = concurrency or max(1, int(capacity.get("cpu", os.cpu_count() or 1)))
        self.adaptive = concurrency is None
        self.durations = RecentDurations()
        self.warm = WarmPool(self.concurrency) if backend is None else None
        # One thread per claimed run (it waits on a process or an engine), kept for the next.
        self._threads = ThreadPoolExecutor(
            max_workers=self.concurrency * PREFETCH, thread_name_prefix="legato-run"
        )
        self._outcomes: GroupCommit[tuple[Finish, list[Op]], bool] = GroupCommit(
            self._write_outcomes
        )
        self.heartbeat_every = heartbeat
        # A lease outlives one missed heartbeat; the sweep runs four times per interval, so a
        # dead worker's runs are back in the queue within two heartbeat intervals.
        self.lease = 1.5 * heartbeat
        self.grace = grace
        self.backend = backend
        self.id = new_id()
        self.resources = LocalResources(dict(capacity))
        self._running: dict[str, Running] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._draining = threading.Event()
        self._stopped = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve the pool until SIGTERM/SIGINT (then drain) or ``stop()``."""
        self.store.register_worker(
            Worker(
                self.id,
                self.name,
                self.pool,
                self.capacity,
                host=socket.gethostname(),
                pid=os.getpid(),
                started_at=time.time(),
                last_heartbeat=time.time(),
            )
        )
        self._healthy()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.drain())
            signal.signal(signal.SIGINT, lambda *_: self.drain())
        threads = [
            threading.Thread(target=self._heartbeats, name="legato-heartbeat", daemon=True),
            threading.Thread(target=self._watch_queue, name="legato-queue-watch", daemon=True),
        ]
        for t in threads:
            t.start()
        log.info("worker %s serving pool %s with %s", self.name, self.pool, self.capacity)
        try:
            self._loop()
        finally:
            self._stopped.set()
            if self.warm is not None:
                self.warm.close()
            self._threads.shutdown(wait=False)
            self.store.set_worker_state(self.id, WorkerState.OFFLINE)
            log.info("worker %s stopped", self.name)

    def drain(self) -> None:
        """No new claims; the claim loop records DRAINING and waits for what runs. Called from
        a signal handler too, so it only sets flags: a store call here could wait on a lock the
        interrupted thread holds (the HTTP client's pool, a database connection) forever."""
        self._draining.set()
        self._wake.set()

    def stop(self) -> None:
        self.drain()

    # -- the claim loop ----------------------------------------------------------------------------

    def _loop(self) -> None:
        next_sweep = 0.0
        while not self._draining.is_set():
            now = time.monotonic()
            if now >= next_sweep:
                self._sweep()
                next_sweep = now + self.heartbeat_every / 4
            self._wake.clear()
            claimed = self._claim()
            if claimed:
                continue
            timeout = self.heartbeat_every / 4
            if claimed == 0:  # the queue looked empty: wake when the next retry is due
                due = self.store.next_queued_at(self.pool)
                if due is not None:
                    timeout = max(0.0, min(timeout, due - time.time()))
            self._wake.wait(timeout)
        log.info("draining: no new claims; %d running", len(self._running))
        try:
            self.store.set_worker_state(self.id, WorkerState.DRAINING)
        except Exception as exc:  # the server is away: draining goes on regardless
            log.warning("could not record the worker as draining: %s", exc)
        self._drain_running()

    def _sweep(self) -> None:
        try:
            for tr in self.store.requeue_expired():
                log.warning("task run %s lost its worker: %s", tr.key, tr.state.value)
            for run_id in self.store.requeue_expired_flow_runs():
                log.warning("flow run %s lost its worker: queued again", run_id)
        except Exception as exc:
            log.warning("could not re-queue expired leases: %s", exc)

    def slots(self) -> int:
        """Claimed runs this worker holds at most: its processes, times PREFETCH while its
        task runs are light and no --concurrency was given."""
        if self.adaptive and self.backend is None and self.durations.light():
            return self.concurrency * PREFETCH
        return self.concurrency

    def _claim(self) -> int | None:
        """Claim what fits; the number claimed, or None when not worth a round trip yet
        (every process is busy and fewer than half the slots are free: batch later)."""
        limit = self.slots()
        with self._lock:
            running = len(self._running)
            free = {k: v - self.resources._used.get(k, 0.0) for k, v in self.capacity.items()}
        slots = limit - running
        if slots <= 0 or (running >= self.concurrency and slots < limit // 2):
            return None
        try:
            flows = self.store.claim_flow_runs(
                self.pool, self.name, limit=slots, lease_seconds=self.lease
            )
            claimed: list[TaskRun | FlowRun] = list(flows)
            if slots > len(flows):
                claimed.extend(
                    self.store.claim_task_runs(
                        self.pool,
                        self.name,
                        free,
                        limit=slots - len(flows),
                        lease_seconds=self.lease,
                    )
                )
        except Exception as exc:
            log.warning("claim failed (%s); retrying", exc)
            time.sleep(min(self.heartbeat_every, 1.0))
            return 0
        for run in claimed:
            self._start(run)
        return len(claimed)

    def _watch_queue(self) -> None:
        """Wake the claim loop when work is queued for the pool (LISTEN/NOTIFY or long-poll)."""
        while not self._draining.is_set():
            try:
                seen = self.store.queue_versions([self.pool])
                if self.store.wait_for_queue(seen, timeout=30.0):
                    self._wake.set()
            except Exception:  # the server is away: the claim loop still polls meanwhile
                self._draining.wait(1.0)

    # -- running one task run -------------------------------------------------------------------

    def _start(self, tr: TaskRun | FlowRun) -> None:
        needs = {k: float(v) for k, v in getattr(tr, "resources", {}).items()}
        never = threading.Event()
        gpus = self.resources.acquire(needs, never) if needs else []
        item = Running(tr, needs, gpus)
        with self._lock:
            self._running[tr.id] = item
        item.done = self._threads.submit(self._execute, item)

    def _execute(self, item: Running) -> None:
        tr = item.run
        try:
            if isinstance(tr, FlowRun):
                self._execute_flow_run(item, tr)
            else:
                self._execute_claimed(item)
        except Exception as exc:  # never leave a claim without an outcome
            log.exception("run %s: worker error", tr.id)
            if isinstance(tr, TaskRun):
                error = {"error": f"worker error: {exc}", "ended_at": time.time()}
                self._finish(tr, State.FAILED, error)
        finally:
            self.resources.release(item.needs, item.gpus)
            with self._lock:
                self._running.pop(tr.id, None)
            self._wake.set()

    def _execute_flow_run(self, item: Running, run: FlowRun) -> None:
        """A whole flow run in a child process: its own tasks run there, or are queued for
        their pools; its outcome is recorded by the engine in that process."""
        from legato.deployments import run_claimed_flow
        from legato.errors import ProcessCrashed

        context = {
            "flow_run_id": run.id,
            "task_run_id": None,
            "flow_name": run.flow,
            "task_name": None,
            "log_level": "INFO",
            "capture_output": False,
        }
        try:
            out = self._run_body(item, run_claimed_flow, (run.id,), {}, context, None, None)
        except (Cancelled, EngineLost):
            if self._draining.is_set() or not item.cancelled.is_set():
                self.store.queue_flow_run(run.id, self.pool, allowed_from=[State.RUNNING])
            return
        except EngineCancelled as exc:
            self.store.transition_flow_run(
                run.id,
                State.CANCELLED,
                allowed_from=[State.RUNNING],
                values={"error": str(exc), "ended_at": time.time()},
            )
            return
        except (ProcessCrashed, EngineJobFailed, TaskTimeout) as exc:
            self.store.transition_flow_run(
                run.id,
                State.FAILED,
                allowed_from=[State.RUNNING],
                values={"error": f"the flow's process died: {exc}", "ended_at": time.time()},
            )
            return
        if out.error is not None:
            log.info("flow run %s ended: %s", run.id, out.error)

    def _execute_claimed(self, item: Running) -> None:
        from legato.loader import load_ref

        tr = item.run
        assert isinstance(tr, TaskRun)
        payload = tr.payload or {}
        task = load_ref(payload["task"])
        call = self.results.decode(payload["args"])
        context = {
            "flow_run_id": tr.flow_run_id,
            "task_run_id": tr.id,
            "flow_name": None,
            "task_name": task.name,
            "log_level": "INFO",
            "capture_output": False,
        }
        ops: list[Op] = []
        try:
            began = time.monotonic()
            out = self._run_body(
                item,
                task.fn,
                tuple(call["args"]),
                call["kwargs"],
                context,
                task.timeout,
                item.gpus if item.needs.get("gpu") else None,
                fresh=task.needs_process,
            )
            self.durations.add(time.monotonic() - began)
            error = out.error
            if out.logs:
                ops.append(InsertLogs(out.logs))
            ops.extend(InsertArtifact(a) for a in out.artifacts)
        except Cancelled:
            if self._draining.is_set():
                self._finish(tr, State.PENDING, {}, "handed back: the worker is stopping")
            else:
                log.info("task run %s: no longer ours (cancelled or re-queued); killed", tr.key)
            return
        except EngineCancelled as exc:  # cancelled from outside the engine (scancel ...)
            self._finish(tr, State.CANCELLED, {"error": str(exc), "ended_at": time.time()})
            return
        except EngineLost as exc:  # node failure, preemption, a lost Dask worker
            self._crashed(tr, task, exc)
            return
        except Exception as exc:  # the timeout, a crashed child process, a failed engine job
            error = exc
        if error is None:
            stored = self.results.encode(out.value, what=f"result of task {task.name!r}")
            values = {"result": stored, "error": None, "ended_at": time.time()}
            self._finish(tr, State.COMPLETED, values, ops=ops)
            return
        described = f"{type(error).__name__}: {error}"
        step = decide(RetryRule.of(task), tr.attempts, tr.max_attempts, Outcome.FAILED, error)
        if step.retry:
            self._finish(
                tr,
                State.AWAITING_RETRY,
                {"error": described, "queued_at": time.time() + step.delay},
                f"retry in {step.delay:.3g} s after attempt {tr.attempts}: {described[:300]}",
                ops=ops,
            )
            return
        self._finish(tr, State.FAILED, {"error": described, "ended_at": time.time()}, ops=ops)

    def _run_body(
        self,
        item: Running,
        fn: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        context: dict[str, Any],
        timeout: float | None,
        gpus: list[int] | None,
        *,
        fresh: bool = True,
    ) -> ChildResult:
        """Run the call in a warm child process, a fresh one (``fresh``: a timeout, GPUs,
        ``isolation="process"``, a flow run), or hand it to the engine (a bridge)."""
        if self.backend is None and not fresh and self.warm is not None:
            return run_warm(self.warm, fn, args, kwargs, context=context, cancelled=item.cancelled)
        if self.backend is None:
            return run_in_child(
                fn,
                args,
                kwargs,
                context=context,
                timeout=timeout,
                gpus=gpus,
                cancelled=item.cancelled,
            )
        from legato.engines.bridge import run_on_engine

        return run_on_engine(
            self.backend,
            self.store,
            item.run,
            fn,
            args,
            kwargs,
            context=context,
            timeout=timeout,
            resources=item.needs,
            cancelled=item.cancelled,
        )

    def _crashed(self, tr: TaskRun, task: Any, exc: BaseException) -> None:
        """The engine lost the attempt (not the task's fault): CRASHED, and queued again
        under the task's retry delays while attempts remain."""
        step = decide(RetryRule.of(task), tr.attempts, tr.max_attempts, Outcome.LOST, exc)
        if step.retry:
            self._finish(
                tr,
                State.AWAITING_RETRY,
                {"error": f"CRASHED: {exc}", "queued_at": time.time() + step.delay},
                f"CRASHED ({exc}); retry in {step.delay:.3g} s after attempt {tr.attempts}",
            )
            return
        self._finish(tr, State.CRASHED, {"error": f"CRASHED: {exc}", "ended_at": time.time()})

    def _finish(
        self,
        tr: TaskRun,
        state: State,
        values: dict[str, Any],
        msg: str | None = None,
        *,
        ops: list[Op] | None = None,
    ) -> None:
        """Record the outcome (and the run's logs and artifacts, ``ops``), grouped with the
        outcomes of other runs that end meanwhile: one round trip for all of them."""
        finish = Finish(tr.id, tr.attempts, state, values, msg)
        if not self._outcomes.submit((finish, ops or [])):
            log.warning(
                "task run %s: result of attempt %d refused (lease lost)", tr.key, tr.attempts
            )

    def _write_outcomes(self, batch: list[tuple[Finish, list[Op]]]) -> list[bool]:
        ops = [op for _, run_ops in batch for op in run_ops]
        if ops:
            self.store.apply(ops)
        return self.store.finish_task_runs([finish for finish, _ in batch])

    # -- heartbeats and draining ---------------------------------------------------------------

    def _heartbeats(self) -> None:
        while not self._stopped.wait(self.heartbeat_every):
            with self._lock:
                held = {i: r.run.attempts for i, r in self._running.items()}
                used = dict(self.resources._used)
            try:
                lost = self.store.heartbeat(self.id, held, self.lease, used)
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            self._healthy()
            for run_id in lost:
                with self._lock:
                    item = self._running.get(run_id)
                if item is not None:
                    item.cancelled.set()

    def _healthy(self) -> None:
        if self.health_file is not None:
            try:
                self.health_file.parent.mkdir(parents=True, exist_ok=True)
                self.health_file.write_text(f"{self.name}\n")
            except OSError as exc:  # a read-only home must not stop the worker
                log.warning("cannot write %s: %s", self.health_file, exc)

    def _drain_running(self) -> None:
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running:
                    return
            time.sleep(0.1)
        with self._lock:
            items = list(self._running.values())
        for item in items:
            item.cancelled.set()  # killed, then handed back in _execute_claimed
        for item in items:
            if item.done is not None:
                with contextlib.suppress(TimeoutError):
                    item.done.result(30)
