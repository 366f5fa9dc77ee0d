"""States, their legal transitions, and ids."""

from __future__ import annotations

import time
import uuid

import pytest

from legato.models import (
    FINAL_STATES,
    SUCCESS_STATES,
    TRANSITIONS,
    FlowRun,
    State,
    TaskRun,
    can_transition,
    new_id,
)


def test_every_state_has_its_transitions() -> None:
    assert set(TRANSITIONS) == set(State)


def test_design_states() -> None:
    assert [s.value for s in State] == [
        "SCHEDULED",
        "PENDING",
        "RUNNING",
        "PAUSED",
        "AWAITING_RETRY",
        "COMPLETED",
        "CACHED",
        "FAILED",
        "CRASHED",
        "CANCELLED",
    ]
    assert State("RUNNING") is State.RUNNING
    assert str(State.RUNNING) == "RUNNING"


def test_success_and_final_states() -> None:
    assert {State.COMPLETED, State.CACHED} == SUCCESS_STATES
    assert {s for s in State if s.is_success} == SUCCESS_STATES
    assert {s for s in State if s.is_final} == FINAL_STATES
    assert not State.CRASHED.is_final  # a crashed run is retried or resumed
    assert SUCCESS_STATES <= FINAL_STATES


@pytest.mark.parametrize("done", [State.COMPLETED, State.CACHED])
def test_nothing_follows_success(done: State) -> None:
    assert not any(can_transition(done, new) for new in State)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (None, State.PENDING),
        (None, State.RUNNING),
        (State.PENDING, State.RUNNING),
        (State.PENDING, State.CACHED),
        (State.RUNNING, State.AWAITING_RETRY),
        (State.AWAITING_RETRY, State.RUNNING),
        (State.RUNNING, State.COMPLETED),
        (State.RUNNING, State.PAUSED),
        (State.PAUSED, State.RUNNING),
        (State.RUNNING, State.CRASHED),
        (State.CRASHED, State.RUNNING),
        (State.FAILED, State.RUNNING),  # an explicit retry
        (State.CANCELLED, State.PENDING),
    ],
)
def test_legal_transitions(old: State | None, new: State) -> None:
    assert can_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (None, State.AWAITING_RETRY),
        (None, State.PAUSED),
        (State.COMPLETED, State.RUNNING),
        (State.FAILED, State.COMPLETED),
        (State.CANCELLED, State.COMPLETED),
    ],
)
def test_illegal_transitions(old: State | None, new: State) -> None:
    assert not can_transition(old, new)


def test_ids_are_uuid7_and_unique() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for value in ids[:50]:
        parsed = uuid.UUID(value)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == value


def test_ids_sort_by_creation_time() -> None:
    ids = []
    for _ in range(5):
        ids.append(new_id())
        time.sleep(0.002)
    assert ids == sorted(ids)


def test_run_records_serialize_with_stable_field_names() -> None:
    run = FlowRun(id="f", flow="etl", state=State.RUNNING, parameters={"a": 1})
    data = run.to_json()
    assert {"id", "flow", "state", "parameters"} <= set(data)
    assert data["state"] == "RUNNING"
    tr = TaskRun(id="t", flow_run_id="f", task="load", key="load:0", state=State.FAILED)
    data = tr.to_json()
    assert {
        "id",
        "task",
        "key",
        "state",
        "attempts",
        "pool",
        "worker",
        "started_at",
        "ended_at",
        "error",
    } <= set(data)
    assert data["state"] == "FAILED"
