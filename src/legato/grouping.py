"""Group commit for callers on many threads: one round trip for everything sent meanwhile.

Each caller blocks until its own item is written, as if it had written it alone; while one
batch is being written, the items that arrive wait and go together in the next. Nothing waits
for a batch to fill, so a lone caller pays one round trip, no more.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T, R]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    """``submit(item)`` returns ``write(batch)[i]`` for its item; ``write`` runs on one
    caller's thread at a time, with every item queued since the last batch began."""

    def __init__(self, write: Callable[[list[T]], Sequence[R]]) -> None:
        self._write = write
        self._cond = threading.Condition()
        self._pending: list[_Slot[T, R]] = []
        self._writing = False

    def submit(self, item: T) -> R:
        slot: _Slot[T, R] = _Slot(item)
        with self._cond:
            self._pending.append(slot)
            while not slot.done:
                if self._writing:
                    self._cond.wait()
                    continue
                self._writing = True  # this caller writes the batch, its own item in it
                batch, self._pending = self._pending, []
                self._cond.release()
                try:
                    self._write_batch(batch)
                finally:
                    self._cond.acquire()
                    self._writing = False
                    self._cond.notify_all()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _write_batch(self, batch: list[_Slot[T, R]]) -> None:
        try:
            results = self._write([s.item for s in batch])
        except BaseException as exc:  # every caller in the batch sees the failure
            for s in batch:
                s.error, s.done = exc, True
            return
        for s, result in zip(batch, results, strict=True):
            s.result, s.done = result, True
