"""Retries: counted exactly, delays per attempt, filtered by exception type."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from legato import State, flow, task
from legato.runtime import get_runtime
from legato.store import Store
from legato.testing import last_flow_run


def store() -> Store:
    return get_runtime().store


def failing_then_ok(
    failures: int, exc: type[Exception] = ConnectionError
) -> tuple[list[int], Callable[[], int]]:
    """A task body that fails ``failures`` times, then returns the number of calls."""
    calls: list[int] = []

    def body() -> int:
        calls.append(1)
        if len(calls) <= failures:
            raise exc(f"failure {len(calls)}")
        return len(calls)

    return calls, body


@pytest.mark.parametrize("submit", [False, True], ids=["call", "submit"])
def test_retries_are_counted_exactly(submit: bool) -> None:
    calls, body = failing_then_ok(2)
    flaky = task(name="flaky", retries=3)(body)

    @flow
    def retried() -> int:
        return flaky.submit().result() if submit else flaky()

    assert retried() == 3
    assert len(calls) == 3
    [tr] = store().get_task_runs(last_flow_run(store()).id)
    assert tr.state is State.COMPLETED
    assert tr.attempts == 3
    assert tr.error is None
    states = [h.state for h in store().get_history(tr.id)]
    assert states.count(State.AWAITING_RETRY) == 2
    assert states.count(State.RUNNING) == 3
    assert states[-1] is State.COMPLETED


def test_a_task_that_keeps_failing_runs_retries_plus_one_times() -> None:
    calls, body = failing_then_ok(100)
    hopeless = task(name="hopeless", retries=2)(body)

    @flow
    def gives_up() -> None:
        hopeless()

    with pytest.raises(ConnectionError, match="failure 3"):
        gives_up()
    assert len(calls) == 3
    run = last_flow_run(store())
    [tr] = store().get_task_runs(run.id)
    assert (tr.state, tr.attempts) == (State.FAILED, 3)
    assert tr.error == "ConnectionError: failure 3"
    errors = [e.record.message for e in store().get_logs(run.id, task_run_id=tr.id)]
    assert sum("will retry" in m for m in errors) == 2
    assert sum("giving up" in m for m in errors) == 1


def test_no_retries_by_default() -> None:
    calls, body = failing_then_ok(1)
    once = task(name="once")(body)

    @flow
    def single() -> None:
        once()

    with pytest.raises(ConnectionError):
        single()
    assert len(calls) == 1
    [tr] = store().get_task_runs(last_flow_run(store()).id)
    assert tr.attempts == 1


def test_retry_delay_list_gives_one_delay_per_attempt_and_repeats_the_last() -> None:
    calls, body = failing_then_ok(4)
    paced = task(name="paced", retries=4, retry_delay=[0.01, 0.02, 0.05])(body)

    @flow
    def delayed() -> int:
        return paced()

    assert delayed() == 5
    assert len(calls) == 5
    [tr] = store().get_task_runs(last_flow_run(store()).id)
    messages = [h.message for h in store().get_history(tr.id) if h.state is State.AWAITING_RETRY]
    assert messages == [
        "retry in 0.01 s after attempt 1",
        "retry in 0.02 s after attempt 2",
        "retry in 0.05 s after attempt 3",
        "retry in 0.05 s after attempt 4",
    ]


def test_a_single_retry_delay_applies_to_every_retry() -> None:
    calls, body = failing_then_ok(2)
    steady = task(name="steady", retries=2, retry_delay=0.03)(body)

    @flow
    def constant() -> int:
        return steady()

    assert constant() == 3
    assert len(calls) == 3
    [tr] = store().get_task_runs(last_flow_run(store()).id)
    messages = [h.message for h in store().get_history(tr.id) if h.state is State.AWAITING_RETRY]
    assert messages == ["retry in 0.03 s after attempt 1", "retry in 0.03 s after attempt 2"]


def test_retry_on_retries_only_the_listed_exceptions() -> None:
    transient_calls, transient_body = failing_then_ok(1, ConnectionError)
    bug_calls, bug_body = failing_then_ok(1, KeyError)
    transient = task(name="transient", retries=3, retry_on=[ConnectionError, TimeoutError])(
        transient_body
    )
    bug = task(name="bug", retries=3, retry_on=ConnectionError)(bug_body)

    @flow
    def filtered() -> str:
        assert transient() == 2
        try:
            bug()
        except KeyError:
            return "bug not retried"
        return "bug passed"

    assert filtered() == "bug not retried"
    assert len(transient_calls) == 2
    assert len(bug_calls) == 1
    runs = {tr.task: tr for tr in store().get_task_runs(last_flow_run(store()).id)}
    assert (runs["transient"].state, runs["transient"].attempts) == (State.COMPLETED, 2)
    assert (runs["bug"].state, runs["bug"].attempts) == (State.FAILED, 1)
    assert State.AWAITING_RETRY not in [h.state for h in store().get_history(runs["bug"].id)]


def test_retry_on_matches_subclasses() -> None:
    calls, body = failing_then_ok(1, ConnectionRefusedError)
    net = task(name="net", retries=1, retry_on=OSError)(body)

    @flow
    def subclassed() -> int:
        return net()

    assert subclassed() == 2
    assert len(calls) == 2


def test_flow_retries_rerun_the_flow_without_redoing_completed_tasks() -> None:
    side_effects: list[str] = []
    flow_calls: list[int] = []

    @task
    def expensive() -> str:
        side_effects.append("expensive")
        return "done"

    @flow(retries=1)
    def flaky_flow() -> str:
        flow_calls.append(1)
        value = expensive()
        if len(flow_calls) == 1:
            raise RuntimeError("the flow fails once after its task")
        return value

    assert flaky_flow() == "done"
    assert len(flow_calls) == 2
    assert side_effects == ["expensive"]
    run = last_flow_run(store())
    assert run.state is State.COMPLETED
    [tr] = store().get_task_runs(run.id)
    assert (tr.state, tr.attempts) == (State.COMPLETED, 1)
    messages = [h.message or "" for h in store().get_history(run.id)]
    assert any("flow retry 1" in m for m in messages)


ALWAYS_FAILING: list[int] = []


@task(retries=1, retry_delay=[0.01, 60])
def always_fails() -> None:
    ALWAYS_FAILING.append(1)
    raise ConnectionError(f"failure {len(ALWAYS_FAILING)}")


@flow
def fails_twice_per_try() -> None:
    always_fails()


def test_a_retried_run_gets_a_full_budget_whose_delays_start_over() -> None:
    from legato.errors import TaskFailed
    from legato.resume import continue_run

    ALWAYS_FAILING.clear()
    with pytest.raises(ConnectionError):
        fails_twice_per_try()
    run = last_flow_run(store())
    ended, error = continue_run(run.id, retry=True)  # `legato runs retry`
    assert ended.state is State.FAILED and isinstance(error, ConnectionError | TaskFailed)
    assert len(ALWAYS_FAILING) == 4  # retries + 1 attempts in each try
    [tr] = store().get_task_runs(run.id)
    messages = [h.message for h in store().get_history(tr.id) if h.state is State.AWAITING_RETRY]
    # The retried run waits the first delay again, not the list's last (60 s).
    assert messages == ["retry in 0.01 s after attempt 1", "retry in 0.01 s after attempt 3"]
    assert tr.attempts == 4
