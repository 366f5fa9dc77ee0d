"""Retention in the store, on every backend: a deleted run takes everything under it, a
prune finds the runs that stopped before a time, and the summary counts what is held."""

from __future__ import annotations

import pytest

from legato.errors import UsageError
from legato.models import Artifact, LogRecord, Question, State
from legato.store import (
    InsertArtifact,
    InsertFlowRun,
    InsertLogs,
    InsertQuestion,
    InsertTaskRun,
    Store,
)
from tests.store.records import T0, flow_run, task_run


def _finished(store: Store, *, state: State = State.COMPLETED, ended: float = T0 + 10) -> str:
    """A stopped top-level run with a child run, task runs, a log line, an artifact and a
    question; returns its id."""
    top = flow_run(state=state, ended_at=ended)
    child = flow_run(state=state, flow="recording", ended_at=ended)
    call = task_run(
        top.id,
        "recording:0[0]",
        task="recording",
        state=State.COMPLETED,
        child_flow_run_id=child.id,
    )
    child.parent_task_run_id = call.id
    step = task_run(child.id, "extract:0", state=State.COMPLETED)
    store.apply(
        [
            InsertFlowRun(top),
            InsertTaskRun(call),
            InsertFlowRun(child),
            InsertTaskRun(step),
            InsertLogs([LogRecord(child.id, step.id, T0 + 2, 20, "legato.run", "hello")]),
            InsertArtifact(
                Artifact(
                    id=f"a-{top.id[-8:]}",
                    flow_run_id=top.id,
                    task_run_id=None,
                    kind="markdown",
                    title="report",
                    data="# hi",
                    created_at=T0 + 3,
                )
            ),
            InsertQuestion(
                Question(
                    id=f"q-{top.id[-8:]}",
                    flow_run_id=child.id,
                    key="ask:0",
                    prompt="ok?",
                    schema={"type": "boolean"},
                    created_at=T0 + 4,
                )
            ),
        ]
    )  # type: ignore[list-item]
    return top.id


def test_deleting_a_run_takes_its_children_and_everything_they_hold(store: Store) -> None:
    gone, kept = _finished(store), _finished(store)
    before = store.storage_summary()
    assert before.top_level_runs == 2 and before.rows["flow_runs"] == 4
    done = store.delete_runs([gone])
    assert (done.runs, done.child_runs, done.task_runs) == (1, 1, 2)
    assert (done.logs, done.artifacts) == (1, 1)
    after = store.storage_summary()
    assert after.top_level_runs == 1 and after.rows["flow_runs"] == 2
    assert after.rows["task_runs"] == 2 and after.rows["logs"] == 1
    assert after.rows["questions"] == 1 and after.rows["artifacts"] == 1
    assert [r.id for r in store.list_flow_runs(top_level=True)] == [kept]
    assert store.get_history(gone) == []


def test_only_stopped_top_level_runs_are_deleted_and_nothing_on_refusal(store: Store) -> None:
    done = _finished(store)
    running = store.apply([InsertFlowRun(flow_run(state=State.RUNNING))]) or None
    live = store.list_flow_runs(states=[State.RUNNING])[0].id
    with pytest.raises(UsageError, match="RUNNING: cancel it first"):
        store.delete_runs([done, live])
    assert running is None and store.get_flow_run(done).state is State.COMPLETED  # kept
    child = next(r for r in store.list_flow_runs() if r.parent_task_run_id)
    with pytest.raises(UsageError, match="is a child run"):
        store.delete_runs([child.id])


def test_prune_finds_runs_stopped_before_a_time_oldest_first(store: Store) -> None:
    old = _finished(store, ended=T0 + 10)
    older_failed = _finished(store, state=State.FAILED, ended=T0 + 5)
    recent = _finished(store, ended=T0 + 1000)
    assert store.prunable_runs(T0 + 100) == [older_failed, old]
    assert store.prunable_runs(T0 + 100, keep_failed=True) == [old]
    assert store.count_prunable(T0 + 100) == 2
    assert store.count_prunable(T0 + 100, keep_failed=True) == 1
    assert store.prunable_runs(T0 + 100, limit=1) == [older_failed]
    store.delete_runs(store.prunable_runs(T0 + 100))
    assert [r.id for r in store.list_flow_runs(top_level=True)] == [recent]


def test_a_prune_leaves_out_a_run_resumed_meanwhile(store: Store) -> None:
    listed = [_finished(store, state=State.FAILED), _finished(store)]
    assert store.queue_flow_run(listed[0], "default", allowed_from=[State.FAILED])  # a retry
    done = store.delete_runs(listed, skip_active=True)
    assert done.runs == 1
    assert [r.id for r in store.list_flow_runs(top_level=True)] == [listed[0]]
    with pytest.raises(UsageError, match="PENDING: cancel it first"):
        store.delete_runs([listed[0]])  # asked for by name: said, not skipped
