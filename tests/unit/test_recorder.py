"""The recorder when the store refuses writes: a permanent failure is remembered and raised to
every caller at once, a transient one is tried again for a bounded time, and nothing queued
is lost while the process lives. The real database failures are in
tests/integration/test_store_failures.py; here a stand-in store fails on command."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from legato.errors import StoreBusy, StoreError, StoreUnavailable
from legato.models import LogRecord
from legato.recorder import Recorder
from legato.store import InsertLogs, Op

FULL = "the state database sqlite:////data/legato.db cannot take writes: database or disk is full"


class FailingStore:
    """Commits batches to ``committed`` until told to fail with ``error``."""

    def __init__(self) -> None:
        self.committed: list[Op] = []
        self.error: Exception | None = None
        self.failures_left: int | None = None  # fail this many times, then succeed
        self.calls = 0
        self.lock = threading.Lock()

    def apply(self, ops: Sequence[Op], *, request_id: str | None = None) -> None:
        with self.lock:
            self.calls += 1
            if self.error is not None and self.failures_left != 0:
                if self.failures_left is not None:
                    self.failures_left -= 1
                raise self.error
            self.committed.extend(ops)


def log(n: int) -> InsertLogs:
    return InsertLogs([LogRecord("run", None, float(n), 20, "test", f"line {n}")])


def numbers(ops: Sequence[Op]) -> list[int]:
    return [int(op.records[0].at) for op in ops if isinstance(op, InsertLogs)]


def wait_until(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_permanent_failure_in_the_background_is_raised_by_the_next_record_and_commit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = FailingStore()
    recorder = Recorder(store, delay=0.01)  # type: ignore[arg-type]
    recorder.commit(log(0))
    store.error = StoreUnavailable(FULL)
    recorder.record(log(1))
    wait_until(lambda: recorder.failure is not None)  # the background thread met it
    calls = store.calls
    with pytest.raises(StoreUnavailable, match="cannot take writes"):
        recorder.record(log(2))
    with pytest.raises(StoreUnavailable, match=re.escape("sqlite:////data/legato.db")):
        recorder.commit(log(3))
    assert store.calls == calls  # raised at once: no write tried again meanwhile
    assert numbers(recorder.pending) == [1, 2, 3]  # kept, in order
    assert capsys.readouterr().err == ""  # no "write failed, will retry" messages

    store.error = None  # space freed: an explicit flush writes everything queued
    recorder.flush()
    assert numbers(store.committed) == [0, 1, 2, 3]
    assert recorder.failure is None
    recorder.commit(log(4))
    assert numbers(store.committed) == [0, 1, 2, 3, 4]
    recorder.close()


def test_a_permanent_failure_in_one_thread_stops_the_others_at_once() -> None:
    store = FailingStore()
    recorder = Recorder(store, delay=0.01)  # type: ignore[arg-type]
    store.error = StoreUnavailable(FULL)
    errors: list[BaseException] = []

    def commit(n: int) -> None:
        try:
            recorder.commit(log(n))
        except StoreError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(n,)) for n in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(errors) == 50 and all(isinstance(e, StoreUnavailable) for e in errors)
    assert store.calls == 1  # the first refusal is remembered, not tried 50 times
    assert sorted(numbers(recorder.pending)) == list(range(50))
    assert len({id(e) for e in errors}) == 50  # each thread gets its own exception object


def test_a_busy_store_is_tried_again_with_backoff_and_one_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = FailingStore()
    store.error = StoreBusy("the state database sqlite:///x.db is busy: database is locked")
    store.failures_left = 3
    recorder = Recorder(store, delay=0.01, give_up_after=30)  # type: ignore[arg-type]
    recorder.commit(log(0), log(1))
    assert numbers(store.committed) == [0, 1] and store.calls == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "database is locked; trying again for up to 30 s" in err
    assert recorder.failure is None


def test_a_store_busy_for_too_long_is_a_permanent_failure() -> None:
    store = FailingStore()
    store.error = StoreBusy("the state database sqlite:///x.db is busy: database is locked")
    recorder = Recorder(store, delay=0.01, give_up_after=0.3)  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"database is locked \(gave up after"):
        recorder.commit(log(0))
    assert time.monotonic() - started < 30  # bounded (generous: a busy machine is slow)
    calls = store.calls
    with pytest.raises(StoreUnavailable):
        recorder.record(log(1))
    assert store.calls == calls


def test_another_refusal_in_the_background_is_tried_again_then_given_up(
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = FailingStore()
    store.error = StoreError("http://server:8787 failed on POST /ops (HTTP 500): boom")
    recorder = Recorder(store, delay=0.01, give_up_after=0.3)  # type: ignore[arg-type]
    recorder.record(log(0))
    wait_until(lambda: recorder.failure is not None)
    assert store.calls > 1  # tried again meanwhile
    with pytest.raises(StoreUnavailable, match=r"HTTP 500\): boom \(gave up after"):
        recorder.record(log(1))
    err = capsys.readouterr().err
    assert err.count("state store write failed") == 1  # one line, not one per try


def test_another_refusal_is_raised_to_the_committing_caller_and_the_batch_is_kept() -> None:
    store = FailingStore()
    store.error = RuntimeError("a bug")
    recorder = Recorder(store, delay=0.01)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="could not commit 1 state changes: a bug"):
        recorder.commit(log(0))
    assert recorder.failure is None  # not remembered: the next commit tries again
    store.error = None
    recorder.commit(log(1))
    assert numbers(store.committed) == [0, 1]


def test_an_illegal_state_change_is_dropped_and_the_rest_of_its_batch_committed(
    tmp_path: Any,
) -> None:
    from contextlib import closing

    from legato.errors import IllegalTransition
    from legato.models import FlowRun, State
    from legato.store import InsertFlowRun, UpdateFlowRun, open_store

    with closing(open_store(f"sqlite:///{tmp_path / 'state.db'}")) as store:
        done = FlowRun("done", "etl", State.RUNNING, created_at=1.0)
        store.apply([InsertFlowRun(done), UpdateFlowRun("done", State.COMPLETED, 2.0)])
        other = FlowRun("other", "etl", State.RUNNING, created_at=1.0)
        recorder = Recorder(store)
        try:
            line = InsertLogs([LogRecord("other", None, 3.0, 20, "test", "queued with it")])
            recorder.record(InsertFlowRun(other))
            with pytest.raises(IllegalTransition, match="COMPLETED -> RUNNING"):
                recorder.commit(UpdateFlowRun("done", State.RUNNING, 3.0), line)
            assert store.get_flow_run("done").state is State.COMPLETED
            assert store.get_flow_run("other").state is State.RUNNING
            assert [e.record.message for e in store.get_logs("other")] == ["queued with it"]
            recorder.commit(UpdateFlowRun("other", State.COMPLETED, 4.0))  # not held up
            assert store.get_flow_run("other").state is State.COMPLETED
        finally:
            recorder.close()
