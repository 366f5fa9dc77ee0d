"""Group commit: many state changes, few transactions.

``record(op)`` queues a change that may wait a little (a RUNNING mark, a log line);
``commit(op)`` queues a change and returns only once it, and everything queued before it, is
committed. Whoever commits first takes every queued change into one transaction, so concurrent
tasks share commits, and order is kept: a change is never committed before an earlier one.
A background thread commits what was only recorded within ``delay`` seconds.

When the store refuses a write, the batch goes back to the head of the queue (nothing queued
is lost while the process lives), and:

- a permanent failure (``StoreUnavailable``: disk full, read-only database, I/O error) is
  remembered: every later ``record`` or ``commit``, in any thread, raises it at once, so the
  run stops instead of piling up changes that cannot be written. ``flush`` (and ``close``)
  try again, and a write that succeeds clears it;
- a transient one (``StoreBusy``: a locked database, a dropped connection) is tried again
  with backoff, for at most ``give_up_after`` seconds, with one warning on standard error;
  then it counts as permanent;
- a change the transition table forbids (``IllegalTransition``) is dropped, the rest of its
  batch committed, and the refusal written once to standard error. It is raised only to the
  ``commit`` call that queued that change, once the batch is in, whichever thread wrote the
  batch: a caller whose own changes shared the batch is not told of another's refusal, and
  the background thread takes it as handled, not as a failed write. A change only
  ``record``-ed has no caller waiting for it: its refusal is written to standard error only;
- any other refusal is raised to the committing caller as a ``StoreError``; the background
  thread tries it again, with backoff, for at most ``give_up_after`` seconds, then remembers
  it as permanent.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeAlias

from legato.errors import IllegalTransition, StoreBusy, StoreError, StoreUnavailable
from legato.store import Op, RunStore

MAX_BACKOFF = 5.0

# The refusals of one ``commit`` call's changes, collected by whichever thread writes them.
_Refusals: TypeAlias = list[IllegalTransition]


class Recorder:
    def __init__(
        self, store: RunStore, *, delay: float = 0.05, give_up_after: float = 60.0
    ) -> None:
        self.store = store
        self.delay = delay
        self.give_up_after = give_up_after
        self._lock = threading.Lock()  # guards the queue and counters
        self._commit_lock = threading.Lock()  # held by whoever is writing a batch
        # Each queued change with the refusals list of the commit call that queued it (None
        # for a change only recorded): a refusal goes to the op's owner, not the committer.
        self._pending: list[tuple[Op, _Refusals | None]] = []
        self._queued = 0  # ops ever queued
        self._committed = 0  # ops ever committed (a prefix of the queue)
        self._wake = threading.Event()
        self._closing = threading.Event()  # ends the background thread's waits at once
        self._closed = False
        self._soon = False
        self._thread: threading.Thread | None = None
        self._failure: StoreUnavailable | None = None  # permanent: raised to every caller
        # Called with each queued op, in the thread that queued it (the CLI's progress bar).
        self.listeners: list[Callable[[Op], None]] = []

    @property
    def failure(self) -> StoreUnavailable | None:
        """The permanent store failure that stops every record and commit, if any."""
        return self._failure

    def record(self, op: Op, *, soon: bool = False) -> None:
        """Queue a change; it is committed within ``delay`` seconds or with the next commit.
        ``soon``: commit it as soon as the background thread can (another process waits for
        it, e.g. a worker for a queued task run), without making this thread wait.

        Raises ``StoreUnavailable`` (the change stays queued) once the store has failed for
        good."""
        with self._lock:
            self._pending.append((op, None))
            self._queued += 1
            if soon:
                self._soon = True
        for listener in self.listeners:
            listener(op)
        self._raise_failure()
        if self._thread is None:
            self._start()
        self._wake.set()

    def announce(self, op: Op) -> None:
        """Tell listeners about a change another process already committed (a worker's)."""
        for listener in self.listeners:
            listener(op)

    def commit(self, *ops: Op) -> None:
        """Queue ``ops`` and wait until they (and all queued before) are committed.

        Raises ``IllegalTransition`` when the store refused one of ``ops`` (it is dropped; the
        rest, and everything queued with it, is committed), never for another caller's."""
        mine: _Refusals = []
        with self._lock:
            self._pending.extend((op, mine) for op in ops)
            self._queued += len(ops)
            target = self._queued
        for listener in self.listeners:
            for op in ops:
                listener(op)
        self._commit_upto(target, again=False)
        if mine:  # filled by whichever thread wrote our ops, before it let the lock go
            raise mine[0]

    def flush(self) -> None:
        """Commit everything queued so far (trying again after a permanent failure). A
        refused change is dropped and raised to its own ``commit`` caller, not here."""
        with self._lock:
            target = self._queued
        self._commit_upto(target, again=True)

    def _raise_failure(self) -> None:
        failure = self._failure
        if failure is not None:
            # A new exception for each caller: one object raised in many threads at once
            # would collect all their tracebacks.
            raise StoreUnavailable(str(failure)) from failure.__cause__

    def _commit_upto(self, target: int, *, again: bool) -> None:
        with self._commit_lock:
            if self._committed >= target:
                return  # another thread's batch already carried ours
            if not again:
                self._raise_failure()
            busy_since: float | None = None
            backoff = self.delay
            while True:
                with self._lock:
                    batch, self._pending = self._pending, []
                    upto = self._queued
                try:
                    self.store.apply([op for op, _ in batch])
                except BaseException as exc:
                    with self._lock:  # keep the batch, in order, for the next try
                        self._pending[:0] = batch
                    if not isinstance(exc, Exception):
                        raise
                    if isinstance(exc, IllegalTransition) and exc.index in range(len(batch)):
                        self._drop(exc)
                        continue
                    if isinstance(exc, StoreBusy):
                        at = time.monotonic()
                        if busy_since is None:
                            busy_since = at
                            print(
                                f"legato: {exc}; trying again for up to {self.give_up_after:g} s",
                                file=sys.stderr,
                            )
                        if at + backoff - busy_since < self.give_up_after:
                            time.sleep(backoff)
                            backoff = min(backoff * 2, MAX_BACKOFF)
                            continue
                        self._fail(f"{exc} (gave up after {at - busy_since:.0f} s)", exc)
                    if isinstance(exc, StoreUnavailable):
                        self._fail(str(exc), exc)
                    if isinstance(exc, StoreError):
                        raise
                    raise StoreError(f"could not commit {len(batch)} state changes: {exc}") from exc
                self._committed = upto
                self._failure = None
                return

    def _drop(self, refused: IllegalTransition) -> None:
        """Drop the change the store refused (the batch is back at the head of the queue), so
        it does not hold up the changes queued with it; its owner, if it waits, is told."""
        assert refused.index is not None
        with self._lock:
            _, owner = self._pending.pop(refused.index)
        print(f"legato: state change refused and dropped: {refused}", file=sys.stderr)
        if owner is not None:
            owner.append(refused)

    def _fail(self, message: str, cause: BaseException) -> None:
        """Remember a permanent failure and raise it."""
        failure = StoreUnavailable(message)
        failure.__cause__ = cause.__cause__ or cause
        self._failure = failure
        self._raise_failure()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._loop, name="legato-recorder", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        backoff = self.delay
        failing_since: float | None = None
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                break
            if self._failure is not None:
                continue  # every caller raises it now; an explicit flush tries again
            if not self._soon:
                self._closing.wait(self.delay)  # let a batch gather
            self._soon = False
            try:
                with self._lock:
                    target = self._queued
                self._commit_upto(target, again=False)
                backoff = self.delay
                failing_since = None
            except StoreUnavailable:
                failing_since = None  # remembered: the next record or commit raises it
            except Exception as exc:  # keep the changes and try again, for a while
                at = time.monotonic()
                if failing_since is None:
                    failing_since = at
                    print(
                        f"legato: state store write failed: {exc}; trying again for up to "
                        f"{self.give_up_after:g} s",
                        file=sys.stderr,
                    )
                if at - failing_since >= self.give_up_after:
                    failure = StoreUnavailable(
                        f"{exc} (gave up after {at - failing_since:.0f} s of retries)"
                    )
                    failure.__cause__ = exc
                    self._failure = failure
                    failing_since = None
                    continue
                self._closing.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                self._wake.set()

    def close(self) -> None:
        """Commit what is left and stop the background thread."""
        self._closed = True
        self._closing.set()
        self._wake.set()
        self.flush()

    @property
    def pending(self) -> Sequence[Op]:
        with self._lock:
            return [op for op, _ in self._pending]
