"""The engine: runs one flow run durably.

Every task call in a flow run gets a call key. A call whose key is already recorded as
COMPLETED or CACHED returns the stored result without running (that is how a resumed flow
skips finished work); a new key becomes a task run that is recorded, waits for the futures it
was given, runs (inline, in a thread, or in a child process), retries under its policy, and
commits its outcome before the result is handed to anyone.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future as _CF
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from legato import policies
from legato.context import RunContext, current_run
from legato.errors import (
    Cancelled,
    FlowFailed,
    LegatoError,
    NoWorkerForPool,
    Paused,
    ReplayMismatch,
    ResultMissing,
    SerializationError,
    TaskFailed,
    UsageError,
)
from legato.executors import run_in_child
from legato.fingerprints import (
    Unfingerprintable,
    argument_names,
    call_fingerprint,
    question_fingerprint,
    value_hash,
)
from legato.models import Artifact, FlowRun, LogRecord, Question, State, TaskRun, new_id, now
from legato.replay import Call, Match, Replay, next_free
from legato.store import (
    PAGE_MAX,
    InsertArtifact,
    InsertFlowRun,
    InsertLogs,
    InsertTaskRun,
    PutCache,
    SupersedeTaskRun,
    UpdateFlowRun,
    UpdateTaskRun,
)

if TYPE_CHECKING:
    from legato.api import Flow, Task
    from legato.runtime import Runtime

R = TypeVar("R")
ENGINE_LOGGER = "legato.engine"
log = logging.getLogger(ENGINE_LOGGER)


def _body_log(level: int, logger: str, message: str) -> tuple[str, str]:
    return ("log", f"{level}\0{logger}\0{message}")


def _body_artifact(kind: str, title: str | None, data: Any) -> tuple[str, str]:
    return ("artifact", json.dumps([kind, title, data], sort_keys=True, default=str))


class Future(Generic[R]):
    """The promise of a task run's result. Pass it to other tasks to make them depend on it."""

    __slots__ = ("_cf", "_observed", "fingerprint", "key", "name", "state", "task_run_id")

    def __init__(
        self,
        task_run_id: str,
        key: str,
        name: str,
        state: State = State.PENDING,
        fingerprint: str | None = None,
    ):
        self.task_run_id = task_run_id
        self.key = key
        self.name = name
        self.state = state
        # The input fingerprint of the call: a task given this future counts it by this.
        self.fingerprint = fingerprint
        self._cf: _CF[R] = _CF()
        self._observed = False

    def result(self, timeout: float | None = None) -> R:
        """The task's return value; re-raises its exception if it failed."""
        self._observed = True
        return self._cf.result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._observed = True
        return self._cf.exception(timeout)

    def done(self) -> bool:
        return self._cf.done()

    def add_done_callback(self, fn: Callable[[Future[R]], None]) -> None:
        self._cf.add_done_callback(lambda _: fn(self))

    def _finish(self, state: State, value: Any = None, error: BaseException | None = None) -> None:
        if self._cf.done():
            return  # already settled (e.g. cancelled while its body was still running)
        self.state = state
        if error is None:
            self._cf.set_result(value)
        else:
            self._cf.set_exception(error)

    def __repr__(self) -> str:
        return f"<Future {self.key} {self.state.value}>"


def resolved(
    value: R,
    state: State = State.COMPLETED,
    run: TaskRun | None = None,
) -> Future[R]:
    """A future that is already done (a task called outside a flow, or a replayed call)."""
    if run is None:
        fut: Future[R] = Future("", "", "", state)
    else:
        fut = Future(run.id, run.key, run.task, state, run.fingerprint)
    fut._cf.set_result(value)
    return fut


def _future_fingerprint(value: Any) -> str | None:
    """What a future argument counts as in a fingerprint: its call's fingerprint."""
    if not isinstance(value, Future):
        return None
    return value.fingerprint or f"key:{value.key}"


def _find_futures(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Future[Any]]:
    """Futures among the arguments, also inside lists, tuples, sets and dict values."""
    found: list[Future[Any]] = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, Future):
            found.append(value)
        elif isinstance(value, list | tuple | set | frozenset):
            found.extend(v for v in value if isinstance(v, Future))
        elif isinstance(value, dict):
            found.extend(v for v in value.values() if isinstance(v, Future))
    return found


