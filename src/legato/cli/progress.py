"""The live progress display of `legato run`: task runs done / total, failures."""

from __future__ import annotations

import threading
from types import TracebackType

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from legato.models import State
from legato.recorder import Recorder
from legato.store import InsertTaskRun, Op, Store, UpdateTaskRun

_DONE = {State.COMPLETED, State.CACHED}
_BAD = {State.FAILED, State.CANCELLED}


class RunProgress:
    """Counts task runs from the ops the recorder sees; no extra queries."""

    def __init__(
        self, recorder: Recorder, flow_name: str, enabled: bool, store: Store | None = None
    ) -> None:
        self.recorder = recorder
        self.total = self.done = self.failed = self.retrying = 0
        self._lock = threading.Lock()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[extra]}"),
            TimeElapsedColumn(),
            transient=False,
            disable=not enabled,
        )
        self._bar = self._progress.add_task(flow_name, total=None, extra="")
        self._pools: dict[str, str | None] = {}  # task run id -> pool
        self._queued: dict[str, str | None] = {}  # queued for a pool, not ended yet
        self._unserved: list[str] = []
        self._stop = threading.Event()
        self._store = store

    def _on_op(self, op: Op) -> None:
        with self._lock:
            if isinstance(op, UpdateTaskRun) and op.values.get("queued_at") is not None:
                self._queued[op.id] = self._pools.get(op.id)
            elif isinstance(op, UpdateTaskRun):
                self._queued.pop(op.id, None)
            if isinstance(op, InsertTaskRun):
                self._pools[op.run.id] = op.run.pool
                self.total += 1
                if op.run.state in _DONE:
                    self.done += 1
            elif isinstance(op, UpdateTaskRun):
                if op.state in _DONE:
                    self.done += 1
                elif op.state in _BAD:
                    self.failed += 1
                elif op.state is State.AWAITING_RETRY:
                    self.retrying += 1
            else:
                return
            self._refresh()

    def _refresh(self) -> None:
        """Redraw the bar (call with the lock held)."""
        extra = []
        if self._unserved:
            pools = escape(", ".join(self._unserved))
            extra.append(f"[yellow]waiting for a worker in pool {pools}[/]")
        if self.failed:
            extra.append(f"[red]{self.failed} failed[/]")
        if self.retrying:
            extra.append(f"[yellow]{self.retrying} retries[/]")
        self._progress.update(
            self._bar, total=self.total, completed=self.done + self.failed, extra=" ".join(extra)
        )

    def _watch_workers(self) -> None:
        """Every 2 s: which pools with queued work have no live worker?"""
        while not self._stop.wait(2.0):
            with self._lock:
                pools = {p for p in self._queued.values() if p}
            if not pools or self._store is None:
                unserved: list[str] = []
            else:
                try:
                    online = {w.pool for w in self._store.list_workers()}
                except Exception:
                    continue
                unserved = sorted(pools - online)
            with self._lock:
                if unserved != self._unserved:
                    self._unserved = unserved
                    self._refresh()

    def __enter__(self) -> RunProgress:
        self.recorder.listeners.append(self._on_op)
        self._progress.start()
        threading.Thread(target=self._watch_workers, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self.recorder.listeners.remove(self._on_op)
        self._progress.stop()
