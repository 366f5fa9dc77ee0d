"""Retry delays, jitter, retry filters and cache keys: pure functions."""

from __future__ import annotations

import random
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from legato import policies


class FixedRandom:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(
    ("delays", "attempt", "expected"),
    [
        (None, 1, 0.0),
        (5, 1, 5.0),
        (5, 7, 5.0),
        (2.5, 3, 2.5),
        ([10, 60, 300], 1, 10.0),
        ([10, 60, 300], 2, 60.0),
        ([10, 60, 300], 3, 300.0),
        ([10, 60, 300], 9, 300.0),  # the last entry repeats
        ((1, 2), 2, 2.0),
        ([], 1, 0.0),
        (-3, 1, 0.0),
    ],
)
def test_retry_delay_per_attempt(delays: object, attempt: int, expected: float) -> None:
    assert policies.retry_delay(delays, attempt) == expected  # type: ignore[arg-type]


def test_jitter_spreads_the_delay_to_both_ends() -> None:
    assert policies.retry_delay(10, 1, 0.5, rng=FixedRandom(0.0)) == pytest.approx(5.0)
    assert policies.retry_delay(10, 1, 0.5, rng=FixedRandom(0.5)) == pytest.approx(10.0)
    assert policies.retry_delay(10, 1, 0.5, rng=FixedRandom(0.999999)) == pytest.approx(
        15.0, rel=1e-5
    )
    assert policies.retry_delay(0, 1, 1.0, rng=FixedRandom(0.9)) == 0.0


@given(
    base=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    jitter=st.floats(min_value=0, max_value=1),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_jitter_stays_within_its_bounds(base: float, jitter: float, seed: int) -> None:
    delay = policies.retry_delay([base], 1, jitter, rng=random.Random(seed))
    assert base * (1 - jitter) - 1e-9 <= delay <= base * (1 + jitter) + 1e-9
    assert delay >= 0


def test_jitter_actually_varies_the_delay() -> None:
    rng = random.Random(1)
    delays = {policies.retry_delay(10, 1, 0.3, rng=rng) for _ in range(20)}
    assert len(delays) > 1


def test_cache_key_depends_on_task_code_and_inputs() -> None:
    key = policies.cache_key("t", "code1", (1, "a"), {"x": [1, 2]})
    assert key == policies.cache_key("t", "code1", (1, "a"), {"x": [1, 2]})
    assert key is not None and len(key) == 64
    others = {
        policies.cache_key("u", "code1", (1, "a"), {"x": [1, 2]}),
        policies.cache_key("t", "code2", (1, "a"), {"x": [1, 2]}),
        policies.cache_key("t", "code1", (2, "a"), {"x": [1, 2]}),
        policies.cache_key("t", "code1", (1, "a"), {"x": [2, 1]}),
        policies.cache_key("t", "code1", (1, "a"), {"y": [1, 2]}),
    }
    assert key not in others and len(others) == 5


def test_cache_key_ignores_keyword_order() -> None:
    assert policies.cache_key("t", "c", (), {"a": 1, "b": 2}) == policies.cache_key(
        "t", "c", (), {"b": 2, "a": 1}
    )


def test_cache_key_of_non_json_inputs_uses_pickle_and_is_stable() -> None:
    a = policies.cache_key("t", "c", ({1, 2},), {})
    assert a is not None
    assert a == policies.cache_key("t", "c", ({1, 2},), {})
    assert a != policies.cache_key("t", "c", ({1, 3},), {})


def test_inputs_that_cannot_be_fingerprinted_give_no_cache_key() -> None:
    assert policies.inputs_fingerprint((threading.Lock(),), {}) is None
    assert policies.cache_key("t", "c", (threading.Lock(),), {}) is None


def test_code_fingerprint_changes_with_the_code() -> None:
    def one() -> int:
        return 1

    def two() -> int:
        return 2

    assert policies.code_fingerprint(one) == policies.code_fingerprint(one)
    assert policies.code_fingerprint(one) != policies.code_fingerprint(two)
    fp = policies.code_fingerprint(eval("lambda: 3"))  # no source: falls back to bytecode
    assert isinstance(fp, str) and len(fp) == 16
