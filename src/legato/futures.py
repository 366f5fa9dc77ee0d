"""Futures: the promise of a task run's result, and how a call's arguments hold them.

A future passed to another task is a dependency: the call waits for it, and its input
fingerprint counts the future by the upstream call's fingerprint.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future as _CF
from typing import Any, Generic, TypeVar

from legato.models import State, TaskRun

R = TypeVar("R")


class Future(Generic[R]):
    """The promise of a task run's result. Pass it to other tasks to make them depend on it."""

    __slots__ = ("_cf", "_observed", "fingerprint", "key", "name", "state", "task_run_id")

    def __init__(
        self,
        task_run_id: str,
        key: str,
        name: str,
        state: State = State.PENDING,
        fingerprint: str | None = None,
    ):
        self.task_run_id = task_run_id
        self.key = key
        self.name = name
        self.state = state
        # The input fingerprint of the call: a task given this future counts it by this.
        self.fingerprint = fingerprint
        self._cf: _CF[R] = _CF()
        self._observed = False

    def result(self, timeout: float | None = None) -> R:
        """The task's return value; re-raises its exception if it failed."""
        self._observed = True
        return self._cf.result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._observed = True
        return self._cf.exception(timeout)

    def done(self) -> bool:
        return self._cf.done()

    def add_done_callback(self, fn: Callable[[Future[R]], None]) -> None:
        self._cf.add_done_callback(lambda _: fn(self))

    def _finish(self, state: State, value: Any = None, error: BaseException | None = None) -> None:
        if self._cf.done():
            return  # already settled (e.g. cancelled while its body was still running)
        self.state = state
        if error is None:
            self._cf.set_result(value)
        else:
            self._cf.set_exception(error)

    def __repr__(self) -> str:
        return f"<Future {self.key} {self.state.value}>"


def resolved(
    value: R,
    state: State = State.COMPLETED,
    run: TaskRun | None = None,
) -> Future[R]:
    """A future that is already done (a task called outside a flow, or a replayed call)."""
    if run is None:
        fut: Future[R] = Future("", "", "", state)
    else:
        fut = Future(run.id, run.key, run.task, state, run.fingerprint)
    fut._cf.set_result(value)
    return fut


def future_fingerprint(value: Any) -> str | None:
    """What a future argument counts as in a fingerprint: its call's fingerprint."""
    if not isinstance(value, Future):
        return None
    return value.fingerprint or f"key:{value.key}"


def find_futures(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Future[Any]]:
    """Futures among the arguments, also inside lists, tuples, sets and dict values."""
    found: list[Future[Any]] = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, Future):
            found.append(value)
        elif isinstance(value, list | tuple | set | frozenset):
            found.extend(v for v in value if isinstance(v, Future))
        elif isinstance(value, dict):
            found.extend(v for v in value.values() if isinstance(v, Future))
    return found


def resolve(value: Any) -> Any:
    if isinstance(value, Future):
        return value.result()
    if isinstance(value, list | tuple | set | frozenset) and any(
        isinstance(v, Future) for v in value
    ):
        return type(value)(resolve(v) for v in value)
    if isinstance(value, dict) and any(isinstance(v, Future) for v in value.values()):
        return {k: resolve(v) for k, v in value.items()}
    return value
