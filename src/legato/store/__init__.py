"""The state store: one interface (``Store``), one SQL implementation, one HTTP client."""

from __future__ import annotations

from legato.store.base import (
    InsertArtifact,
    InsertFlowRun,
    InsertLogs,
    InsertQuestion,
    InsertTaskRun,
    LogEntry,
    Op,
    PutCache,
    Store,
    UpdateFlowRun,
    UpdateTaskRun,
)


def open_store(url: str, *, auto_upgrade: bool = True) -> Store:
    """Open the store at a SQLAlchemy URL (``sqlite:///...``, ``postgresql://...``)."""
    from legato.store.sql import SqlStore

    return SqlStore(url, auto_upgrade=auto_upgrade)


__all__ = [
    "InsertArtifact",
    "InsertFlowRun",
    "InsertLogs",
    "InsertQuestion",
    "InsertTaskRun",
    "LogEntry",
    "Op",
    "PutCache",
    "Store",
    "UpdateFlowRun",
    "UpdateTaskRun",
    "open_store",
]
