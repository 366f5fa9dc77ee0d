"""get_logger(): records from flows and tasks go to the run's log in the store.

One handler on the ``legato.run`` logger looks up the current run when a record is emitted;
outside a run the logger behaves like any Python logger. With ``LEGATO_CAPTURE_OUTPUT`` (or
``legato run --capture-output``) lines printed inside a run are stored too.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import threading
from typing import Any, TextIO

from legato.context import current_run
from legato.errors import StoreError
from legato.models import LogRecord

ROOT = "legato.run"


class RunLogHandler(logging.Handler):
    """Sends records emitted inside a run to that run's log."""

    def emit(self, record: logging.LogRecord) -> None:
        ctx = current_run.get()
        if ctx is None:
            return
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
        except Exception:  # a bad format string must not break the run
            message = str(record.msg)
        _emit(
            ctx,
            LogRecord(
                ctx.flow_run_id,
                ctx.task_run_id,
                record.created,
                record.levelno,
                record.name,
                message,
            ),
        )


def _emit(ctx: Any, entry: LogRecord) -> None:
    """Queue a log record. A store that stopped taking writes does not make a log call or a
    print raise: the record stays queued, and the run stops at its next commit."""
    with contextlib.suppress(StoreError):
        ctx.emit_log(entry)


_installed = threading.Lock()
_handler: RunLogHandler | None = None


def install(level: str | int = "INFO") -> None:
    """Attach the run handler to the ``legato.run`` logger (idempotent)."""
    global _handler
    with _installed:
        logger = logging.getLogger(ROOT)
        if _handler is None:
            _handler = RunLogHandler()
            logger.addHandler(_handler)
        logger.setLevel(level)


def get_logger(name: str | None = None) -> logging.Logger:
    """A logger whose records are stored in the current run's log (and propagate as usual).

    Inside a task the records are attached to that task run; in the flow function, to the flow
    run. ``name`` defaults to the current task's or flow's name.
    """
    if _handler is None:
        install()
    ctx = current_run.get()
    if name is None and ctx is not None:
        name = ctx.task_name or ctx.flow_name
    return logging.getLogger(f"{ROOT}.{name}" if name else ROOT)


class _RunOutput(io.TextIOBase):
    """Stands in for sys.stdout/stderr: writes through, and stores whole lines printed inside a
    run in that run's log."""

    def __init__(self, stream: TextIO, level: int, logger_name: str) -> None:
        self._stream = stream
        self._level = level
        self._logger = logger_name
        self._partial = threading.local()

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        ctx = current_run.get()
        if ctx is not None and text:
            buf = getattr(self._partial, "buf", "") + text
            *lines, self._partial.buf = buf.split("\n")
            for line in lines:
                _emit(
                    ctx,
                    LogRecord(
                        ctx.flow_run_id, ctx.task_run_id, _now(), self._level, self._logger, line
                    ),
                )
        return written

    def flush(self) -> None:
        self._stream.flush()

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _now() -> float:
    import time

    return time.time()


def capture_output() -> None:
    """Store what runs print (stdout at INFO, stderr at WARNING), still showing it."""
    if not isinstance(sys.stdout, _RunOutput):
        sys.stdout = _RunOutput(sys.stdout, logging.INFO, "stdout")
    if not isinstance(sys.stderr, _RunOutput):
        sys.stderr = _RunOutput(sys.stderr, logging.WARNING, "stderr")
