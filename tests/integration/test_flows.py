"""Flows and tasks through the public API: calls, submit, map, futures, keys, failures."""

from __future__ import annotations

import contextlib
import threading
import time
from itertools import pairwise

import pytest

import legato
from legato import State, flow, task, wait
from legato.context import get_run_context
from legato.errors import FlowFailed, ParameterError, TaskFailed, UsageError
from legato.models import can_transition
from legato.runtime import get_runtime
from legato.store import Store
from legato.testing import last_flow_run, task_runs_by_key


def store() -> Store:
    return get_runtime().store


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def slow_add(a: int, b: int, delay: float = 0.2) -> int:
    time.sleep(delay)
    return a + b


@task
def total(values: list[int]) -> int:
    return sum(values)


@task
def boom(message: str = "boom") -> None:
    raise ValueError(message)


# -- calling ---------------------------------------------------------------------------------


def test_direct_call_runs_the_task_and_records_it() -> None:
    @flow
    def direct(x: int) -> int:
        return add(x, 1) * 10

    assert direct(2) == 30
    run = last_flow_run(store())
    assert run.flow == "direct"
    assert run.state is State.COMPLETED
    assert run.result == {"v": 30}
    assert run.ended_at is not None and run.started_at is not None
    [tr] = store().get_task_runs(run.id)
    assert (tr.task, tr.key, tr.state, tr.attempts) == ("add", "add:0", State.COMPLETED, 1)
    assert tr.result == {"v": 3}
    assert tr.flow_run_id == run.id


def test_submit_returns_a_future_at_once() -> None:
    seen: dict[str, object] = {}

    @flow
    def submitting() -> int:
        fut = slow_add.submit(1, 2, delay=0.5)
        seen["returned_before_done"] = not fut.done()
        value = fut.result()
        seen["state"] = fut.state
        seen["key"] = fut.key
        return value

    assert submitting() == 3
    assert seen == {"returned_before_done": True, "state": State.COMPLETED, "key": "slow_add:0"}


def test_calls_get_default_keys_counted_per_task() -> None:
    @flow
    def counted() -> list[int]:
        a = add(1, 1)
        b = add.submit(2, 2).result()
        c = total([a, b])
        d = add(3, 3)
        return [a, b, c, d]

    assert counted() == [2, 4, 6, 6]
    run = last_flow_run(store())
    assert [tr.key for tr in store().get_task_runs(run.id)] == [
        "add:0",
        "add:1",
        "total:0",
        "add:2",
    ]


def test_map_makes_one_task_run_per_item() -> None:
    @flow
    def mapped() -> list[int]:
        futures = add.map([1, 2, 3], 10)
        return [f.result() for f in futures]

    assert mapped() == [11, 12, 13]
    runs = store().get_task_runs(last_flow_run(store()).id)
    assert sorted(tr.key for tr in runs) == ["add:0[0]", "add:0[1]", "add:0[2]"]
    assert {tr.state for tr in runs} == {State.COMPLETED}


def test_map_keys_from_a_string_or_a_function() -> None:
    @flow
    def keyed() -> list[int]:
        by_name = add.map([1, 2], 1, key="items")
        by_item = add.map(["a", "b"], "!", key=lambda item: f"item-{item}")
        return [f.result() for f in by_name] + [len(f.result()) for f in by_item]

    assert keyed() == [2, 3, 2, 2]
    keys = set(task_runs_by_key(store(), last_flow_run(store()).id))
    assert keys == {"items[0]", "items[1]", "item-a", "item-b"}


def test_explicit_keys_on_call_and_submit() -> None:
    @flow
    def named() -> int:
        return add(1, 2, key="first") + add.submit(3, 4, key="second").result()

    assert named() == 10
    runs = task_runs_by_key(store(), last_flow_run(store()).id)
    assert set(runs) == {"first", "second"}
    assert runs["first"].result == {"v": 3}
    assert runs["second"].result == {"v": 7}


def test_a_key_used_twice_in_a_run_is_a_usage_error() -> None:
    @flow
    def twice() -> None:
        add(1, 2, key="same")
        add(3, 4, key="same")

    with pytest.raises(UsageError, match="same"):
        twice()
    run = last_flow_run(store())
    assert run.state is State.FAILED
    assert "UsageError" in (run.error or "")


