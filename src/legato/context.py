"""Where code is running: inside a flow run, inside a task run, or neither.

The engine sets these context variables; ``get_logger``, ``artifact`` and ``ask`` read them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from legato.engine import FlowRunEngine
    from legato.models import Artifact, LogRecord


@dataclass(frozen=True, slots=True)
class RunContext:
    flow_run_id: str
    task_run_id: str | None
    # Where log records and artifacts go: the recorder in the flow's process, a list in a
    # task's child process (shipped back with the result).
    emit_log: Callable[[LogRecord], None]
    emit_artifact: Callable[[Artifact], None]
    # The engine of the flow run when this code is the flow function itself (not a task body).
    engine: FlowRunEngine | None = None
    flow_name: str | None = None
    task_name: str | None = None


current_run: ContextVar[RunContext | None] = ContextVar("legato_run", default=None)


def get_run_context() -> RunContext | None:
    """The current run, or None outside any flow or task run."""
    return current_run.get()


def current_engine() -> FlowRunEngine | None:
    """The engine when called from a flow function (task and flow calls are recorded there);
    None in a task body or outside any run (calls there are plain Python calls)."""
    ctx = current_run.get()
    return None if ctx is None else ctx.engine
