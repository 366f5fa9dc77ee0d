"""Result serialization and storage, outside any run."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legato.errors import ResultMissing, ResultStorageError, SerializationError
from legato.results import ResultStorage


@dataclass
class Record:
    name: str
    values: list[float]


@pytest.fixture
def storage(tmp_path: Path) -> ResultStorage:
    return ResultStorage(str(tmp_path / "results"), inline_max_bytes=1000)


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -7, 2**70, 1.5, "", "text ✓", [], {}, [1, "a", None], {"a": {"b": [1.5]}}],
)
def test_small_json_values_are_inline(storage: ResultStorage, value: object) -> None:
    stored = storage.encode(value)
    assert stored == {"v": value}
    assert storage.decode(stored) == value
    assert not Path(storage.url).exists()  # nothing written


def test_large_json_goes_to_storage_by_reference(storage: ResultStorage) -> None:
    value = {"rows": list(range(1000))}
    stored = storage.encode(value)
    assert stored["ser"] == "json"
    assert Path(stored["ref"]).parent == Path(storage.url)
    assert Path(stored["ref"]).suffix == ".json"
    assert storage.decode(stored) == value


def test_a_long_string_goes_to_storage(storage: ResultStorage) -> None:
    value = "x" * 5000
    stored = storage.encode(value)
    assert "ref" in stored
    assert storage.decode(stored) == value


@pytest.mark.parametrize(
    "value",
    [
        (1, 2),
        {1, 2},
        {1: "int key"},
        Record("r", [1.0, 2.0]),
        b"bytes",
        [float("inf")],
    ],
)
def test_values_json_would_change_are_pickled_and_come_back_equal(
    storage: ResultStorage, value: object
) -> None:
    stored = storage.encode(value)
    assert stored["ser"] == "pickle"
    back = storage.decode(stored)
    assert back == value
    assert type(back) is type(value)


def test_nan_comes_back_as_nan(storage: ResultStorage) -> None:
    stored = storage.encode(float("nan"))
    assert "ref" in stored
    assert math.isnan(storage.decode(stored))


def test_without_pickling_a_non_json_value_is_a_serialization_error(tmp_path: Path) -> None:
    storage = ResultStorage(str(tmp_path), allow_pickle=False)
    with pytest.raises(SerializationError, match="LEGATO_ALLOW_PICKLE=false") as info:
        storage.encode({1, 2}, what="result of task 'load'")
    assert "result of task 'load'" in str(info.value)
    assert "set" in str(info.value)
    assert storage.encode([1, 2]) == {"v": [1, 2]}


@pytest.mark.parametrize(
    "value", [threading.Lock(), (i for i in range(3))], ids=["lock", "generator"]
)
def test_an_unpicklable_value_is_a_serialization_error(
    storage: ResultStorage, value: object
) -> None:
    with pytest.raises(SerializationError, match=type(value).__name__) as info:
        storage.encode(value, what="result of task 'bad'")
    assert "result of task 'bad'" in str(info.value)
    assert not Path(storage.url).exists() or not any(Path(storage.url).iterdir())


def test_unwritable_storage_is_a_result_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    storage = ResultStorage(str(blocker), inline_max_bytes=10)
    with pytest.raises(ResultStorageError, match="LEGATO_RESULT_STORAGE") as info:
        storage.encode("y" * 100)
    assert str(blocker) in str(info.value)
    assert blocker.read_text() == "keep"
    assert storage.encode("small") == {"v": "small"}  # inline values still work


def test_a_missing_stored_result_is_result_missing_naming_the_file(
    storage: ResultStorage,
) -> None:
    stored = storage.encode(list(range(1000)))
    Path(stored["ref"]).unlink()
    with pytest.raises(ResultMissing, match="is missing") as info:
        storage.decode(stored, what="result of task run 'load:0' (id 01ab)")
    assert stored["ref"] in str(info.value)
    assert "result of task run 'load:0' (id 01ab)" in str(info.value)
    assert isinstance(info.value, ResultStorageError)


def test_decoding_something_that_is_not_a_stored_result(storage: ResultStorage) -> None:
    with pytest.raises(SerializationError):
        storage.decode([1, 2])


def test_an_fsspec_url_works(tmp_path: Path) -> None:
    storage = ResultStorage(f"file://{tmp_path}/remote", inline_max_bytes=10)
    stored = storage.encode(list(range(100)))
    assert stored["ref"].startswith("file://")
    assert storage.decode(stored) == list(range(100))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values | st.tuples(st.integers()) | st.sets(st.integers(), max_size=3))
def test_every_value_round_trips(storage: ResultStorage, value: object) -> None:
    assert storage.decode(storage.encode(value)) == value
