"""The transition table is enforced where states are written, on every backend: an illegal
change is refused with an error naming both states, and nothing of its batch is written."""

from __future__ import annotations

import pytest

from legato.errors import IllegalTransition
from legato.models import SOURCES, TRANSITIONS, State
from legato.store import InsertFlowRun, InsertTaskRun, Store, UpdateFlowRun, UpdateTaskRun
from tests.store.records import T0, flow_run, task_run


def _completed_task(store: Store) -> tuple[str, str]:
    run = flow_run()
    call = task_run(run.id, "load:0", state=State.RUNNING, attempts=1)
    store.apply([InsertFlowRun(run), InsertTaskRun(call)])
    store.apply([UpdateTaskRun(call.id, State.COMPLETED, T0 + 2, {"result": 1})])
    return run.id, call.id


def test_a_completed_task_run_cannot_run_again(store: Store) -> None:
    run_id, call_id = _completed_task(store)
    with pytest.raises(IllegalTransition, match=r"COMPLETED -> RUNNING") as refused:
        store.apply([UpdateTaskRun(call_id, State.RUNNING, T0 + 3, {"attempts": 2})])
    assert call_id in str(refused.value) and refused.value.index == 0
    [got] = store.get_task_runs(run_id)
    assert (got.state, got.attempts, got.result) == (State.COMPLETED, 1, 1)
    assert [h.state for h in store.get_history(call_id)] == [State.RUNNING, State.COMPLETED]


def test_nothing_of_a_batch_with_an_illegal_change_is_written(store: Store) -> None:
    run_id, call_id = _completed_task(store)
    other = task_run(run_id, "save:0", state=State.RUNNING, attempts=1)
    store.apply([InsertTaskRun(other)])
    batch = [
        UpdateTaskRun(other.id, State.COMPLETED, T0 + 3, {"result": 2}),
        UpdateTaskRun(call_id, State.PENDING, T0 + 3, {"queued_at": T0 + 3}),
    ]
    with pytest.raises(IllegalTransition, match="COMPLETED -> PENDING") as refused:
        store.apply(batch)
    assert refused.value.index == 1  # the recorder drops that one and commits the rest
    states = {t.key: t.state for t in store.get_task_runs(run_id)}
    assert states == {"load:0": State.COMPLETED, "save:0": State.RUNNING}


def test_a_change_within_one_batch_is_checked_too(store: Store) -> None:
    run = flow_run()
    call = task_run(run.id, "load:0", state=State.CACHED)
    with pytest.raises(IllegalTransition, match="CACHED -> RUNNING"):
        store.apply(
            [InsertFlowRun(run), InsertTaskRun(call), UpdateTaskRun(call.id, State.RUNNING, T0)]
        )
    with pytest.raises(IllegalTransition, match="a new run -> PAUSED"):
        store.apply([InsertFlowRun(flow_run(state=State.PAUSED))])


def test_a_finished_flow_run_keeps_its_outcome(store: Store) -> None:
    run = flow_run()
    store.apply([InsertFlowRun(run), UpdateFlowRun(run.id, State.COMPLETED, T0 + 1)])
    with pytest.raises(IllegalTransition, match=f"flow run {run.id}: COMPLETED -> FAILED"):
        store.apply([UpdateFlowRun(run.id, State.FAILED, T0 + 2, {"error": "late"})])
    got = store.get_flow_run(run.id)
    assert (got.state, got.error) == (State.COMPLETED, None)
    with pytest.raises(IllegalTransition, match="COMPLETED -> RUNNING"):
        store.transition_flow_run(run.id, State.RUNNING, allowed_from=[State.COMPLETED])


def test_legal_changes_pass_and_an_update_of_a_missing_run_changes_nothing(store: Store) -> None:
    run_id, _ = _completed_task(store)
    call = task_run(run_id, "retry:0", state=State.RUNNING, attempts=1)
    store.apply([InsertTaskRun(call)])
    for state in (State.AWAITING_RETRY, State.RUNNING, State.FAILED, State.PENDING):
        store.apply([UpdateTaskRun(call.id, state, T0 + 5)])
    store.apply([UpdateTaskRun("no-such-id", State.RUNNING, T0 + 6)])
    store.apply([UpdateFlowRun("no-such-id", State.FAILED, T0 + 6)])
    history = [h.state for h in store.get_history(call.id)]
    assert history[-4:] == [State.AWAITING_RETRY, State.RUNNING, State.FAILED, State.PENDING]


def test_sources_are_the_table_read_backwards() -> None:
    for new, sources in SOURCES.items():
        assert sources == {old for old, nexts in TRANSITIONS.items() if new in nexts}
    assert SOURCES[State.RUNNING] >= {State.PENDING, State.AWAITING_RETRY, State.CRASHED}
    assert not TRANSITIONS[State.COMPLETED] and not TRANSITIONS[State.CACHED]
