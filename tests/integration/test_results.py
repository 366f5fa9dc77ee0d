"""Results: small ones inline, large or non-JSON ones in result storage; clear errors when a
result cannot be serialized or stored, and nothing else damaged."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from legato import State, flow, task
from legato.errors import ResultStorageError, SerializationError
from legato.runtime import Runtime, get_runtime
from legato.store import Store
from legato.testing import last_flow_run, task_runs_by_key


def store() -> Store:
    return get_runtime().store


@dataclass(frozen=True)
class Point:
    x: int
    y: int


BIG = list(range(50_000))  # about 340 kB of JSON: over the 64 KiB inline limit


@task
def small() -> dict[str, int]:
    return {"a": 1}


@task
def big() -> list[int]:
    return list(BIG)


@task
def length(values: list[int]) -> int:
    return len(values)


def test_a_large_result_goes_to_result_storage_and_comes_back_equal(legato_home: Path) -> None:
    @flow
    def large() -> tuple[int, bool]:
        fut = big.submit()
        return length(fut), fut.result() == BIG

    assert large() == (len(BIG), True)
    rt = get_runtime()
    runs = task_runs_by_key(store(), last_flow_run(store()).id)
    stored = runs["big:0"].result
    assert set(stored) == {"ref", "ser", "sha256", "size"}
    assert stored["ser"] == "json"
    data = Path(stored["ref"]).read_bytes()
    assert stored["size"] == len(data)
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    assert Path(stored["ref"]).is_file()
    assert Path(stored["ref"]).is_relative_to(legato_home / "results")
    assert rt.results.decode(stored) == BIG
    assert runs["length:0"].result == {"v": len(BIG)}


def test_a_large_flow_result_is_stored_by_reference() -> None:
    @flow
    def returns_big() -> list[int]:
        return list(BIG)

    assert returns_big() == BIG
    run = last_flow_run(store())
    assert "ref" in run.result
    assert get_runtime().results.decode(run.result) == BIG


def test_a_non_json_result_is_pickled_and_comes_back_equal() -> None:
    @task
    def make_points() -> dict[str, object]:
        return {"points": {Point(1, 2), Point(3, 4)}, "pair": (1, 2)}

    @flow
    def pickled() -> dict[str, object]:
        return make_points()

    value = pickled()
    assert value == {"points": {Point(1, 2), Point(3, 4)}, "pair": (1, 2)}
    [tr] = store().get_task_runs(last_flow_run(store()).id)
    assert tr.result["ser"] == "pickle"
    assert get_runtime().results.decode(tr.result) == value


def test_small_json_results_stay_inline() -> None:
    @flow
    def tiny() -> dict[str, int]:
        return small()

    assert tiny() == {"a": 1}
    run = last_flow_run(store())
    assert run.result == {"v": {"a": 1}}
    [tr] = store().get_task_runs(run.id)
    assert tr.result == {"v": {"a": 1}}


# -- values that cannot be serialized -------------------------------------------------------


def test_a_result_json_cannot_hold_with_pickling_off_is_a_serialization_error(
    configure: Callable[..., Runtime],
) -> None:
    configure(allow_pickle=False)
    calls: list[int] = []

    @task(retries=2)
    def returns_lock() -> object:
        calls.append(1)
        return threading.Lock()

    @flow
    def locked() -> object:
        return returns_lock()

    with pytest.raises(SerializationError, match="LEGATO_ALLOW_PICKLE=false") as info:
        locked()
    assert "returns_lock" in str(info.value)
    assert calls == [1]  # a value that cannot be stored is not retried
    run = last_flow_run(store())
    assert run.state is State.FAILED
    [tr] = store().get_task_runs(run.id)
    assert tr.state is State.FAILED
    assert tr.attempts == 1
    assert (tr.error or "").startswith("SerializationError:")


def test_a_result_that_cannot_be_pickled_is_a_serialization_error() -> None:
    def numbers() -> Iterator[int]:
        yield 1

    @task
    def returns_generator() -> Iterator[int]:
        return numbers()

    @flow
    def generating() -> str:
        try:
            returns_generator()
        except SerializationError as exc:
            return str(exc)
        return "no error"

    message = generating()
    assert "generator" in message
    assert "returns_generator" in message
    run = last_flow_run(store())
    assert run.state is State.COMPLETED
    [tr] = store().get_task_runs(run.id)
    assert tr.state is State.FAILED
    assert (tr.error or "").startswith("SerializationError:")


# -- result storage that cannot be written --------------------------------------------------


@pytest.fixture(params=["a-file", "under-a-file", "read-only-folder"])
def unwritable_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "read-only-folder":
        if os.geteuid() == 0:
            pytest.skip("running as root: a read-only folder is still writable")
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        yield str(folder)
        assert list(folder.iterdir()) == []
        folder.chmod(0o755)
        return
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("precious")
    yield str(blocker) if request.param == "a-file" else str(blocker / "results")
    assert blocker.read_text() == "precious"  # nothing written over it


def test_result_storage_that_cannot_be_written_is_a_clear_error_and_damages_nothing(
    configure: Callable[..., Runtime], unwritable_storage: str
) -> None:
    configure(result_storage=unwritable_storage)

    @flow
    def stores_big() -> int:
        first = small()
        big()
        return len(first)

    with pytest.raises(ResultStorageError, match="LEGATO_RESULT_STORAGE") as info:
        stores_big()
    assert unwritable_storage in str(info.value)
    run = last_flow_run(store())
    assert run.state is State.FAILED
    assert (run.error or "").startswith("ResultStorageError:")
    runs = task_runs_by_key(store(), run.id)
    assert (runs["small:0"].state, runs["small:0"].result) == (State.COMPLETED, {"v": {"a": 1}})
    assert runs["big:0"].state is State.FAILED
    assert (runs["big:0"].error or "").startswith("ResultStorageError:")
    assert runs["big:0"].result is None

    # The store is intact and keeps working for results that need no storage.
    @flow
    def afterwards() -> dict[str, int]:
        return small()

    assert afterwards() == {"a": 1}
    assert last_flow_run(store()).state is State.COMPLETED
    assert [r.flow for r in store().list_flow_runs()] == ["afterwards", "stores_big"]
