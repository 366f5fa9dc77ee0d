"""A refused state change inside a shared batch, on every backend: the store names exactly the
op it refused (its index in the batch), the recorder drops only that op and commits the rest,
and the refusal reaches only the caller who queued the op, never a bystander whose own
changes were in the same batch (a flow finishing next to another flow's refused change)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from legato import flow, task
from legato.context import get_run_context
from legato.errors import IllegalTransition
from legato.models import LogRecord, State, now
from legato.recorder import Recorder
from legato.runtime import Runtime, get_runtime, set_runtime
from legato.settings import get_settings
from legato.store import InsertFlowRun, InsertLogs, InsertTaskRun, Op, Store, UpdateTaskRun
from tests.store.records import T0, flow_run, task_run

WAIT = 60.0  # generous bounds for a loaded machine; nothing waits them out when all is well


def _runs(store: Store, *states: State) -> tuple[str, list[str]]:
    """A flow run and one task run per state, each reached legally (from RUNNING)."""
    run = flow_run()
    calls = [
        task_run(run.id, f"load:{n}", state=State.RUNNING, attempts=1) for n in range(len(states))
    ]
    store.apply([InsertFlowRun(run), *[InsertTaskRun(c) for c in calls]])
    moved = [
        UpdateTaskRun(c.id, st, T0 + 2)
        for c, st in zip(calls, states, strict=True)
        if st is not State.RUNNING
    ]
    if moved:
        store.apply(moved)
    return run.id, [c.id for c in calls]


def _done(call_id: str, result: int) -> UpdateTaskRun:
    return UpdateTaskRun(call_id, State.COMPLETED, T0 + 3, {"result": result, "ended_at": T0 + 3})


def test_the_refused_change_of_a_group_is_named_even_when_every_row_ends_at_the_new_state(
    store: Store,
) -> None:
    run_id, [running, completed] = _runs(store, State.RUNNING, State.COMPLETED)
    # One group of the same columns and state: a legal COMPLETED, then an illegal one.
    with pytest.raises(IllegalTransition, match="COMPLETED -> COMPLETED") as refused:
        store.apply([_done(running, 1), _done(completed, 2)])
    assert refused.value.index == 1 and completed in str(refused.value)
    assert running not in str(refused.value)
    got = {t.id: t for t in store.get_task_runs(run_id)}
    assert got[running].state is State.RUNNING  # nothing of the refused batch was written


def test_changes_inside_a_batch_are_checked_in_order(store: Store) -> None:
    run_id, [waiting, running] = _runs(store, State.AWAITING_RETRY, State.RUNNING)
    # AWAITING_RETRY -> PAUSED alone is illegal; through RUNNING first it is legal.
    store.apply(
        [
            UpdateTaskRun(waiting, State.RUNNING, T0 + 3),
            UpdateTaskRun(waiting, State.PAUSED, T0 + 4),
        ]
    )
    assert store.get_task_run(waiting).state is State.PAUSED
    # RUNNING -> RUNNING alone is legal; after COMPLETED in the same batch it is not.
    batch: list[Op] = [
        InsertLogs([LogRecord(run_id, None, T0 + 5, 20, "test", "before")]),
        _done(running, 1),
        UpdateTaskRun(running, State.RUNNING, T0 + 6, {"attempts": 2}),
    ]
    with pytest.raises(IllegalTransition, match="COMPLETED -> RUNNING") as refused:
        store.apply(batch)
    assert refused.value.index == 2
    assert store.get_task_run(running).state is State.RUNNING


def test_the_recorder_keeps_the_legal_change_of_a_group_and_drops_the_refused_one(
    store: Store,
) -> None:
    run_id, [running, completed] = _runs(store, State.RUNNING, State.COMPLETED)
    recorder = Recorder(store)
    try:
        with pytest.raises(IllegalTransition, match=completed):
            recorder.commit(_done(running, 1), _done(completed, 2))
        assert not recorder.pending
    finally:
        recorder.close()
    got = {t.id: t for t in store.get_task_runs(run_id)}
    assert (got[running].state, got[running].result) == (State.COMPLETED, 1)
    assert got[completed].result is None  # its COMPLETED came earlier, without a result


def test_a_refusal_is_raised_to_the_caller_whose_change_it_was_not_to_the_committer(
    store: Store,
) -> None:
    _, [running, completed] = _runs(store, State.RUNNING, State.COMPLETED)
    recorder = Recorder(store)
    illegal, legal = _done(completed, 2), _done(running, 1)
    queued, carried = threading.Event(), threading.Event()

    def hold(op: Op) -> None:  # the owner's change is queued; it waits before committing
        if op is illegal:
            queued.set()
            assert carried.wait(WAIT)

    recorder.listeners.append(hold)
    owner_saw: list[BaseException] = []

    def owner() -> None:
        try:
            recorder.commit(illegal)
        except IllegalTransition as exc:
            owner_saw.append(exc)

    thread = threading.Thread(target=owner)
    thread.start()
    try:
        assert queued.wait(WAIT)
        recorder.commit(legal)  # this caller's batch carries the owner's change: no error here
    finally:
        carried.set()
        thread.join(WAIT)
        recorder.close()
    assert [type(e) for e in owner_saw] == [IllegalTransition]
    assert completed in str(owner_saw[0])
    assert store.get_task_run(running).state is State.COMPLETED


def test_a_refusal_in_the_background_is_dropped_and_logged_not_a_failed_write(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id, [running, completed] = _runs(store, State.RUNNING, State.COMPLETED)
    # give_up_after=0: a failed write in the background would be a permanent failure at once.
    recorder = Recorder(store, delay=0.01, give_up_after=0)
    try:
        line = InsertLogs([LogRecord(run_id, None, T0 + 5, 20, "test", "queued with it")])
        recorder.record(_done(completed, 2))
        recorder.record(line)
        recorder.record(_done(running, 1))
        _wait_until(lambda: not recorder.pending)
        assert recorder.failure is None
        with pytest.raises(IllegalTransition, match=running):  # its own change: raised
            recorder.commit(UpdateTaskRun(running, State.COMPLETED, T0 + 6))
    finally:
        recorder.close()
    assert recorder.failure is None
    assert store.get_task_run(running).state is State.COMPLETED
    assert [e.record.message for e in store.get_logs(run_id)] == ["queued with it"]
    err = capsys.readouterr().err
    assert "write failed" not in err
    assert err.count(f"task run {completed}: COMPLETED -> COMPLETED") == 1


def _wait_until(check: Callable[[], bool]) -> None:
    ready = threading.Event()
    deadline = now() + WAIT
    while not check():
        assert now() < deadline, "timed out"
        ready.wait(0.01)


# -- through real flows: two flows share the process's recorder --------------------------------

REFUSED_QUEUED = threading.Event()  # the bystander's flow raises once this is so
BYSTANDER_DONE = threading.Event()  # the victim's task finishes once this is so
OTHER_WRITER: list[Store] = []


@task(retries=1, retry_delay=0)
def cancelled_meanwhile() -> int:
    ctx = get_run_context()
    assert ctx is not None and ctx.task_run_id is not None
    if not REFUSED_QUEUED.is_set():
        # Another process cancels this task run while it runs: the engine's AWAITING_RETRY,
        # queued when this attempt fails, is then refused (CANCELLED -> AWAITING_RETRY).
        get_runtime().recorder.flush()  # its RUNNING is stored (it would be within `delay`)
        t = now()
        OTHER_WRITER[0].apply([UpdateTaskRun(ctx.task_run_id, State.CANCELLED, t, {"ended_at": t})])
        raise RuntimeError("first attempt fails")
    assert BYSTANDER_DONE.wait(WAIT)
    return 7


@flow
def victim() -> int:
    return cancelled_meanwhile()


BYSTANDER_ATTEMPTS: list[int] = []


@flow(retries=1)
def bystander() -> str:
    BYSTANDER_ATTEMPTS.append(1)
    if len(BYSTANDER_ATTEMPTS) == 1:
        assert REFUSED_QUEUED.wait(WAIT)
        raise RuntimeError("first attempt of the flow fails")  # its retry commits RUNNING
    return "done"


@pytest.fixture
def runtime(
    legato_home: object, store: Store, store_factory: Callable[..., Store]
) -> Iterator[Runtime]:
    rt = Runtime(get_settings(), store=store)
    rt.recorder.delay = WAIT  # only the flows' own commits write: the batch they share
    previous = set_runtime(rt)
    OTHER_WRITER[:] = [store_factory()]
    REFUSED_QUEUED.clear()
    BYSTANDER_DONE.clear()
    BYSTANDER_ATTEMPTS.clear()
    try:
        yield rt
    finally:
        BYSTANDER_DONE.set()
        REFUSED_QUEUED.set()
        set_runtime(previous)
        rt.close()


def test_a_flow_finishes_though_another_flows_change_in_its_batch_is_refused(
    runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    def spot(op: Op) -> None:
        if isinstance(op, UpdateTaskRun) and op.state is State.AWAITING_RETRY:
            REFUSED_QUEUED.set()

    runtime.recorder.listeners.append(spot)
    outcome: dict[str, object] = {}

    def run_victim() -> None:
        try:
            outcome["victim"] = victim()
        except BaseException as exc:
            outcome["victim"] = exc

    thread = threading.Thread(target=run_victim)
    thread.start()
    try:
        assert bystander() == "done"  # its retry's RUNNING shared the refused batch
        assert len(BYSTANDER_ATTEMPTS) == 2
    finally:
        BYSTANDER_DONE.set()
        thread.join(WAIT)
    assert outcome["victim"] == 7, outcome
    store = get_runtime().store
    for run in store.list_flow_runs():
        assert run.state is State.COMPLETED, (run.flow, run.state, run.error)
    [call] = [t for r in store.list_flow_runs(flow="victim") for t in store.get_task_runs(r.id)]
    assert call.state is State.COMPLETED
    err = capsys.readouterr().err
    assert err.count(f"task run {call.id}: CANCELLED -> AWAITING_RETRY") == 1, err


@pytest.mark.postgres
def test_another_writer_between_the_read_and_the_write_is_caught_and_tried_again(
    postgres_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """PostgreSQL takes concurrent writers: a run may change after the batch read its state.
    The guarded UPDATE catches it; the batch is tried again on fresh states, which refuse
    exactly the change that became illegal (no guess from the rows)."""
    from sqlalchemy import event

    from legato.store import open_store
    from legato.store.sql import SqlStore

    store, other = open_store(postgres_database), open_store(postgres_database)
    assert isinstance(store, SqlStore)
    try:
        _, [mine, theirs] = _runs(store, State.RUNNING, State.RUNNING)
        raced: list[str] = []

        def meanwhile(_c: object, _cur: object, statement: str, *_: object) -> None:
            if statement.startswith("UPDATE task_runs") and not raced:
                raced.append(statement)  # another process finishes that run first
                other.apply([_done(theirs, 99)])

        event.listen(store.engine, "before_cursor_execute", meanwhile)
        recorder = Recorder(store)
        try:
            with pytest.raises(IllegalTransition, match=f"{theirs}: COMPLETED -> COMPLETED"):
                recorder.commit(_done(mine, 1), _done(theirs, 2))
        finally:
            recorder.close()
            event.remove(store.engine, "before_cursor_execute", meanwhile)
        assert raced
        assert (store.get_task_run(mine).state, store.get_task_run(mine).result) == (
            State.COMPLETED,
            1,
        )
        assert store.get_task_run(theirs).result == 99
        assert "another writer changed task run" in capsys.readouterr().err
    finally:
        store.close()
        other.close()
