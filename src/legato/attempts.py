"""The attempt policy: after an attempt ends, what state the call goes to next, and when.

One pure function, used by the engine (calls run in the flow's process) and by workers
(calls claimed from a pool's queue), so a task retries the same way wherever it runs.

The retry budget: when a call is (re)started, by a first run, a resume or `legato runs
retry`, it gets ``retries + 1`` attempts from there. ``max_attempts`` is the attempts column's
value at which the budget is spent (attempts made before + retries + 1); the queue records it
with the call, so a worker needs nothing else to decide.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum
from typing import Any

from legato.errors import NoWorkerForPool, SerializationError
from legato.models import State
from legato.policies import RetryDelay, retry_delay

# Another try cannot help: the result cannot be stored, or no worker can ever take it.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (SerializationError, NoWorkerForPool)


class Outcome(Enum):
    """How an attempt ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the task raised (or timed out)
    LOST = "lost"  # the machine under it went away: not the task's fault
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class RetryRule:
    """The task options the policy reads."""

    retries: int = 0
    retry_delay: RetryDelay = None
    retry_jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] | None = None

    @classmethod
    def of(cls, task: Any) -> RetryRule:
        """The rule of a ``Task`` (anything with its retry options)."""
        return cls(task.retries, task.retry_delay, task.retry_jitter, task.retry_on)


@dataclass(frozen=True, slots=True)
class Next:
    """What follows an attempt: the call's next state, and for a retry the wait before it."""

    state: State
    delay: float = 0.0

    @property
    def retry(self) -> bool:
        return self.state is State.AWAITING_RETRY


def budget(attempts_before: int, rule: RetryRule) -> int:
    """``max_attempts`` for a call (re)started after ``attempts_before`` attempts."""
    return attempts_before + rule.retries + 1


def decide(
    rule: RetryRule,
    attempt: int,
    max_attempts: int,
    outcome: Outcome,
    error: BaseException | None = None,
    rng: Any = random,
) -> Next:
    """The next state after attempt number ``attempt`` (the attempts column, 1-based)
    ended with ``outcome``. Retry delays count from the start of the current budget, so a
    retried run waits as its first run did."""
    if outcome is Outcome.SUCCEEDED:
        return Next(State.COMPLETED)
    if outcome is Outcome.CANCELLED:
        return Next(State.CANCELLED)
    tries = attempt - (max_attempts - rule.retries - 1)  # attempts made in this budget
    left = attempt < max_attempts
    if outcome is Outcome.LOST:
        # Not the task's fault: retried while attempts remain, whatever retry_on says.
        if not left:
            return Next(State.CRASHED)
        return Next(State.AWAITING_RETRY, _delay(rule, max(tries, 1), rng))
    if left and _retryable(error, rule):
        return Next(State.AWAITING_RETRY, _delay(rule, tries, rng))
    return Next(State.FAILED)


def _retryable(error: BaseException | None, rule: RetryRule) -> bool:
    if not isinstance(error, Exception) or isinstance(error, PERMANENT_ERRORS):
        return False  # KeyboardInterrupt and the like are never retried
    return rule.retry_on is None or isinstance(error, rule.retry_on)


def _delay(rule: RetryRule, tries: int, rng: Any) -> float:
    return retry_delay(rule.retry_delay, tries, rule.retry_jitter, rng)
