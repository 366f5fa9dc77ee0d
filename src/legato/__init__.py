"""Legato: durable workflows for heterogeneous data pipelines, in plain Python.

The public API is what ``__all__`` lists; everything else may change.
"""

from __future__ import annotations

from legato import artifacts as artifact
from legato.api import Flow, Task, flow, task, wait
from legato.ask import ask
from legato.futures import Future
from legato.logs import get_logger
from legato.models import State
from legato.sharing import share
from legato.version import __version__ as __version__  # re-exported

__all__ = [
    "Flow",
    "Future",
    "State",
    "Task",
    "artifact",
    "ask",
    "flow",
    "get_logger",
    "share",
    "task",
    "wait",
]