def _resolve(value: Any) -> Any:
    if isinstance(value, Future):
        return value.result()
    if isinstance(value, list | tuple | set | frozenset) and any(
        isinstance(v, Future) for v in value
    ):
        return type(value)(_resolve(v) for v in value)
    if isinstance(value, dict) and any(isinstance(v, Future) for v in value.values()):
        return {k: _resolve(v) for k, v in value.items()}
    return value


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class FlowRunEngine:
    """Runs the task calls of one flow run: call keys, replay, dependencies, retries, cache."""

    def __init__(
        self,
        rt: Runtime,
        flow: Flow[..., Any],
        run: FlowRun,
        records: Iterable[TaskRun] = (),
        *,
        replaying: bool = False,
    ) -> None:
        self.rt = rt
        self.flow = flow
        self.run = run
        mode = flow.replay or rt.settings.replay
        self.replay = Replay(run.id, records, strict=mode == "strict")
        # Run before (resume, retry): what the flow body records again is recorded once.
        self.replaying = replaying
        self._body_seen: Counter[tuple[str, str]] | None = None
        self._claimed_questions: set[str] = set()
        self._warned: set[str] = set()  # tasks already warned about unfingerprintable inputs
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._keys: set[str] = set()
        # Calls not (yet) successful: a finished success is dropped at once, so memory stays
        # flat however many calls a run makes.
        self._futures: dict[int, Future[Any]] = {}
        self._cancel_error: BaseException | None = None
        self.cancelled = threading.Event()
        self.children: list[FlowRunEngine] = []
        self._remote_ids: set[str] = set()  # calls queued for workers
        # Calls started and not yet finished (their futures may be settled early by cancel()).
        self._inflight = 0
        self._idle = threading.Condition(self._lock)

    # -- what user code sees through the context ----------------------------------------

    def emit_log(self, record: LogRecord) -> None:
        if (
            self.replaying
            and record.task_run_id is None
            and self._seen_before(_body_log(record.level, record.logger, record.message))
        ):
            return  # the flow body logged this before the resume
        self.rt.recorder.record(InsertLogs([record]))

    def emit_artifact(self, art: Artifact) -> None:
        if (
            self.replaying
            and art.task_run_id is None
            and self._seen_before(_body_artifact(art.kind, art.title, art.data))
        ):
            return  # the flow body attached this before the resume
        self.rt.recorder.record(InsertArtifact(art))

    def _seen_before(self, what: tuple[str, str]) -> bool:
        """True once for each time the flow body recorded ``what`` in an earlier run of the
        flow function: a replayed body does not record its logs and artifacts twice."""
        with self._lock:
            if self._body_seen is None:
                self._body_seen = self._recorded_body_items()
            left = self._body_seen.get(what, 0)
            if left:
                self._body_seen[what] = left - 1
            return bool(left)

    def _recorded_body_items(self) -> Counter[tuple[str, str]]:
        self.rt.recorder.flush()
        store = self.rt.store
        seen: Counter[tuple[str, str]] = Counter(
            _body_artifact(a.kind, a.title, a.data)
            for a in store.get_artifacts(self.run.id)
            if a.task_run_id is None
        )
        after = 0
        while True:
            page = store.get_logs(self.run.id, after_id=after, limit=1000)
            for entry in page:
                r = entry.record
                if r.task_run_id is None and r.logger != ENGINE_LOGGER:
                    seen[_body_log(r.level, r.logger, r.message)] += 1
            if len(page) < 1000:
                return seen
            after = page[-1].id

    def context(self, task_run_id: str | None = None, task_name: str | None = None) -> RunContext:
        return RunContext(
            self.run.id,
            task_run_id,
            self.emit_log,
            self.emit_artifact,
            engine=None if task_run_id else self,
            flow_name=self.flow.name,
            task_name=task_name,
        )

    # -- call keys ----------------------------------------------------------------------

    def next_key(self, name: str, key: str | None) -> str:
        """The call's key in this run of the flow: ``key`` if given (once per run), else
        the task's name and its call count."""
        with self._lock:
            if key is None:
                n = self._counts.get(name, 0)
                self._counts[name] = n + 1
                key = f"{name}:{n}"
            if key in self._keys:
                raise UsageError(
                    f"call key {key!r} is used twice in flow run {self.run.id}: "
                    "each call in a run needs its own key"
                )
            self._keys.add(key)
        return key

    def _match(
        self,
        name: str,
        identity: str,
        params: tuple[str, ...],
        key: str,
        explicit: bool,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Call, Match]:
        """The call's fingerprint, and the recorded call (if any) it replays."""
        hashes: dict[str, str] = {}
        unreadable: list[str] = []
        named = zip(argument_names(params, args), args, strict=True)
        for arg_name, value in itertools.chain(named, kwargs.items()):
            try:
                hashes[arg_name] = value_hash(value, _future_fingerprint)
            except Unfingerprintable as exc:
                unreadable.append(f"{arg_name!r} ({exc})")
        fingerprint = None if unreadable else call_fingerprint(identity, hashes)
        if unreadable:
            self._warn_unfingerprintable(name, unreadable)
        call = Call(name, key, explicit, fingerprint, hashes)
        if not self.replay:
            return call, Match(None, key)  # a first run: nothing recorded to match
        with self._lock:
            match = self.replay.match(call)
        if match.supersede is not None:
            self.rt.recorder.record(SupersedeTaskRun(match.supersede.id, now(), match.renamed))
        return call, match

    def _warn_unfingerprintable(self, name: str, what: list[str]) -> None:
        with self._lock:
            if name in self._warned:
                return
            self._warned.add(name)
        text = (
            f"calls of {name!r} cannot be fingerprinted: argument {', '.join(what)}. A resumed "
            "run matches them by call key alone; pass data that JSON or pickle can hold, "
            "or key=... per call"
        )
        log.warning(text)
        self.emit_log(LogRecord(self.run.id, None, now(), logging.WARNING, ENGINE_LOGGER, text))

    def _replayed(self, rec: TaskRun) -> Future[Any] | None:
        """A future holding a recorded call's result; None when its result is missing or
        corrupt (the record is superseded and the call runs again)."""
        try:
            value = self.rt.results.decode(
                rec.result, what=f"result of task run {rec.key!r} ({rec.id})"
            )
        except ResultMissing as exc:
            log.warning("%s: running the call again", exc)
            self.emit_log(
                LogRecord(
                    self.run.id,
                    rec.id,
                    now(),
                    logging.WARNING,
                    ENGINE_LOGGER,
                    f"{exc}: running the call again",
                )
            )
            with self._lock:
                aside = self.replay.fresh(f"{rec.key}@{rec.id[:8]}")
            self.rt.recorder.record(SupersedeTaskRun(rec.id, now(), aside))
            return None
        return resolved(value, rec.state, rec)

    def find_question(
        self, key: str, explicit: bool, prompt: str, schema: dict[str, Any]
    ) -> tuple[Question | None, str]:
        """The question this ``ask()`` replays (matched by key, else by its prompt and
        schema when the order of questions changed), and the key to ask a new one under."""
        if not self.replaying:
            return None, key  # a first run has asked nothing yet
        fingerprint = question_fingerprint(prompt, schema)
        recorded = self.rt.store.find_question(self.run.id, key)
        # One page of the run's questions: PAGE_MAX is more than any flow asks, and the
        # remote store refuses a longer page.
        asked = self.rt.store.list_questions(flow_run_id=self.run.id, limit=PAGE_MAX)
        with self._lock:
            candidates = [recorded] if recorded is not None else []
            if not explicit:
                candidates += asked  # the order of questions may have changed
            for q in candidates:
                same = question_fingerprint(q.prompt, q.schema) == fingerprint
                if same and q.id not in self._claimed_questions:
                    self._claimed_questions.add(q.id)
                    return q, q.key
            if recorded is None:
                return None, key
            if self.replay.strict:
                raise ReplayMismatch(
                    f"flow run {self.run.id}: question {key!r} was recorded as "
                    f"{recorded.prompt!r}; this time the flow asks {prompt!r} there "
                    "(replay='strict')"
                )
            fresh = next_free(key, {q.key for q in asked} | self._keys)
            self._keys.add(fresh)
        return None, fresh

    def check_cancelled(self) -> None:
        if self._cancel_error is not None:
            raise self._cancel_error

    def cancel(self, error: BaseException | None = None) -> None:
        """Stop the run: queued calls do not start, child processes are killed, and waiting
        on any unfinished future raises ``error`` (Cancelled by default)."""
        with self._lock:
            if self._cancel_error is not None:
                return
            self._cancel_error = error or Cancelled()
            futures = list(self._futures.values())
            children = list(self.children)
            remote = [f for f in futures if f.task_run_id in self._remote_ids and not f.done()]
        self.cancelled.set()
        if remote:
            # Workers see their lease lost at the next heartbeat and kill these.
            t = now()
            self.rt.recorder.commit(
                *[UpdateTaskRun(f.task_run_id, State.CANCELLED, t, {"ended_at": t}) for f in remote]
            )
        for child in children:
            child.cancel(Cancelled())
        for fut in futures:
            fut._finish(State.CANCELLED, error=self._cancel_error)

    # -- task calls ---------------------------------------------------------------------

    def call_task(
        self,
        task: Task[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        key: str | None,
        wait_for: Iterable[Future[Any]] | None,
        submit: bool,
        positional: bool = False,
    ) -> Future[Any]:
        """Record (or replay) one task call. ``positional``: ``key`` names a place (a map
        index), not the call, so replay matches it by its inputs like an unnamed call."""
        self.check_cancelled()
        explicit = key is not None and not positional
        call, match = self._match(
            task.name,
            task.identity,
            task.params,
            self.next_key(task.name, key),
            explicit,
            args,
            kwargs,
        )
        rec, key = match.record, match.key
        if rec is not None and rec.state.is_success:
            replayed = self._replayed(rec)
            if replayed is not None:
                return replayed
            rec = None  # its result is lost: the call runs again under the same key
        deps = _find_futures(args, kwargs)
        if wait_for:
            deps.extend(wait_for)
        ready = all(d.done() for d in deps)
        # A cached task is not marked RUNNING up front: a cache hit goes PENDING -> CACHED
        # with no attempt counted (its body never runs).
        remote = task.pool is not None and self.rt.remote_pools
        inline = not submit and ready and not task.needs_process and not task.cache and not remote
        t = now()
        if rec is None:
            run = TaskRun(
                id=new_id(),
                flow_run_id=self.run.id,
                task=task.name,
                key=key,
                state=State.RUNNING if inline else State.PENDING,
                attempts=1 if inline else 0,
                pool=task.pool,
                resources=dict(task.resources),
                tags=list(task.tags),
                depends_on=[d.task_run_id for d in deps if d.task_run_id],
                created_at=t,
                started_at=t if inline else None,
                fingerprint=call.fingerprint,
                input_hashes=call.hashes,
            )
            self.rt.recorder.record(InsertTaskRun(run))
        else:
            run = rec  # recorded but never finished: it runs again under the same id
            if run.state in (State.FAILED, State.CANCELLED, State.CRASHED):
                run.payload = None  # over: queue a new attempt; otherwise await the queued one
            run.state = State.PENDING
        fut: Future[Any] = Future(run.id, key, task.name, run.state, call.fingerprint)
        self._track(fut)
        if inline:
            self._execute(task, run, fut, args, kwargs, deps, started=rec is None)
        elif not submit:
            for d in deps:
                d._cf.exception()  # wait; failures are handled in _execute
            self._execute(task, run, fut, args, kwargs, deps, started=False)
        else:
            self._when_ready(deps, lambda: self._schedule(task, run, fut, args, kwargs, deps))
        return fut

    def _when_ready(self, deps: list[Future[Any]], then: Callable[[], None]) -> None:
        pending = [d for d in deps if not d.done()]
        if not pending:
            then()
            return
        remaining = [len(pending)]
        lock = threading.Lock()

        def one_done(_: Any) -> None:
            with lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                then()

        for d in pending:
            d._cf.add_done_callback(one_done)

    def _schedule(
        self,
        task: Task[..., Any],
        run: TaskRun,
        fut: Future[Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        deps: list[Future[Any]],
    ) -> None:
        try:
            self.rt.task_pool.submit(self._execute, task, run, fut, args, kwargs, deps, False)
        except RuntimeError as exc:  # the pool is shut down (interpreter exiting)
            fut._finish(State.CRASHED, error=exc)
            self._done_one()

    def _done_one(self) -> None:
        with self._lock:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.notify_all()

    def _execute(
        self,
        task: Task[..., Any],
        run: TaskRun,
        fut: Future[Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        deps: list[Future[Any]],
        started: bool,
    ) -> None:
        rec = self.rt.recorder
        handed_off = False
        try:
            if self._cancel_error is not None:
                self._end(run, fut, State.CANCELLED, self._cancel_error)
                return
            # Every dependency is done by now (data futures and wait_for alike); if one did
            # not succeed, this call does not run.
            up = next((d for d in deps if d._cf.exception() is not None), None)
            if up is None:
                args = tuple(_resolve(a) for a in args)
                kwargs = {k: _resolve(v) for k, v in kwargs.items()}
            else:
                for d in deps:
                    d._observed = True  # the failure is handed on to this call's future
                cause = up._cf.exception()
                assert cause is not None
                if isinstance(cause, Paused):
                    # Waits with its upstream: still PENDING, it runs when the run resumes.
                    fut._finish(State.PENDING, error=cause)
                    return
                if isinstance(cause, Cancelled):
                    self._end(run, fut, State.CANCELLED, cause)
                    return
                err = TaskFailed(
                    f"not run: upstream task run {up.key!r} did not complete ({describe(cause)})"
                )
                rec.commit(
                    UpdateTaskRun(
                        run.id,
                        State.FAILED,
                        now(),
                        {"error": str(err), "ended_at": now()},
                        message="upstream failed",
                    )
                )
                fut._finish(State.FAILED, error=err)
                return
            if task.cache and self._try_cache(task, run, fut, args, kwargs):
                return
            if task.pool is not None and self.rt.remote_pools:
                self._remote(task, run, fut, args, kwargs)
                handed_off = True
                return
            self._attempts(task, run, fut, args, kwargs, started)
        except BaseException as exc:  # a store failure: the future must not hang
            fut._finish(State.CRASHED, error=exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            if not handed_off:  # a remote call is still in flight: the waiter finishes it
                self._done_one()

    def _cache_key(
        self, task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> str | None:
        if callable(task.cache):
            custom = task.cache(*args, **kwargs)
            return None if custom is None else f"{task.name}:{custom}"
        return policies.cache_key(task.name, task.code_fingerprint, args, kwargs)

    def _try_cache(
        self,
        task: Task[..., Any],
        run: TaskRun,
        fut: Future[Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> bool:
        key = self._cache_key(task, args, kwargs)
        run.cache_key = key
        if key is None:
            return False
        stored = self.rt.store.get_cached(key, now())
        if stored is None:
            return False
        try:
            value = self.rt.results.decode(stored, what=f"cached result of task {task.name!r}")
        except ResultMissing as exc:
            log.warning("%s: a cache miss", exc)  # the call runs, and its result replaces it
            return False
        t = now()
        self.rt.recorder.commit(
            UpdateTaskRun(
                run.id,
                State.CACHED,
                t,
                {"result": stored, "cache_key": key, "ended_at": t},
                message="cache hit",
            )
        )
        fut._finish(State.CACHED, value)
        return True

    def _attempts(
        self,
        task: Task[..., Any],
        run: TaskRun,
        fut: Future[Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        started: bool,
    ) -> None:
        rec = self.rt.recorder
        attempts = run.attempts  # every attempt ever made (the column)
        tries = 0  # attempts in this run of the flow: the retry budget is per run or resume
        while True:
            tries += 1
            if not started:
                attempts += 1
                t = now()
                rec.record(
                    UpdateTaskRun(run.id, State.RUNNING, t, {"attempts": attempts, "started_at": t})
                )
                fut.state = State.RUNNING
            started = False
            try:
                value = self._run_body(task, run, args, kwargs)
                stored = self.rt.results.encode(value, what=f"result of task {task.name!r}")
            except BaseException as exc:
                stopped = self.cancelled.is_set() or exc is self._cancel_error
                if isinstance(exc, Cancelled) or stopped:
                    self._end(run, fut, State.CANCELLED, self._cancel_error or exc)
                    return
                permanent = (SerializationError, NoWorkerForPool)  # another try cannot help
                retry = not isinstance(exc, permanent) and policies.should_retry(
                    exc, task.retry_on, tries, task.retries
                )
                self._log_failure(task, run, exc, attempts, retry)
                if retry:
                    delay = policies.retry_delay(task.retry_delay, attempts, task.retry_jitter)
                    rec.record(
                        UpdateTaskRun(
                            run.id,
                            State.AWAITING_RETRY,
                            now(),
                            {"error": describe(exc)},
                            message=f"retry in {delay:.3g} s after attempt {attempts}",
                        )
                    )
                    fut.state = State.AWAITING_RETRY
                    if self.cancelled.wait(delay):
                        continue  # the next loop turn records the cancellation
                    continue
                self._end(run, fut, State.FAILED, exc)
                if not isinstance(exc, Exception):
                    raise
                return
            t = now()
            values: dict[str, Any] = {"result": stored, "ended_at": t, "error": None}
            ops: list[Any] = [UpdateTaskRun(run.id, State.COMPLETED, t, values)]
            if run.cache_key is not None:
                values["cache_key"] = run.cache_key
                exp = None if task.cache_expiration is None else t + task.cache_expiration
                ops.append(PutCache(run.cache_key, task.name, run.id, stored, t, exp))
            rec.commit(*ops)
            fut._finish(State.COMPLETED, value)
            return

    def _remote(
        self,
        task: Task[..., Any],
        run: TaskRun,
        fut: Future[Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """Queue the call for its pool's workers and wait for the outcome they record.
        Retries happen on the workers' side (the attempt count is the fencing token)."""
        rec = self.rt.recorder
        if run.payload is None:  # not queued before this process (a resumed call is awaited)
            ref = task.ref
            if ref is None:
                raise UsageError(
                    f"task {task.name!r} is defined inside a function, so workers cannot import "
                    "it: define it at module level to run it on pool " + repr(task.pool)
                )
            t = now()
            payload: dict[str, Any] = {
                "task": ref,
                "args": self.rt.results.encode(
                    {"args": list(args), "kwargs": kwargs}, what=f"arguments of {task.name!r}"
                ),
            }
            rec.record(
                UpdateTaskRun(
                    run.id,
                    State.PENDING,
                    t,
                    {
                        "queued_at": t,
                        "payload": payload,
                        # a full retry budget from here (a retried run has attempts already)
                        "max_attempts": run.attempts + task.retries + 1,
                    },
                    message=f"queued for pool {task.pool}",
                ),
                soon=True,  # the worker waits for it; this thread need not
            )

        def settle(done: TaskRun) -> None:
            self.rt.recorder.announce(UpdateTaskRun(done.id, done.state, now()))
            try:
                if done.state.is_success:
                    fut._finish(done.state, self.rt.results.decode(done.result))
                elif done.state is State.CANCELLED:
                    fut._finish(State.CANCELLED, error=Cancelled())
                else:
                    fut._finish(
                        done.state,
                        error=TaskFailed(
                            f"task run {done.key} {done.state.value} on pool {task.pool} after "
                            f"{done.attempts} attempt(s): {done.error}"
                        ),
                    )
            finally:
                self._done_one()

        with self._lock:
            self._remote_ids.add(run.id)
        self.rt.remote.watch(run.id, settle)

    def _log_failure(
        self, task: Task[..., Any], run: TaskRun, exc: BaseException, attempt: int, retry: bool
    ) -> None:
        what = "will retry" if retry else "giving up"
        text = "".join(traceback.format_exception(exc)).rstrip()
        self.emit_log(
            LogRecord(
                self.run.id,
                run.id,
                now(),
                logging.ERROR,
                ENGINE_LOGGER,
                f"task {run.key} attempt {attempt} failed ({what}):\n{text}",
            )
        )

    def _run_body(
        self, task: Task[..., Any], run: TaskRun, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if self._cancel_error is not None:
            raise self._cancel_error
        if not task.needs_process and not task.resources:
            return self._run_inline(task, run, args, kwargs)
        res = self.rt.resources
        res.check(task.name, task.pool, task.resources)
        gpus = res.acquire(task.resources, self.cancelled)
        try:
            if not task.needs_process:
                return self._run_inline(task, run, args, kwargs)
            return self._run_child(task, run, args, kwargs, gpus)
        finally:
            res.release(task.resources, gpus)

    def _run_inline(
        self, task: Task[..., Any], run: TaskRun, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        token = current_run.set(self.context(run.id, task.name))
        try:
            return task.fn(*args, **kwargs)
        finally:
            current_run.reset(token)

    def _run_child(
        self,
        task: Task[..., Any],
        run: TaskRun,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        gpus: list[int],
    ) -> Any:
        settings = self.rt.settings
        context = {
            "flow_run_id": self.run.id,
            "task_run_id": run.id,
            "flow_name": self.flow.name,
            "task_name": task.name,
            "log_level": settings.log_level,
            "capture_output": settings.capture_output,
        }
        out = run_in_child(
            task.fn,
            args,
            kwargs,
            context=context,
            timeout=task.timeout,
            gpus=gpus if task.resources.get("gpu") else None,
            cancelled=self.cancelled,
        )
        for record in out.logs:
            self.emit_log(record)
        for art in out.artifacts:
            self.emit_artifact(art)
        if out.error is not None:
            raise out.error
        return out.value

    # -- child flows ----------------------------------------------------------------------

    def call_flow(
        self,
        flow: Flow[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        key: str | None,
        submit: bool,
        wait_for: Iterable[Future[Any]] | None = None,
        positional: bool = False,
    ) -> Future[Any]:
        self.check_cancelled()
        deps = _find_futures(args, kwargs) + list(wait_for or [])
        # Without futures among them, parameters are checked before anything is recorded;
        # with futures, once their values are known.
        params = None if deps else flow.validate(args, kwargs)
        call, match = self._match(
            flow.name,
            flow.name,
            flow.params,
            self.next_key(flow.name, key),
            key is not None and not positional,
            args,
            kwargs,
        )
        rec, key = match.record, match.key
        if rec is not None and rec.state.is_success:
            replayed = self._replayed(rec)
            if replayed is not None:
                return replayed
            rec = None  # its result is lost: the call runs again under the same key
        t = now()
        if rec is None:
            run = TaskRun(
                id=new_id(),
                flow_run_id=self.run.id,
                task=flow.name,
                key=key,
                state=State.RUNNING,
                attempts=1,
                pool=flow.pool,
                tags=list(flow.tags),
                created_at=t,
                started_at=t,
                child_flow_run_id=new_id(),
                depends_on=[d.task_run_id for d in deps if d.task_run_id],
                fingerprint=call.fingerprint,
                input_hashes=call.hashes,
            )
            self.rt.recorder.record(InsertTaskRun(run))
        else:
            run = rec
            self.rt.recorder.record(
                UpdateTaskRun(run.id, State.RUNNING, t, {"attempts": run.attempts + 1})
            )
        fut: Future[Any] = Future(run.id, key, flow.name, State.RUNNING, call.fingerprint)
        self._track(fut)

        def go() -> None:
            try:
                checked = (
                    params
                    if params is not None
                    else self._child_params(flow, run, fut, deps, args, kwargs)
                )
                if checked is not None:
                    self._run_child_flow(flow, checked, run, fut)
            finally:
                self._done_one()

        def start() -> None:
            try:
                self.rt.flow_pool.submit(go)
            except RuntimeError as exc:
                fut._finish(State.CRASHED, error=exc)
                self._done_one()

        if submit:
            self._when_ready(deps, start)
        else:
            for d in deps:
                d._cf.exception()  # wait
            go()
        return fut

    def _child_params(
        self,
        flow: Flow[..., Any],
        run: TaskRun,
        fut: Future[Any],
        deps: list[Future[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> dict[str, Any] | None:
        """The child's parameters once its dependencies are done; None (and the call ended)
        if one of them did not succeed or the values do not fit the flow's parameters."""
        up = next((d for d in deps if d._cf.exception() is not None), None)
        try:
            if up is not None:
                up._observed = True
                cause = up._cf.exception() or Exception("unknown")
                raise TaskFailed(
                    f"not run: upstream task run {up.key!r} did not complete ({describe(cause)})"
                )
            return flow.validate(
                tuple(_resolve(a) for a in args), {k: _resolve(v) for k, v in kwargs.items()}
            )
        except LegatoError as exc:
            self._end(run, fut, State.FAILED, exc)
            return None

    def _run_child_flow(
        self, flow: Flow[..., Any], params: dict[str, Any], run: TaskRun, fut: Future[Any]
    ) -> None:
        rec = self.rt.recorder
        child_id = run.child_flow_run_id or new_id()
        try:
            value, stored = run_flow(
                flow, params, run_id=child_id, parent=self, parent_task_run_id=run.id
            )
        except Paused as exc:
            rec.record(UpdateTaskRun(run.id, State.PAUSED, now(), message=str(exc)))
            fut._finish(State.PAUSED, error=exc)
            return
        except Cancelled as exc:
            self._end(run, fut, State.CANCELLED, exc)
            return
        except BaseException as exc:
            self._end(run, fut, State.FAILED, exc)
            if not isinstance(exc, Exception):
                raise
            return
        t = now()
        rec.commit(UpdateTaskRun(run.id, State.COMPLETED, t, {"result": stored, "ended_at": t}))
        fut._finish(State.COMPLETED, value)

    def _end(self, run: TaskRun, fut: Future[Any], state: State, error: BaseException) -> None:
        """Record a call ending without a result (FAILED, CANCELLED), then settle its future."""
        t = now()
        values: dict[str, Any] = {"ended_at": t}
        if state is State.FAILED:
            values["error"] = describe(error)
        self.rt.recorder.commit(UpdateTaskRun(run.id, state, t, values))
        fut._finish(state, error=error)

    def _track(self, fut: Future[Any]) -> None:
        with self._lock:
            self._futures[id(fut)] = fut
            self._inflight += 1
        fut._cf.add_done_callback(lambda _: self._forget_if_ok(fut))

    def _forget_if_ok(self, fut: Future[Any]) -> None:
        if fut._cf.exception() is None:
            with self._lock:
                self._futures.pop(id(fut), None)

    def stop_new_calls(self, error: BaseException) -> None:
        """Calls not started yet do not start (they end CANCELLED); running ones go on."""
        with self._lock:
            if self._cancel_error is None:
                self._cancel_error = error

    def adopt(self, child: FlowRunEngine) -> None:
        with self._lock:
            self.children.append(child)
            cancelled = self._cancel_error is not None
        if cancelled:
            child.cancel(Cancelled())

    def disown(self, child: FlowRunEngine) -> None:
        with self._lock:
            if child in self.children:
                self.children.remove(child)

    # -- the end of the run ---------------------------------------------------------------

    def superseded(self, at: float) -> list[UpdateTaskRun | SupersedeTaskRun]:
        """Changes that retire the recorded calls this completed run did not make again
        (their inputs changed): kept in the history, never served. One still queued or
        running is cancelled: nothing waits for it any more."""
        ops: list[UpdateTaskRun | SupersedeTaskRun] = []
        for rec in self.replay.unclaimed():
            if not rec.state.is_final:
                ops.append(
                    UpdateTaskRun(
                        rec.id,
                        State.CANCELLED,
                        at,
                        {"ended_at": at},
                        message="inputs changed on resume",
                    )
                )
            ops.append(SupersedeTaskRun(rec.id, at))
        return ops

    def settle_quietly(self) -> None:
        """Wait until no call of this run is still executing, whatever the outcomes."""
        with self._idle:
            while self._inflight > 0:
                self._idle.wait()

    def settle(self) -> None:
        """Wait for every call of the run; raise if one paused, or failed unobserved."""
        self.settle_quietly()
        with self._lock:
            futures = list(self._futures.values())
        paused = [f for f in futures if isinstance(f._cf.exception(), Paused)]
        if paused:
            raise paused[0]._cf.exception()  # type: ignore[misc]
        self.check_cancelled()
        unseen = [f for f in futures if not f._observed and f._cf.exception() is not None]
        if unseen:
            names = ", ".join(f.key for f in unseen[:5]) + (" ..." if len(unseen) > 5 else "")
            raise FlowFailed(
                f"{len(unseen)} task run(s) failed and the flow did not handle them: {names}"
            )


# -- flow runs ------------------------------------------------------------------------


def run_flow(
    flow: Flow[..., Any],
    params: dict[str, Any],
    *,
    run_id: str | None = None,
    resume: bool = False,
    parent: FlowRunEngine | None = None,
    parent_task_run_id: str | None = None,
) -> tuple[Any, Any]:
    """Run (or resume) a flow run to its end; returns (value, stored form of the value).

    ``params`` must already be validated. Raises what the flow raised, ``Paused`` when it
    waits for an answer, ``Cancelled`` when cancelled.
    """
    from legato.runtime import get_runtime

    rt = parent.rt if parent is not None else get_runtime()
    store, recorder = rt.store, rt.recorder
    records: list[TaskRun] = []
    replaying = False
    run: FlowRun | None = None
    if run_id is not None:
        try:
            run = store.get_flow_run(run_id)
        except LegatoError:
            run = None
    t = now()
    me = owner_id()
    if run is None:
        run = FlowRun(
            id=run_id or new_id(),
            flow=flow.name,
            state=State.RUNNING,
            parameters=flow.dump_params(params, rt.results),
            parent_task_run_id=parent_task_run_id,
            pool=flow.pool,
            tags=list(flow.tags),
            created_at=t,
            started_at=t,
            source=flow.source,
            owner=me,
        )
        recorder.commit(InsertFlowRun(run))
    else:
        if run.state.is_success:
            value = rt.results.decode(run.result)
            return value, run.result
        recorder.flush()
        # Compare-and-set: of two processes resuming the same run, one wins.
        if not store.transition_flow_run(
            run.id,
            State.RUNNING,
            allowed_from=[run.state],
            values={"ended_at": None, "error": None, "owner": me},
            message="resumed" if resume else "retried",
        ):
            from legato.errors import UsageError

            raise UsageError(f"flow run {run.id} changed state meanwhile; try again")
        records = store.get_task_runs(run.id)
        replaying = True
    attempt = 0
    while True:
        attempt += 1
        engine = FlowRunEngine(rt, flow, run, records, replaying=replaying)
        if parent is None:
            rt.watch(engine)
        else:
            parent.adopt(engine)
        timer = None
        if flow.timeout is not None:
            from legato.errors import FlowTimeout

            timer = threading.Timer(
                flow.timeout,
                engine.cancel,
                [FlowTimeout(f"flow {flow.name!r} ran past its timeout of {flow.timeout:g} s")],
            )
            timer.daemon = True
            timer.start()
        token = current_run.set(engine.context())
        try:
            value = flow.fn(**params)
            engine.settle()
            stored = rt.results.encode(value, what=f"result of flow {flow.name!r}")
        except Paused as exc:
            engine.settle_quietly()  # what already started finishes and is recorded
            recorder.commit(UpdateFlowRun(run.id, State.PAUSED, now(), message=str(exc)))
            raise
        except Cancelled:
            engine.cancel()
            engine.settle_quietly()
            recorder.commit(UpdateFlowRun(run.id, State.CANCELLED, now(), {"ended_at": now()}))
            raise
        except KeyboardInterrupt:
            # The person stopped the process: the run can be resumed where it stopped.
            engine.cancel()
            engine.settle_quietly()
            recorder.commit(
                UpdateFlowRun(run.id, State.CRASHED, now(), message="interrupted (Ctrl-C)")
            )
            raise
        except BaseException as exc:
            if (
                isinstance(exc, Exception)
                and attempt <= flow.retries
                and not engine.cancelled.is_set()
            ):
                engine.settle_quietly()
                recorder.commit(
                    UpdateFlowRun(
                        run.id,
                        State.RUNNING,
                        now(),
                        {"error": describe(exc)},
                        message=f"flow retry {attempt} after {describe(exc)}",
                    )
                )
                records = store.get_task_runs(run.id)  # the commit above flushed the rest
                replaying = True
                continue
            if engine.cancelled.is_set():
                engine.settle_quietly()  # cancelled or timed out: processes were killed
            else:
                # The flow raised: what it already started finishes and is recorded, so a
                # retry replays it instead of redoing it. Nothing new starts.
                engine.stop_new_calls(exc)
                engine.settle_quietly()
            t = now()
            text = "".join(traceback.format_exception(exc)).rstrip()
            recorder.record(
                InsertLogs(
                    [
                        LogRecord(
                            run.id,
                            None,
                            t,
                            logging.ERROR,
                            ENGINE_LOGGER,
                            f"flow run failed:\n{text}",
                        )
                    ]
                )
            )
            recorder.commit(
                UpdateFlowRun(run.id, State.FAILED, t, {"error": describe(exc), "ended_at": t})
            )
            raise
        finally:
            current_run.reset(token)
            if timer is not None:
                timer.cancel()
            if parent is None:
                rt.unwatch(engine)
            else:
                parent.disown(engine)
        t = now()
        recorder.commit(
            *engine.superseded(t),
            UpdateFlowRun(run.id, State.COMPLETED, t, {"result": stored, "ended_at": t}),
        )
        return value, stored


def owner_id() -> str:
    """Who runs a flow run: ``host:pid``, to tell a live run from a crashed one."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str | None, run_id: str | None = None) -> bool:
    """True if ``owner`` is a live process on this host (other hosts: assumed alive)."""
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        number = int(pid)
    except ValueError:
        return False
    if number == os.getpid():
        from legato.runtime import get_runtime

        return run_id is not None and get_runtime().is_running(run_id)
    try:
        os.kill(number, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(number)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
