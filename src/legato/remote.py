"""Waiting for task runs that workers execute: one thread per process, not one per task.

The engine queues a call for its pool and registers its future here; this thread waits for
any of the registered task runs to end (LISTEN/NOTIFY on PostgreSQL, a long-poll over HTTP)
and settles their futures, which starts their dependents.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from legato.models import TaskRun
from legato.store import RunStore

log = logging.getLogger("legato.remote")

Settle = Callable[[TaskRun], None]


class RemoteWaiter:
    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._waiting: dict[str, Settle] = {}
        self._added = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def watch(self, task_run_id: str, settle: Settle) -> None:
        """Call ``settle(task_run)`` once the task run ends (or pauses)."""
        with self._lock:
            self._waiting[task_run_id] = settle
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="legato-remote", daemon=True
                )
                self._thread.start()
        self._added.set()

    def forget(self, task_run_id: str) -> None:
        with self._lock:
            self._waiting.pop(task_run_id, None)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                ids = list(self._waiting)
            if not ids:
                self._added.wait(1.0)
                self._added.clear()
                continue
            self._added.clear()
            try:
                # Short waits: a call registered meanwhile is looked at within 0.2 s.
                ended = self.store.wait_for_task_runs(ids, timeout=0.2)
            except Exception as exc:
                log.warning("waiting for remote task runs failed (%s); retrying", exc)
                self._stop.wait(1.0)
                continue
            for tr in ended:
                with self._lock:
                    settle = self._waiting.pop(tr.id, None)
                if settle is not None:
                    try:
                        settle(tr)
                    except Exception:
                        log.exception("settling task run %s failed", tr.id)

    def close(self) -> None:
        self._stop.set()
        self._added.set()