def test_a_task_with_a_parameter_named_key_receives_it() -> None:
    @task
    def lookup(key: str) -> str:
        return key.upper()

    @flow
    def uses_key() -> str:
        return lookup(key="abc", legato_key="lookup-call")

    assert uses_key() == "ABC"
    assert set(task_runs_by_key(store(), last_flow_run(store()).id)) == {"lookup-call"}


# -- dependencies ----------------------------------------------------------------------------


def test_a_future_argument_is_a_dependency() -> None:
    ids: dict[str, str] = {}

    @flow
    def chained() -> int:
        a = slow_add.submit(1, 1, delay=0.3)
        b = add.submit(a, 10)
        ids["a"], ids["b"] = a.task_run_id, b.task_run_id
        return b.result()

    assert chained() == 12
    a = store().get_task_run(ids["a"])
    b = store().get_task_run(ids["b"])
    assert b.depends_on == [a.id]
    assert a.depends_on == []
    assert a.ended_at is not None and b.started_at is not None
    assert b.started_at >= a.ended_at


def test_futures_inside_lists_and_dicts_are_dependencies() -> None:
    @task
    def combine(values: list[int], named: dict[str, int]) -> int:
        return sum(values) + sum(named.values())

    ids: dict[str, object] = {}

    @flow
    def gathered() -> int:
        parts = [slow_add.submit(i, i, delay=0.1) for i in range(3)]
        extra = add.submit(100, 0)
        result = combine.submit(parts, {"extra": extra})
        ids["deps"] = sorted([p.task_run_id for p in parts] + [extra.task_run_id])
        ids["combine"] = result.task_run_id
        return result.result()

    assert gathered() == 0 + 2 + 4 + 100
    combined = store().get_task_run(str(ids["combine"]))
    assert sorted(combined.depends_on) == ids["deps"]
    for dep_id in combined.depends_on:
        dep = store().get_task_run(dep_id)
        assert dep.ended_at is not None and combined.started_at is not None
        assert combined.started_at >= dep.ended_at


def test_a_direct_call_with_a_future_argument_waits_for_it() -> None:
    @flow
    def mixed() -> int:
        a = slow_add.submit(2, 3, delay=0.2)
        return add(a, 1)

    assert mixed() == 6
    runs = task_runs_by_key(store(), last_flow_run(store()).id)
    assert runs["add:0"].depends_on == [runs["slow_add:0"].id]
    assert runs["add:0"].started_at >= runs["slow_add:0"].ended_at  # type: ignore[operator]


def test_wait_for_orders_without_passing_data() -> None:
    order: list[str] = []

    @task
    def first() -> None:
        time.sleep(0.3)
        order.append("first")

    @task
    def second() -> None:
        order.append("second")

    ids: dict[str, str] = {}

    @flow
    def ordered() -> None:
        a = first.submit()
        b = second.submit(wait_for=[a])
        ids["a"], ids["b"] = a.task_run_id, b.task_run_id
        b.result()

    ordered()
    assert order == ["first", "second"]
    a, b = store().get_task_run(ids["a"]), store().get_task_run(ids["b"])
    assert b.depends_on == [a.id]
    assert b.started_at >= a.ended_at  # type: ignore[operator]


def test_a_task_whose_upstream_failed_is_not_run() -> None:
    ran: list[int] = []

    @task
    def downstream(value: int) -> int:
        ran.append(value)
        return value

    @flow
    def broken_chain() -> str:
        a = boom.submit()
        b = downstream.submit(a)
        try:
            b.result()
        except TaskFailed as exc:
            return str(exc)
        return "no error"

    message = broken_chain()
    assert "boom:0" in message
    assert ran == []
    runs = task_runs_by_key(store(), last_flow_run(store()).id)
    assert runs["downstream:0"].state is State.FAILED
    assert runs["downstream:0"].attempts == 0
    assert runs["boom:0"].state is State.FAILED


def test_a_failed_wait_for_dependency_stops_the_dependent() -> None:
    ran: list[str] = []

    @task
    def after() -> None:
        ran.append("after")

    @flow
    def ordered_failure() -> str:
        a = boom.submit("first")
        b = after.submit(wait_for=[a])
        return type(b.exception()).__name__

    assert ordered_failure() == "TaskFailed"
    assert ran == []
    runs = task_runs_by_key(store(), last_flow_run(store()).id)
    assert runs["after:0"].state is State.FAILED
    assert "boom:0" in (runs["after:0"].error or "")


