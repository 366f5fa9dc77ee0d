"""Group commit: many state changes, few transactions.

``record(op)`` queues a change that may wait a little (a RUNNING mark, a log line);
``commit(op)`` queues a change and returns only once it, and everything queued before it, is
committed. Whoever commits first takes every queued change into one transaction, so concurrent
tasks share commits, and order is kept: a change is never committed before an earlier one.
A background thread commits what was only recorded within ``delay`` seconds.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence

from legato.errors import StoreError
from legato.store import Op, Store


class Recorder:
    def __init__(self, store: Store, *, delay: float = 0.05) -> None:
        self.store = store
        self.delay = delay
        self._lock = threading.Lock()  # guards the queue and counters
        self._commit_lock = threading.Lock()  # held by whoever is writing a batch
        self._pending: list[Op] = []
        self._queued = 0  # ops ever queued
        self._committed = 0  # ops ever committed (a prefix of the queue)
        self._wake = threading.Event()
        self._closed = False
        self._soon = False
        self._thread: threading.Thread | None = None
        # Called with each queued op, in the thread that queued it (the CLI's progress bar).
        self.listeners: list[Callable[[Op], None]] = []

    def record(self, op: Op, *, soon: bool = False) -> None:
        """Queue a change; it is committed within ``delay`` seconds or with the next commit.
        ``soon``: commit it as soon as the background thread can (another process waits for
        it, e.g. a worker for a queued task run), without making this thread wait."""
        with self._lock:
            self._pending.append(op)
            self._queued += 1
            if soon:
                self._soon = True
        for listener in self.listeners:
            listener(op)
        if self._thread is None:
            self._start()
        self._wake.set()

    def announce(self, op: Op) -> None:
        """Tell listeners about a change another process already committed (a worker's)."""
        for listener in self.listeners:
            listener(op)

    def commit(self, *ops: Op) -> None:
        """Queue ``ops`` and wait until they (and all queued before) are committed."""
        with self._lock:
            self._pending.extend(ops)
            self._queued += len(ops)
            target = self._queued
        for listener in self.listeners:
            for op in ops:
                listener(op)
        self._commit_upto(target)

    def flush(self) -> None:
        """Commit everything queued so far."""
        with self._lock:
            target = self._queued
        self._commit_upto(target)

    def _commit_upto(self, target: int) -> None:
        with self._commit_lock:
            if self._committed >= target:
                return  # another thread's batch already carried ours
            with self._lock:
                batch, self._pending = self._pending, []
                upto = self._queued
            try:
                self.store.apply(batch)
            except BaseException as exc:
                with self._lock:  # keep the batch, in order, for the next try
                    self._pending[:0] = batch
                if isinstance(exc, StoreError | KeyboardInterrupt | SystemExit):
                    raise
                raise StoreError(f"could not commit {len(batch)} state changes: {exc}") from exc
            self._committed = upto

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._loop, name="legato-recorder", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        backoff = self.delay
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                break
            if not self._soon:
                threading.Event().wait(self.delay)  # let a batch gather
            self._soon = False
            try:
                self.flush()
                backoff = self.delay
            except Exception as exc:  # keep the changes and try again later
                print(f"legato: state store write failed, will retry: {exc}", file=sys.stderr)
                threading.Event().wait(backoff)
                backoff = min(backoff * 2, 5.0)
                self._wake.set()

    def close(self) -> None:
        """Commit what is left and stop the background thread."""
        self._closed = True
        self._wake.set()
        self.flush()

    @property
    def pending(self) -> Sequence[Op]:
        with self._lock:
            return list(self._pending)
