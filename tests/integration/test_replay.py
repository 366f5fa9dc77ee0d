"""Durability: resuming a flow run replays completed calls from the store without running
them again; a different task at a recorded call key is a ReplayMismatch."""

from __future__ import annotations

from itertools import pairwise

import pytest

from legato import State, flow, task
from legato.engine import run_flow
from legato.errors import ReplayMismatch
from legato.models import can_transition
from legato.runtime import get_runtime
from legato.store import Store
from legato.testing import last_flow_run, task_runs_by_key


def store() -> Store:
    return get_runtime().store


def assert_legal_history(run_id: str) -> list[State]:
    states = [h.state for h in store().get_history(run_id)]
    assert can_transition(None, states[0]), states
    for old, new in pairwise(states):
        assert can_transition(old, new), f"{old} -> {new} in {states}"
    return states


@pytest.mark.parametrize("submit", [False, True], ids=["call", "submit"])
def test_resume_skips_completed_calls_and_reruns_the_failed_one(submit: bool) -> None:
    executed: list[str] = []
    broken = {"step2": True}

    @task
    def step1() -> int:
        executed.append("step1")
        return 1

    @task
    def step2(x: int) -> int:
        executed.append("step2")
        if broken["step2"]:
            raise RuntimeError("step2 is broken")
        return x + 1

    @flow
    def resumable(start: int) -> int:
        one = step1.submit() if submit else step1()
        two = step2.submit(one).result() if submit else step2(one)
        return start + two

    with pytest.raises(RuntimeError, match="step2 is broken"):
        resumable(10)
    run = last_flow_run(store())
    assert run.state is State.FAILED
    before = task_runs_by_key(store(), run.id)

    broken["step2"] = False
    value, stored = run_flow(resumable, {"start": 10}, run_id=run.id, resume=True)
    assert value == 12
    assert stored == {"v": 12}
    assert executed == ["step1", "step2", "step2"]

    resumed = store().get_flow_run(run.id)
    assert resumed.state is State.COMPLETED
    assert resumed.result == {"v": 12}
    after = task_runs_by_key(store(), run.id)
    assert set(after) == {"step1:0", "step2:0"}
    assert after["step1:0"].id == before["step1:0"].id
    assert (after["step1:0"].state, after["step1:0"].attempts) == (State.COMPLETED, 1)
    assert after["step2:0"].id == before["step2:0"].id
    assert after["step2:0"].state is State.COMPLETED
    assert after["step2:0"].attempts == 2  # once in the first run, once on resume
    assert after["step2:0"].error is None
    for tr in after.values():
        assert_legal_history(tr.id)
    assert assert_legal_history(run.id) == [
        State.RUNNING,
        State.FAILED,
        State.RUNNING,
        State.COMPLETED,
    ]
    assert len(store().list_flow_runs()) == 1


def test_a_different_task_at_a_recorded_key_is_a_replay_mismatch() -> None:
    @task
    def original() -> int:
        return 1

    @task
    def replacement() -> int:
        return 2

    @flow(name="evolving")
    def version1() -> int:
        original(key="step")
        raise RuntimeError("stop after the first step")

    @flow(name="evolving")
    def version2() -> int:
        return replacement(key="step")

    with pytest.raises(RuntimeError):
        version1()
    run = last_flow_run(store())
    with pytest.raises(ReplayMismatch, match=r"'original'.*'step'.*'replacement'"):
        run_flow(version2, {}, run_id=run.id, resume=True)
    [tr] = store().get_task_runs(run.id)
    assert (tr.task, tr.state) == ("original", State.COMPLETED)
    assert store().get_flow_run(run.id).state is State.FAILED