def test_handling_the_end_of_a_failed_chain_handles_the_whole_chain() -> None:
    @flow
    def chain() -> str:
        a = boom.submit("at the start")
        b = add.submit(a, 1)
        c = add.submit(b, 1)
        try:
            c.result()
        except TaskFailed as exc:
            return str(exc)
        return "no error"

    assert "add:0" in chain()
    run = last_flow_run(store())
    assert run.state is State.COMPLETED
    assert [tr.state for tr in store().get_task_runs(run.id)] == [State.FAILED] * 3


def test_wait_returns_done_and_not_done() -> None:
    seen: dict[str, object] = {}

    @flow
    def waiting() -> list[int]:
        futures = [add.submit(i, i) for i in range(5)]
        done, not_done = wait(futures)
        seen["all"] = (len(done), len(not_done))
        slow = slow_add.submit(0, 0, delay=1.5)
        done, not_done = wait([slow], timeout=0.05)
        seen["timeout"] = (done, not_done == [slow])
        slow.result()
        return [f.result() for f in futures]

    assert waiting() == [0, 2, 4, 6, 8]
    assert seen == {"all": (5, 0), "timeout": ([], True)}


def test_legato_wait_is_the_public_wait() -> None:
    assert legato.wait is wait


# -- outside a flow --------------------------------------------------------------------------


def test_a_task_called_outside_a_flow_is_a_plain_call() -> None:
    contexts: list[object] = []

    @task(retries=3, timeout=10, cache=True)
    def plain(x: int) -> int:
        contexts.append(get_run_context())
        return x * 2

    assert plain(4) == 8
    assert plain(5, key="ignored") == 10
    assert plain.submit(6).result() == 12
    assert [f.result() for f in plain.map([1, 2])] == [2, 4]
    assert contexts == [None] * 5
    assert store().list_flow_runs() == []


def test_a_plain_call_raises_the_tasks_own_exception_without_retrying() -> None:
    calls: list[int] = []

    @task(retries=3)
    def flaky() -> None:
        calls.append(1)
        raise KeyError("nope")

    with pytest.raises(KeyError):
        flaky()
    assert calls == [1]
    assert store().list_flow_runs() == []


def test_a_flow_called_outside_a_flow_returns_its_value_and_is_recorded() -> None:
    @flow
    def standalone(x: int) -> dict[str, int]:
        return {"x": x}

    assert standalone(3) == {"x": 3}
    [run] = store().list_flow_runs()
    assert run.flow == "standalone"
    assert run.parameters == {"x": 3}
    assert run.state is State.COMPLETED


def test_task_bodies_and_flows_see_their_run_context() -> None:
    seen: dict[str, object] = {}

    @task
    def where() -> tuple[str, str | None]:
        ctx = get_run_context()
        assert ctx is not None
        return ctx.flow_run_id, ctx.task_run_id

    @flow
    def context_flow() -> str:
        ctx = get_run_context()
        assert ctx is not None
        fut = where.submit()
        seen["task_run_id"] = fut.task_run_id
        seen["in_task"] = fut.result()
        return ctx.flow_run_id

    flow_run_id = context_flow()
    assert flow_run_id == last_flow_run(store()).id
    assert seen["in_task"] == (flow_run_id, seen["task_run_id"])


# -- child flows -----------------------------------------------------------------------------


def test_flow_map_runs_one_child_flow_per_item() -> None:
    @flow
    def child(item: int, scale: int = 1) -> int:
        return add(item, item) * scale

    @flow
    def parent(items: list[int]) -> list[int]:
        return [f.result() for f in child.map(items, 10)]

    assert parent([1, 2, 3]) == [20, 40, 60]
    top = last_flow_run(store(), "parent")
    calls = store().get_task_runs(top.id)
    assert sorted(tr.key for tr in calls) == ["child:0[0]", "child:0[1]", "child:0[2]"]
    children = []
    for call in calls:
        assert call.state is State.COMPLETED
        [child_run] = store().list_flow_runs(parent_task_run_id=call.id)
        assert child_run.id == call.child_flow_run_id
        assert child_run.state is State.COMPLETED
        children.append(child_run)
    assert sorted(c.parameters["item"] for c in children) == [1, 2, 3]
    assert {c.parameters["scale"] for c in children} == {10}
    for child_run in children:
        [inner] = store().get_task_runs(child_run.id)
        assert inner.key == "add:0" and inner.state is State.COMPLETED


