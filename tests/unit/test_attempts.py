"""The attempt policy: one pure function decides what follows an attempt, for the engine and
workers alike."""

from __future__ import annotations

import random

import pytest

from legato.attempts import Outcome, RetryRule, budget, decide
from legato.errors import NoWorkerForPool, SerializationError
from legato.models import State

FAILED, LOST = Outcome.FAILED, Outcome.LOST


def test_a_success_completes_and_a_cancellation_cancels_whatever_is_left() -> None:
    rule = RetryRule(retries=3)
    assert decide(rule, 1, budget(0, rule), Outcome.SUCCEEDED).state is State.COMPLETED
    assert decide(rule, 1, budget(0, rule), Outcome.CANCELLED).state is State.CANCELLED


def test_failures_retry_until_the_budget_is_spent() -> None:
    rule = RetryRule(retries=2)
    top = budget(0, rule)
    assert top == 3
    err = ValueError("x")
    assert decide(rule, 1, top, FAILED, err).state is State.AWAITING_RETRY
    assert decide(rule, 2, top, FAILED, err).state is State.AWAITING_RETRY
    assert decide(rule, 3, top, FAILED, err).state is State.FAILED
    no_retries = RetryRule(retries=0)
    assert decide(no_retries, 1, budget(0, no_retries), FAILED, err).state is State.FAILED


def test_a_retried_call_gets_a_full_budget_and_its_delays_start_over() -> None:
    rule = RetryRule(retries=2, retry_delay=[10, 60, 300])
    first = [decide(rule, n, budget(0, rule), FAILED, ValueError()) for n in (1, 2)]
    # `legato runs retry` after 3 attempts: the attempts column goes on counting (4, 5, 6).
    again = [decide(rule, n, budget(3, rule), FAILED, ValueError()) for n in (4, 5, 6)]
    assert [s.delay for s in first] == [10, 60]
    assert [s.delay for s in again[:2]] == [10, 60]
    assert again[2].state is State.FAILED


def test_retry_on_filters_by_exception_type_subclasses_included() -> None:
    rule = RetryRule(retries=3, retry_on=(OSError, TimeoutError))
    assert decide(rule, 1, 4, FAILED, ConnectionResetError()).retry
    assert not decide(rule, 1, 4, FAILED, KeyError("k")).retry


@pytest.mark.parametrize(
    "error",
    [KeyboardInterrupt(), SystemExit(1), SerializationError("x"), NoWorkerForPool("gpu")],
)
def test_base_exceptions_and_permanent_errors_are_never_retried(error: BaseException) -> None:
    rule = RetryRule(retries=3, retry_on=(BaseException,))
    assert decide(rule, 1, 4, FAILED, error).state is State.FAILED


def test_a_lost_attempt_is_retried_whatever_retry_on_says_then_crashed() -> None:
    rule = RetryRule(retries=1, retry_delay=5, retry_on=(OSError,))
    step = decide(rule, 1, budget(0, rule), LOST, RuntimeError("node gone"))
    assert step.state is State.AWAITING_RETRY and step.delay == 5
    assert decide(rule, 2, budget(0, rule), LOST, RuntimeError()).state is State.CRASHED


def test_jitter_spreads_the_delay_within_its_bounds() -> None:
    rule = RetryRule(retries=5, retry_delay=100, retry_jitter=0.5)
    rng = random.Random(7)
    delays = {decide(rule, 1, 6, FAILED, ValueError(), rng).delay for _ in range(50)}
    assert all(50 <= d <= 150 for d in delays) and len(delays) > 1
