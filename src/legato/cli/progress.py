"""The live progress display of `legato run`: task runs done / total, failures."""

from __future__ import annotations

import threading
from types import TracebackType

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from legato.models import State
from legato.recorder import Recorder
from legato.store import InsertTaskRun, Op, UpdateTaskRun

_DONE = {State.COMPLETED, State.CACHED}
_BAD = {State.FAILED, State.CANCELLED}


class RunProgress:
    """Counts task runs from the ops the recorder sees; no extra queries."""

    def __init__(self, recorder: Recorder, flow_name: str, enabled: bool) -> None:
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

    def _on_op(self, op: Op) -> None:
        with self._lock:
            if isinstance(op, InsertTaskRun):
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
            extra = []
            if self.failed:
                extra.append(f"[red]{self.failed} failed[/]")
            if self.retrying:
                extra.append(f"[yellow]{self.retrying} retries[/]")
            self._progress.update(
                self._bar,
                total=self.total,
                completed=self.done + self.failed,
                extra=" ".join(extra),
            )

    def __enter__(self) -> RunProgress:
        self.recorder.listeners.append(self._on_op)
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.recorder.listeners.remove(self._on_op)
        self._progress.stop()
