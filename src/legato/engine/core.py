"""FlowRunEngine: the task calls, child flows and questions of one flow run, as it runs.

See the package docstring for the rules it keeps.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from legato import policies
from legato.attempts import Outcome, RetryRule, budget, decide
from legato.context import RunContext, current_run
from legato.engine.calls import TaskCall
from legato.engine.lineage import Lineage
from legato.errors import (
    Cancelled,
    FlowFailed,
    LegatoError,
    Paused,
    ReplayMismatch,
    ResultMissing,
    TaskFailed,
    UsageError,
    describe,
)
from legato.executors import run_in_child
from legato.fingerprints import (
    Unfingerprintable,
    argument_names,
    call_fingerprint,
    question_fingerprint,
    value_hash,
)
from legato.futures import Future, find_futures, future_fingerprint, resolve, resolved
from legato.models import (
    Artifact,
    FlowRun,
    LogRecord,
    Question,
    State,
    TaskRun,
    clamp_priority,
    new_id,
    now,
)
from legato.replay import Call, Match, Replay, next_free
from legato.store import (
    PAGE_MAX,
    InsertArtifact,
    InsertLogs,
    InsertTaskRun,
    PutCache,
    SupersedeTaskRun,
    UpdateTaskRun,
)

if TYPE_CHECKING:
    from legato.api import Flow, Task
    from legato.runtime import Runtime

ENGINE_LOGGER = "legato.engine"
log = logging.getLogger(ENGINE_LOGGER)


def _body_log(level: int, logger: str, message: str) -> tuple[str, str]:
    return ("log", f"{level}\0{logger}\0{message}")


def _body_artifact(kind: str, title: str | None, data: Any) -> tuple[str, str]:
    return ("artifact", json.dumps([kind, title, data], sort_keys=True, default=str))


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
        root_id: str | None = None,
    ) -> None:
        self.rt = rt
        self.flow = flow
        self.run = run
        # The top-level run this one belongs to: a pool shares its capacity out by it.
        self.root_id = root_id or run.id
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
        self.lineage = Lineage()  # which call returned the values passed on (lineage.py)

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
                hashes[arg_name] = value_hash(value, future_fingerprint)
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
        self.lineage.produced(value, rec.id)
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
        with self._lock:
            if recorded is not None and self._claim(recorded, fingerprint):
                return recorded, key  # the common case: same place, same question
        if recorded is None and explicit:
            return None, key
        # One page of the run's questions: PAGE_MAX is more than any flow asks, and the
        # remote store refuses a longer page.
        asked = self.rt.store.list_questions(flow_run_id=self.run.id, limit=PAGE_MAX)
        with self._lock:
            if not explicit:  # the order of questions may have changed
                found = next((q for q in asked if self._claim(q, fingerprint)), None)
                if found is not None:
                    return found, found.key
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

    def _claim(self, question: Question, fingerprint: str) -> bool:
        """Take ``question`` for this ask() if it asks the same and no other ask() has it
        (call with the lock held)."""
        if question.id in self._claimed_questions:
            return False
        if question_fingerprint(question.prompt, question.schema) != fingerprint:
            return False
        self._claimed_questions.add(question.id)
        return True

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
        inputs, match = self._match(
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
        deps = find_futures(args, kwargs)
        if wait_for:
            deps.extend(wait_for)
        ready = all(d.done() for d in deps)
        # A cached task is not marked RUNNING up front: a cache hit goes PENDING -> CACHED
        # with no attempt counted (its body never runs).
        remote = task.pool is not None and self.rt.remote_pools
        inline = not submit and ready and not task.needs_process and not task.cache and not remote
        if rec is None:
            run = self._new_task_run(
                task,
                key,
                deps,
                inputs,
                running=inline,
                resources=task.resources,
                lineage=self.lineage.sources(args, kwargs),
            )
        else:
            run = rec  # recorded but never finished: it runs again under the same id
            if run.state in (State.FAILED, State.CANCELLED, State.CRASHED):
                run.payload = None  # over: queue a new attempt; otherwise await the queued one
                # Recorded as going again now: an end reached without running (an upstream
                # failure, no capacity) is then a legal PENDING -> FAILED, not FAILED -> FAILED.
                # Out of any pool's queue until _remote queues it again with new arguments:
                # a stale queued row would let a worker claim the old payload meanwhile.
                self.rt.recorder.record(
                    UpdateTaskRun(
                        run.id,
                        State.PENDING,
                        now(),
                        {"queued_at": None, "payload": None},
                        message="called again by replay",
                    )
                )
            run.state = State.PENDING
        fut: Future[Any] = Future(run.id, key, task.name, run.state, inputs.fingerprint)
        self._track(fut, (*args, *kwargs.values()))
        call = TaskCall(task, run, fut, args, kwargs, deps, started=inline and rec is None)
        if inline:
            self._execute(call)
        elif not submit:
            for d in deps:
                d._cf.exception()  # wait; failures are handled in _execute
            self._execute(call)
        else:
            self._when_ready(deps, lambda: self._schedule(call))
        return fut

    def _new_task_run(
        self,
        called: Task[..., Any] | Flow[..., Any],
        key: str,
        deps: list[Future[Any]],
        inputs: Call,
        *,
        running: bool,
        resources: dict[str, float] | None = None,
        child_flow_run_id: str | None = None,
        lineage: list[str] | None = None,
    ) -> TaskRun:
        """Record a new call of a task (or of a child flow, under ``child_flow_run_id``).
        ``lineage``: the calls that returned values among its arguments (not waited for:
        their values are here), recorded as dependencies like its futures."""
        t = now()
        depends_on = [d.task_run_id for d in deps if d.task_run_id]
        depends_on += [i for i in lineage or () if i not in depends_on]
        run = TaskRun(
            id=new_id(),
            flow_run_id=self.run.id,
            task=called.name,
            key=key,
            state=State.RUNNING if running else State.PENDING,
            attempts=1 if running else 0,
            pool=called.pool,
            resources=dict(resources or {}),
            tags=list(called.tags),
            priority=clamp_priority(self.run.priority + called.priority),
            root_id=self.root_id,
            expected_duration=getattr(called, "expected_duration", None),
            depends_on=depends_on,
            created_at=t,
            started_at=t if running else None,
            child_flow_run_id=child_flow_run_id,
            fingerprint=inputs.fingerprint,
            input_hashes=inputs.hashes,
        )
        self.rt.recorder.record(InsertTaskRun(run))
        return run

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

    def _schedule(self, call: TaskCall) -> None:
        try:
            self.rt.task_pool.submit(self._execute, call)
        except RuntimeError as exc:  # the pool is shut down (interpreter exiting)
            call.future._finish(State.CRASHED, error=exc)
            self._done_one()

    def _done_one(self) -> None:
        with self._lock:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.notify_all()

    def _execute(self, call: TaskCall) -> None:
        handed_off = False
        try:
            if self._cancel_error is not None:
                self._end(call.run, call.future, State.CANCELLED, self._cancel_error)
                return
            if not self._upstream_ok(call):
                return
            if call.task.cache and self._try_cache(call):
                return
            if call.task.pool is not None and self.rt.remote_pools:
                self._remote(call)
                handed_off = True
                return
            self._attempts(call)
        except BaseException as exc:  # a store failure: the future must not hang
            call.future._finish(State.CRASHED, error=exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            if not handed_off:  # a remote call is still in flight: the waiter finishes it
                self._done_one()

    def _upstream_ok(self, call: TaskCall) -> bool:
        """Every dependency is done by now (data futures and wait_for alike). If all
        succeeded, resolve the arguments and say so; else settle the call without running it."""
        up = next((d for d in call.deps if d._cf.exception() is not None), None)
        if up is None:
            call.args = tuple(resolve(a) for a in call.args)
            call.kwargs = {k: resolve(v) for k, v in call.kwargs.items()}
            return True
        for d in call.deps:
            d._observed = True  # the failure is handed on to this call's future
        cause = up._cf.exception()
        assert cause is not None
        if isinstance(cause, Paused):
            # Waits with its upstream: still PENDING, it runs when the run resumes.
            call.future._finish(State.PENDING, error=cause)
        elif isinstance(cause, Cancelled):
            self._end(call.run, call.future, State.CANCELLED, cause)
        else:
            err = TaskFailed(
                f"not run: upstream task run {up.key!r} did not complete ({describe(cause)})"
            )
            t = now()
            self.rt.recorder.commit(
                UpdateTaskRun(
                    call.run.id,
                    State.FAILED,
                    t,
                    {"error": str(err), "ended_at": t},
                    message="upstream failed",
                )
            )
            call.future._finish(State.FAILED, error=err)
        return False

    def _cache_key(self, call: TaskCall) -> str | None:
        task = call.task
        if callable(task.cache):
            custom = task.cache(*call.args, **call.kwargs)
            return None if custom is None else f"{task.name}:{custom}"
        return policies.cache_key(task.name, task.code_fingerprint, call.args, call.kwargs)

    def _try_cache(self, call: TaskCall) -> bool:
        key = self._cache_key(call)
        call.run.cache_key = key
        if key is None:
            return False
        stored = self.rt.store.get_cached(key, now())
        if stored is None:
            return False
        try:
            value = self.rt.results.decode(stored, what=f"cached result of task {call.name!r}")
        except ResultMissing as exc:
            log.warning("%s: a cache miss", exc)  # the call runs, and its result replaces it
            return False
        t = now()
        self.rt.recorder.commit(
            UpdateTaskRun(
                call.run.id,
                State.CACHED,
                t,
                {"result": stored, "cache_key": key, "ended_at": t},
                message="cache hit",
            )
        )
        call.future._finish(State.CACHED, value)
        return True

    def _attempts(self, call: TaskCall) -> None:
        """Attempts under the task's attempt policy until one succeeds or the policy stops."""
        task, run, fut, rec = call.task, call.run, call.future, self.rt.recorder
        rule = RetryRule.of(task)
        attempts = run.attempts  # every attempt ever made (the column)
        # The retry budget is per run, resume or retry of the flow.
        max_attempts = budget(attempts - 1 if call.started else attempts, rule)
        started = call.started
        while True:
            if not started:
                attempts += 1
                t = now()
                rec.record(
                    UpdateTaskRun(run.id, State.RUNNING, t, {"attempts": attempts, "started_at": t})
                )
                fut.state = State.RUNNING
            started = False
            try:
                value = self._run_body(call)
                stored = self.rt.results.encode(value, what=f"result of task {task.name!r}")
            except BaseException as exc:
                stopped = self.cancelled.is_set() or exc is self._cancel_error
                if isinstance(exc, Cancelled) or stopped:
                    self._end(call.run, call.future, State.CANCELLED, self._cancel_error or exc)
                    return
                step = decide(rule, attempts, max_attempts, Outcome.FAILED, exc)
                self._log_failure(run, exc, attempts, step.retry)
                if step.retry:
                    rec.record(
                        UpdateTaskRun(
                            run.id,
                            State.AWAITING_RETRY,
                            now(),
                            {"error": describe(exc)},
                            message=f"retry in {step.delay:.3g} s after attempt {attempts}",
                        )
                    )
                    fut.state = State.AWAITING_RETRY
                    self.cancelled.wait(step.delay)  # the next turn records a cancellation
                    continue
                self._end(call.run, call.future, State.FAILED, exc)
                if not isinstance(exc, Exception):
                    raise
                return
            self._completed(call, value, stored)
            return

    def _completed(self, call: TaskCall, value: Any, stored: Any) -> None:
        task, run, t = call.task, call.run, now()
        values: dict[str, Any] = {"result": stored, "ended_at": t, "error": None}
        ops: list[Any] = [UpdateTaskRun(run.id, State.COMPLETED, t, values)]
        if run.cache_key is not None:
            values["cache_key"] = run.cache_key
            exp = None if task.cache_expiration is None else t + task.cache_expiration
            ops.append(PutCache(run.cache_key, task.name, run.id, stored, t, exp))
        self.rt.recorder.commit(*ops)
        call.future._finish(State.COMPLETED, value)

    def _remote(self, call: TaskCall) -> None:
        """Queue the call for its pool's workers and wait for the outcome they record.
        Retries happen on the workers' side (the attempt count is the fencing token)."""
        task, run, fut, rec = call.task, call.run, call.future, self.rt.recorder
        if run.payload is None:  # not queued before this process (a resumed call is awaited)
            ref = task.ref
            if ref is None:
                raise UsageError(
                    f"task {task.name!r} is defined inside a function, so workers cannot import "
                    "it: define it at module level to run it on pool " + repr(task.pool)
                )
            t = now()
            arguments = {"args": list(call.args), "kwargs": call.kwargs}
            payload: dict[str, Any] = {
                "task": ref,
                "args": self.rt.results.encode(arguments, what=f"arguments of {task.name!r}"),
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
                        "max_attempts": budget(run.attempts, RetryRule.of(task)),
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

    def _log_failure(self, run: TaskRun, exc: BaseException, attempt: int, retry: bool) -> None:
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

    def _run_body(self, call: TaskCall) -> Any:
        if self._cancel_error is not None:
            raise self._cancel_error
        task = call.task
        if not task.needs_process and not task.resources:
            return self._run_inline(call)
        res = self.rt.resources
        res.check(task.name, task.pool, task.resources)
        gpus = res.acquire(task.resources, self.cancelled)
        try:
            if not task.needs_process:
                return self._run_inline(call)
            return self._run_child(call, gpus)
        finally:
            res.release(task.resources, gpus)

    def _run_inline(self, call: TaskCall) -> Any:
        token = current_run.set(self.context(call.run.id, call.name))
        try:
            return call.task.fn(*call.args, **call.kwargs)
        finally:
            current_run.reset(token)

    def _run_child(self, call: TaskCall, gpus: list[int]) -> Any:
        settings, task = self.rt.settings, call.task
        context = {
            "flow_run_id": self.run.id,
            "task_run_id": call.run.id,
            "flow_name": self.flow.name,
            "task_name": task.name,
            "log_level": settings.log_level,
            "capture_output": settings.capture_output,
        }
        out = run_in_child(
            task.fn,
            call.args,
            call.kwargs,
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
        deps = find_futures(args, kwargs) + list(wait_for or [])
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
            run = self._new_task_run(
                flow,
                key,
                deps,
                call,
                running=True,
                child_flow_run_id=match.child_flow_run_id or new_id(),
                lineage=self.lineage.sources(args, kwargs),
            )
        else:
            run = rec
            self.rt.recorder.record(
                UpdateTaskRun(run.id, State.RUNNING, t, {"attempts": run.attempts + 1})
            )
        fut: Future[Any] = Future(run.id, key, flow.name, State.RUNNING, call.fingerprint)
        self._track(fut, (*args, *kwargs.values()))

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
                tuple(resolve(a) for a in args), {k: resolve(v) for k, v in kwargs.items()}
            )
        except LegatoError as exc:
            self._end(run, fut, State.FAILED, exc)
            return None

    def _run_child_flow(
        self, flow: Flow[..., Any], params: dict[str, Any], run: TaskRun, fut: Future[Any]
    ) -> None:
        rec = self.rt.recorder
        child_id = run.child_flow_run_id or new_id()
        from legato.engine.flow_runs import run_flow  # a child flow is a flow run too

        try:
            value, stored = run_flow(
                flow,
                params,
                run_id=child_id,
                parent=self,
                parent_task_run_id=run.id,
                priority=run.priority,  # the parent run's plus the child flow's
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

    def _track(self, fut: Future[Any], given: tuple[Any, ...] = ()) -> None:
        """Follow a call until it ends; ``given``: its arguments (lineage.py)."""
        with self._lock:
            self._futures[id(fut)] = fut
            self._inflight += 1
        fut._cf.add_done_callback(lambda _: self._forget_if_ok(fut, given))

    def _forget_if_ok(self, fut: Future[Any], given: tuple[Any, ...] = ()) -> None:
        if fut._cf.cancelled() or fut._cf.exception() is not None:
            return
        self.lineage.produced(fut._cf.result(), fut.task_run_id, given)
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