def test_a_child_flow_with_a_bad_parameter_fails_the_parent_and_creates_no_child() -> None:
    @flow
    def typed_child(n: int) -> int:
        return n

    @flow
    def calls_badly() -> int:
        return typed_child("not a number")  # type: ignore[arg-type]

    with pytest.raises(ParameterError, match="'n'"):
        calls_badly()
    runs = store().list_flow_runs()
    assert [(r.flow, r.state) for r in runs] == [("calls_badly", State.FAILED)]
    assert store().get_task_runs(runs[0].id) == []


# -- parameters ------------------------------------------------------------------------------


@flow
def typed(path: str, count: int, threshold: float = 0.5) -> str:
    return f"{path}:{count}:{threshold}"


def test_parameters_are_recorded_with_their_defaults() -> None:
    assert typed("a", 3) == "a:3:0.5"
    run = last_flow_run(store())
    assert run.parameters == {"path": "a", "count": 3, "threshold": 0.5}


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        (("a", "three"), {}, "count"),
        (("a",), {}, "count"),
        ((), {"count": 1}, "path"),
        (("a", 1), {"threshold": "high"}, "threshold"),
        (("a", 1), {"unknown": 2}, "unknown"),
        (("a", 1, 0.5, "extra"), {}, "too many"),
    ],
)
def test_a_bad_parameter_raises_parameter_error_and_creates_no_run(
    args: tuple[object, ...], kwargs: dict[str, object], named: str
) -> None:
    with pytest.raises(ParameterError) as info:
        typed(*args, **kwargs)  # type: ignore[arg-type]
    assert named in str(info.value)
    assert "typed" in str(info.value)
    assert store().list_flow_runs() == []


# -- failures --------------------------------------------------------------------------------


def test_an_unhandled_failed_task_fails_the_flow() -> None:
    @flow
    def ignores_failure() -> str:
        boom.submit("unseen")
        return "finished"

    with pytest.raises(FlowFailed, match="boom:0"):
        ignores_failure()
    run = last_flow_run(store())
    assert run.state is State.FAILED
    assert "FlowFailed" in (run.error or "")
    [tr] = store().get_task_runs(run.id)
    assert tr.state is State.FAILED
    assert tr.error == "ValueError: unseen"


def test_a_failed_direct_call_raises_the_tasks_exception_in_the_flow() -> None:
    @flow
    def lets_it_raise() -> None:
        boom("direct")

    with pytest.raises(ValueError, match="direct"):
        lets_it_raise()
    run = last_flow_run(store())
    assert run.state is State.FAILED
    assert run.error == "ValueError: direct"


def test_a_failure_the_flow_catches_does_not_fail_it() -> None:
    @flow
    def handles() -> list[str]:
        caught = []
        try:
            boom("first")
        except ValueError as exc:
            caught.append(str(exc))
        fut = boom.submit("second")
        try:
            fut.result()
        except ValueError as exc:
            caught.append(str(exc))
        return caught

    assert handles() == ["first", "second"]
    run = last_flow_run(store())
    assert run.state is State.COMPLETED
    assert {tr.state for tr in store().get_task_runs(run.id)} == {State.FAILED}


def test_a_failure_observed_through_exception_does_not_fail_the_flow() -> None:
    @flow
    def inspects() -> str:
        fut = boom.submit("looked at")
        return repr(fut.exception())

    assert "looked at" in inspects()
    assert last_flow_run(store()).state is State.COMPLETED


def test_a_flow_that_raises_is_failed_with_its_error() -> None:
    @flow
    def raises_itself() -> None:
        add(1, 1)
        raise RuntimeError("flow body broke")

    with pytest.raises(RuntimeError, match="flow body broke"):
        raises_itself()
    run = last_flow_run(store())
    assert run.state is State.FAILED
    assert run.error == "RuntimeError: flow body broke"
    logs = [e.record.message for e in store().get_logs(run.id)]
    assert any("flow body broke" in m for m in logs)


