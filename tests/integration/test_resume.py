"""Resume, retry and replay in-process: finished calls are never run again."""

from __future__ import annotations

import pytest

from legato import flow, task
from legato.errors import FlowNotFound, ReplayMismatch, TaskFailed, UsageError
from legato.models import State
from legato.resume import continue_run
from legato.runtime import Runtime

RAN: list[str] = []
BROKEN: set[str] = set()
ORDER = {"swap": False}


@task
def step(name: str) -> str:
    RAN.append(name)
    if name in BROKEN:
        raise RuntimeError(f"{name} is broken")
    return name.upper()


@flow
def three_steps() -> list[str]:
    a = step("a")
    b = step.submit("b")
    c = step("c", wait_for=[b])
    return [a, b.result(), c]


def test_retry_runs_only_failed_and_never_started_calls(rt: Runtime) -> None:
    RAN.clear()
    BROKEN.clear()
    BROKEN.add("b")
    with pytest.raises(TaskFailed, match="upstream task run 'step:1'"):
        three_steps()  # c is not run: the call it waits for failed
    [run] = rt.store.list_flow_runs()
    assert run.state is State.FAILED
    assert sorted(RAN) == ["a", "b"]  # c waited for b, which failed
    BROKEN.clear()
    finished, error = continue_run(run.id, retry=True)
    assert error is None and finished.state is State.COMPLETED
    assert rt.results.decode(finished.result) == ["A", "B", "C"]
    assert sorted(RAN) == ["a", "b", "b", "c"]  # a never ran again
    b = next(t for t in rt.store.get_task_runs(run.id) if t.key == "step:1")
    assert b.attempts == 2 and b.state is State.COMPLETED


def test_resume_refuses_a_completed_or_failed_run_with_a_hint(rt: Runtime) -> None:
    BROKEN.clear()
    three_steps()
    [run] = rt.store.list_flow_runs()
    with pytest.raises(UsageError, match="COMPLETED"):
        continue_run(run.id)
    with pytest.raises(UsageError, match="COMPLETED"):
        continue_run(run.id, retry=True)
    BROKEN.add("a")
    with pytest.raises(RuntimeError):
        three_steps()
    failed = rt.store.list_flow_runs(states=[State.FAILED])[0]
    with pytest.raises(UsageError, match="runs retry"):
        continue_run(failed.id)
    BROKEN.clear()


@task
def first() -> int:
    return 1


@task
def second() -> int:
    return 2


@task
def last() -> int:
    if BROKEN:
        raise RuntimeError("late failure")
    return 3


@flow
def order_depends_on_data() -> int:
    x, y = (second(), first()) if ORDER["swap"] else (first(), second())
    return x + y + last()


def test_a_different_task_at_a_recorded_key_is_a_replay_mismatch(rt: Runtime) -> None:
    BROKEN.add("late")
    ORDER["swap"] = False
    with pytest.raises(RuntimeError):
        order_depends_on_data()
    [run] = rt.store.list_flow_runs()
    BROKEN.clear()
    # Same names, so same keys per name: swapping two different tasks keeps each key's task.
    ORDER["swap"] = True
    finished, error = continue_run(run.id, retry=True)
    assert error is None and finished.state is State.COMPLETED


@task
def fetch(i: int) -> int:
    return i


@task
def other(i: int) -> int:
    return -i


TOGGLE = {"use_other": False}


@flow
def keyed(n: int) -> int:
    total = 0
    for i in range(n):
        t = other if (TOGGLE["use_other"] and i == 1) else fetch
        total += t(i, key=f"item-{i}")
    if BROKEN:
        raise RuntimeError("fail late")
    return total


def test_replay_mismatch_names_both_tasks(rt: Runtime) -> None:
    BROKEN.add("x")
    TOGGLE["use_other"] = False
    with pytest.raises(RuntimeError):
        keyed(3)
    [run] = rt.store.list_flow_runs()
    BROKEN.clear()
    TOGGLE["use_other"] = True
    finished, error = continue_run(run.id, retry=True)
    assert isinstance(error, ReplayMismatch)
    assert "'fetch'" in str(error) and "'other'" in str(error) and "item-1" in str(error)
    assert finished.state is State.FAILED
    TOGGLE["use_other"] = False


CHILD_RAN: list[int] = []


@task
def child_step(x: int) -> int:
    CHILD_RAN.append(x)
    if x in FAIL_CHILD:
        raise ValueError(f"child {x} failed")
    return x


FAIL_CHILD: set[int] = set()


@flow
def child(x: int) -> int:
    return child_step(x) * 2


@flow
def parent_of_children(n: int) -> list[int]:
    return [f.result() for f in child.map(range(n))]


def test_child_flow_runs_are_linked_and_retried_without_rerunning_finished_ones(
    rt: Runtime,
) -> None:
    CHILD_RAN.clear()
    FAIL_CHILD.clear()
    FAIL_CHILD.add(2)
    with pytest.raises(ValueError):
        parent_of_children(4)
    [parent] = rt.store.list_flow_runs(top_level=True)
    children = [r for r in rt.store.list_flow_runs() if r.parent_task_run_id]
    assert len(children) == 4
    # When the parent raises, children already started finish; one still waiting for a
    # thread of the flow pool (a busy machine) does not start: it is CANCELLED, not run.
    started = set(CHILD_RAN)
    for c in children:
        x = c.parameters["x"]
        expected = State.FAILED if x == 2 else State.COMPLETED if x in started else State.CANCELLED
        assert c.state is expected, (x, c.state, started)
    calls = {t.id: t for t in rt.store.get_task_runs(parent.id)}
    assert all(calls[c.parent_task_run_id].child_flow_run_id == c.id for c in children)
    FAIL_CHILD.clear()
    failed_child = next(c for c in children if c.state is State.FAILED)
    finished, error = continue_run(failed_child.id, retry=True)  # retried through its parent
    assert error is None and finished.id == parent.id
    assert rt.results.decode(finished.result) == [0, 2, 4, 6]
    assert sorted(CHILD_RAN) == [0, 1, 2, 2, 3]


def test_a_run_whose_code_is_gone_cannot_resume(rt: Runtime) -> None:
    BROKEN.add("a")
    with pytest.raises(RuntimeError):
        three_steps()
    BROKEN.clear()
    [run] = rt.store.list_flow_runs()
    rt.store.apply([])
    from sqlalchemy import update

    from legato.store import schema

    with rt.store.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(
            update(schema.flow_runs)
            .where(schema.flow_runs.c.id == run.id)
            .values(source="/nowhere/gone.py:three_steps")
        )
    with pytest.raises(FlowNotFound, match="no such file"):
        continue_run(run.id, retry=True)
