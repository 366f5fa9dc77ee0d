"""cache=True: the same task, code and inputs reuse the stored result without running."""

from __future__ import annotations

import time
from itertools import pairwise

from legato import State, flow, task
from legato.models import TaskRun, can_transition
from legato.runtime import get_runtime
from legato.store import Store
from legato.testing import last_flow_run


def store() -> Store:
    return get_runtime().store


def only_task_run(flow_name: str) -> TaskRun:
    [tr] = store().get_task_runs(last_flow_run(store(), flow_name).id)
    return tr


def test_a_second_run_with_the_same_input_is_cached_and_not_executed() -> None:
    executed: list[int] = []

    @task(cache=True)
    def stats(x: int) -> dict[str, int]:
        executed.append(x)
        return {"mean": x * 10}

    @flow
    def cached_flow(x: int) -> dict[str, int]:
        return stats(x)

    assert cached_flow(4) == {"mean": 40}
    first = only_task_run("cached_flow")
    assert first.state is State.COMPLETED
    assert cached_flow(4) == {"mean": 40}
    second = only_task_run("cached_flow")
    assert second.id != first.id
    assert second.state is State.CACHED
    assert second.result == first.result
    assert second.cache_key == first.cache_key is not None
    assert (first.attempts, second.attempts) == (1, 0)  # the hit never ran the body
    assert executed == [4]
    states = [h.state for h in store().get_history(second.id)]
    assert states[-1] is State.CACHED
    assert can_transition(None, states[0])
    for old, new in pairwise(states):
        assert can_transition(old, new), f"{old} -> {new} in {states}"


def test_a_cache_hit_on_a_submitted_call() -> None:
    executed: list[int] = []

    @task(cache=True)
    def square(x: int) -> int:
        executed.append(x)
        return x * x

    @flow
    def submitted_cache(x: int) -> tuple[int, str]:
        fut = square.submit(x)
        value = fut.result()
        return value, fut.state.value

    assert submitted_cache(3) == (9, "COMPLETED")
    assert submitted_cache(3) == (9, "CACHED")
    assert executed == [3]
    tr = only_task_run("submitted_cache")
    assert tr.state is State.CACHED
    assert tr.attempts == 0
    assert tr.ended_at is not None


def test_a_different_input_is_not_a_hit() -> None:
    executed: list[object] = []

    @task(cache=True)
    def keyed(x: object, *, scale: int = 1) -> str:
        executed.append((x, scale))
        return f"{x}*{scale}"

    @flow
    def varied(x: str, scale: int) -> str:
        return keyed(x, scale=scale)

    assert varied("a", 1) == "a*1"
    assert varied("b", 1) == "b*1"
    assert varied("a", 2) == "a*2"
    assert varied("a", 1) == "a*1"
    assert executed == [("a", 1), ("b", 1), ("a", 2)]
    states = [
        tr.state
        for run in reversed(store().list_flow_runs(flow="varied"))
        for tr in store().get_task_runs(run.id)
    ]
    assert states == [State.COMPLETED, State.COMPLETED, State.COMPLETED, State.CACHED]


def test_cache_expiration_is_honoured() -> None:
    executed: list[int] = []

    @task(cache=True, cache_expiration=1.0)
    def short_lived(x: int) -> int:
        executed.append(x)
        return x + 1

    @flow
    def expiring(x: int) -> int:
        return short_lived(x)

    assert expiring(1) == 2
    assert expiring(1) == 2  # within the expiration: a hit
    assert executed == [1]
    time.sleep(1.2)
    assert expiring(1) == 2  # expired: runs again
    assert executed == [1, 1]
    assert only_task_run("expiring").state is State.COMPLETED
    assert expiring(1) == 2  # and is cached again from the new result
    assert executed == [1, 1]
    assert only_task_run("expiring").state is State.CACHED


def test_a_failed_run_is_not_cached() -> None:
    executed: list[int] = []

    @task(cache=True)
    def fails_first(x: int) -> int:
        executed.append(x)
        if len(executed) == 1:
            raise RuntimeError("not cached")
        return x

    @flow
    def retry_cache(x: int) -> int | str:
        try:
            return fails_first(x)
        except RuntimeError:
            return "failed"

    assert retry_cache(5) == "failed"
    assert retry_cache(5) == 5
    assert retry_cache(5) == 5
    assert executed == [5, 5]


def test_a_cache_key_function_decides_what_counts_as_the_same_input() -> None:
    executed: list[str] = []

    @task(cache=lambda path, verbose=False: path)
    def load(path: str, verbose: bool = False) -> str:
        executed.append(path)
        return path.upper()

    @flow
    def loads(path: str, verbose: bool) -> str:
        return load(path, verbose=verbose)

    assert loads("x", False) == "X"
    assert loads("x", True) == "X"  # verbose is not part of the key
    assert loads("y", True) == "Y"
    assert executed == ["x", "y"]


def test_a_cached_result_whose_file_is_gone_is_a_miss() -> None:
    from pathlib import Path

    executed: list[int] = []

    @task(cache=True)
    def big(x: int) -> str:
        executed.append(x)
        return "y" * 100_000  # over the inline limit: a file in the result storage

    @flow
    def big_flow(x: int) -> int:
        return len(big(x))

    assert big_flow(1) == 100_000
    ref = only_task_run("big_flow").result["ref"]
    Path(ref.removeprefix("file://")).unlink()
    assert big_flow(1) == 100_000  # runs again instead of failing on the lost file
    assert executed == [1, 1]
    assert only_task_run("big_flow").state is State.COMPLETED
    assert big_flow(1) == 100_000  # and the new result is what the cache serves now
    assert executed == [1, 1] and only_task_run("big_flow").state is State.CACHED