# -- history ---------------------------------------------------------------------------------


def test_every_state_change_has_a_history_row() -> None:
    attempts: list[int] = []

    @task(retries=1)
    def once_flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("first try fails")
        return "ok"

    @flow
    def child_of_history(x: int) -> int:
        return x

    @flow
    def eventful() -> None:
        add(1, 2)
        once_flaky()
        a = slow_add.submit(1, 2, delay=0.05)
        add.submit(a, 1).result()
        with contextlib.suppress(ValueError):
            boom()
        b = boom.submit()
        add.submit(b, 1).exception()
        b.exception()
        child_of_history(3)

    eventful()
    parent = last_flow_run(store(), "eventful")
    task_runs = store().get_task_runs(parent.id)
    assert len(task_runs) == 8
    runs: list[tuple[str, State]] = [(parent.id, parent.state)]
    runs += [(tr.id, tr.state) for tr in task_runs]
    for tr in task_runs:
        if tr.child_flow_run_id:
            runs.append((tr.child_flow_run_id, store().get_flow_run(tr.child_flow_run_id).state))
    for run_id, final in runs:
        history = store().get_history(run_id)
        assert history, f"run {run_id} has no history"
        states = [h.state for h in history]
        assert can_transition(None, states[0]), states
        for old, new in pairwise(states):
            assert can_transition(old, new), f"{run_id}: {old} -> {new} in {states}"
        assert states[-1] is final, states
        assert [h.at for h in history] == sorted(h.at for h in history)
    flaky = task_runs_by_key(store(), parent.id)["once_flaky:0"]
    assert [h.state for h in store().get_history(flaky.id)] == [
        State.RUNNING,
        State.AWAITING_RETRY,
        State.RUNNING,
        State.COMPLETED,
    ]
    assert [h.state for h in store().get_history(parent.id)] == [State.RUNNING, State.COMPLETED]


# -- concurrency -----------------------------------------------------------------------------


def test_submitted_tasks_run_concurrently() -> None:
    running = [0, 0]  # now, most at once
    lock = threading.Lock()

    @task
    def sleeper(i: int) -> int:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return i

    @flow
    def fan_out() -> list[int]:
        return [f.result() for f in [sleeper.submit(i) for i in range(50)]]

    started = time.monotonic()
    assert fan_out() == list(range(50))
    elapsed = time.monotonic() - started
    # 50 x 0.2 s one after the other would take 10 s: a generous functional bound.
    assert elapsed < 5.0
    assert running[1] > 1
    runs = store().get_task_runs(last_flow_run(store()).id)
    assert len(runs) == 50 and {tr.state for tr in runs} == {State.COMPLETED}


def test_key_on_a_top_level_flow_call_is_accepted_and_ignored() -> None:
    from legato import flow as make_flow

    @make_flow
    def twice(x: int) -> int:
        return 2 * x

    assert twice(3, key="k") == 6


def test_a_task_needing_more_than_the_machine_is_not_retried(configure: object) -> None:
    from legato import flow as make_flow
    from legato import task as make_task
    from legato.errors import NoWorkerForPool

    configure(resources="gpu=0")  # type: ignore[operator]

    @make_task(resources={"gpu": 1}, retries=3)
    def needs_gpu() -> int:
        return 1

    @make_flow
    def wants() -> int:
        return needs_gpu()

    with pytest.raises(NoWorkerForPool):
        wants()
    [tr] = store().get_task_runs(last_flow_run(store()).id)
    assert tr.attempts == 1  # not retried: another try cannot help


def test_child_flows_take_futures_and_wait_for() -> None:
    import time

    from legato import flow as make_flow
    from legato import task as make_task

    order: list[str] = []

    @make_task
    def slow_value() -> int:
        time.sleep(0.2)
        order.append("value")
        return 20

    @make_flow
    def child(x: int) -> int:
        order.append("child")
        return x + 1

    @make_flow
    def parent() -> list[int]:
        v = slow_value.submit()
        gate = slow_value.submit()
        a = child.submit(v)  # a future as a child flow's parameter
        b = child.submit(1, wait_for=[gate])
        return [a.result(), b.result()]

    assert parent() == [21, 2]
    assert order.index("child") > order.index("value")
