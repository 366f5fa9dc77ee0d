"""Results: small ones inline, large or non-JSON ones in result storage; clear errors when a
result cannot be serialized or stored, and nothing else damaged."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from legato import State, flow, task
from legato.errors import ResultMissing, ResultStorageError, SerializationError
from legato.results import ResultStorage
from legato.resume import continue_run
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


# -- a full result disk, and result files lost or altered after the fact --------------------

# Runs Python with a file-size limit (RLIMIT_FSIZE, which binds root too) and SIGXFSZ ignored,
# so a write past the limit fails with EFBIG as on a full disk: python -c LIMITED N ARGS...
LIMITED = (
    "import os, resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "n = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)

WRITE_A_BIG_RESULT = """
import json, sys
from legato.results import ResultStorage
storage = ResultStorage(sys.argv[1], inline_max_bytes=10)
try:
    print(json.dumps({"stored": storage.encode(list(range(200_000)))}))
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
"""


@pytest.mark.parametrize("limit", [0, 4096, 300_000])
def test_a_result_write_past_a_file_size_limit_leaves_no_file_behind(
    tmp_path: Path, limit: int
) -> None:
    folder = tmp_path / "results"
    if limit:
        folder.mkdir()
        (folder / "earlier.json").write_text("[1]")  # what was there stays as it was
    proc = subprocess.run(
        [sys.executable, "-c", LIMITED, str(limit), "-c", WRITE_A_BIG_RESULT, str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout)
    assert outcome.get("error") == "ResultStorageError", outcome  # 1.3 MB: over every limit
    assert f"cannot write a result to the result storage {str(folder)!r}" in outcome["message"]
    assert "File too large" in outcome["message"] and "free space" in outcome["message"]
    left = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert left == (["earlier.json"] if limit else [])  # no partial, empty or temporary file
    # Without the limit the same write succeeds, with nothing else beside it.
    stored = ResultStorage(str(folder), inline_max_bytes=10).encode(list(range(200_000)))
    assert sorted(p.name for p in folder.iterdir()) == sorted([*left, Path(stored["ref"]).name])


@task
def many_numbers() -> list[int]:
    LEDGER.append("many_numbers")
    return list(BIG)


LEDGER: list[str] = []
FAIL_AFTER = {"on": True}


@flow
def counts_numbers() -> int:
    n = len(many_numbers())
    if FAIL_AFTER["on"]:
        raise RuntimeError("failing after the call, this once")
    return n


def _stored_big_result() -> tuple[str, dict[str, object]]:
    LEDGER.clear()
    FAIL_AFTER["on"] = True
    with pytest.raises(RuntimeError, match="this once"):
        counts_numbers()
    run = last_flow_run(store())
    [tr] = store().get_task_runs(run.id)
    assert tr.state is State.COMPLETED and LEDGER == ["many_numbers"]
    return run.id, tr.result


@pytest.mark.parametrize("damage", ["deleted", "truncated", "one byte changed"])
def test_a_lost_or_altered_result_file_is_result_missing_naming_the_file(damage: str) -> None:
    _, stored = _stored_big_result()
    path = Path(str(stored["ref"]))
    data = path.read_bytes()
    if damage == "deleted":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(data[:4096])  # as a full disk once left it
    else:
        path.write_bytes(data[:-2] + (b"1" if data[-2:-1] != b"1" else b"2") + data[-1:])
    with pytest.raises(ResultMissing) as info:
        get_runtime().results.decode(stored, what="result of task run 'many_numbers:0'")
    message = str(info.value)
    assert str(path) in message and "result of task run 'many_numbers:0'" in message
    assert ("is missing" if damage == "deleted" else "is corrupt") in message
    if damage == "truncated":
        assert f"4096 bytes, not the {len(data)} recorded" in message
    if damage == "one byte changed":
        assert "sha256" in message


def test_a_stored_form_without_a_checksum_is_still_read() -> None:
    _, stored = _stored_big_result()
    old = {"ref": stored["ref"], "ser": stored["ser"]}  # as Legato wrote them before
    assert get_runtime().results.decode(old) == BIG
    path = Path(str(stored["ref"]))
    path.write_bytes(path.read_bytes()[:4096])
    with pytest.raises(ResultMissing, match=r"is corrupt.*not valid JSON"):
        get_runtime().results.decode(old)


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_retry_runs_again_a_call_whose_result_file_is_lost(rt: Runtime, damage: str) -> None:
    run_id, stored = _stored_big_result()
    path = Path(str(stored["ref"]))
    if damage == "deleted":
        path.unlink()
    else:
        path.write_bytes(b"")  # as a full disk once left it
    FAIL_AFTER["on"] = False
    finished, error = continue_run(run_id, retry=True)
    assert error is None and finished.state is State.COMPLETED
    assert rt.results.decode(finished.result) == len(BIG)
    assert LEDGER == ["many_numbers", "many_numbers"]  # its result was gone: it ran again
