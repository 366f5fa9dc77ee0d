"""Priorities as recorded: a task run's is its flow run's plus its task's; a child run's
starts from its parent call's; bad values are refused where they are written."""

from __future__ import annotations

import pytest

from legato import flow, task
from legato.errors import UsageError
from legato.models import PRIORITY_MAX
from legato.runtime import Runtime


@task(priority=2)
def urgent_step(x: int) -> int:
    return x


@task
def plain_step(x: int) -> int:
    return x


@flow(priority=-1)
def child(x: int) -> int:
    return urgent_step(x)


@flow(priority=3)
def parent() -> int:
    return plain_step(1) + urgent_step(2) + child(3)


def test_priorities_add_up_from_the_run_to_its_calls_and_children(rt: Runtime) -> None:
    parent()
    [top] = rt.store.list_flow_runs(top_level=True)
    assert top.priority == 3
    calls = {t.task: t for t in rt.store.get_task_runs(top.id)}
    assert calls["plain_step"].priority == 3
    assert calls["urgent_step"].priority == 5
    assert calls["child"].priority == 2  # the parent's 3 and the child flow's -1
    sub = rt.store.get_flow_run(calls["child"].child_flow_run_id or "")
    assert sub.priority == 2
    [inner] = rt.store.get_task_runs(sub.id)
    assert inner.priority == 4


def test_sums_are_held_to_the_range() -> None:
    @task(priority=PRIORITY_MAX)
    def top(x: int) -> int:
        return x

    @flow(priority=PRIORITY_MAX)
    def loud() -> int:
        return top(1)

    loud()  # 200 is recorded as 100, not refused mid-run


@pytest.mark.parametrize("bad", [101, -101, 1.5, True, "high"])
def test_a_bad_priority_is_refused_at_the_decorator(bad: object) -> None:
    with pytest.raises(UsageError, match="priority must be"):
        task(priority=bad)(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="priority must be"):
        flow(priority=bad)(lambda: None)  # type: ignore[arg-type]
