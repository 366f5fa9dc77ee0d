"""The state store: one interface per role (``RunStore``, ``QueueStore``, ``AdminStore``; ``Store``
is all three), one SQL implementation, one HTTP client."""

from __future__ import annotations

from legato.store.ops import (
    PAGE_MAX,
    Finish,
    InsertArtifact,
    InsertFlowRun,
    InsertLogs,
    InsertQuestion,
    InsertTaskRun,
    LogEntry,
    Op,
    PutCache,
    SupersedeTaskRun,
    UpdateFlowRun,
    UpdateTaskRun,
)
from legato.store.roles import AdminStore, QueueStore, RunStore, Store


def open_store(url: str, *, auto_upgrade: bool = True, token: str | None = None) -> Store:
    """Open the store at a SQLAlchemy URL (``sqlite:///...``, ``postgresql://...``), or a
    Legato server's (``http(s)://...``: an HttpStore, with ``token`` or LEGATO_API_TOKEN)."""
    if url.startswith(("http://", "https://")):
        from legato.settings import get_settings
        from legato.store.http import HttpStore

        return HttpStore(url, token if token is not None else get_settings().api_token)
    from legato.store.sql import SqlStore

    return SqlStore(url, auto_upgrade=auto_upgrade)


__all__ = [
    "PAGE_MAX",
    "AdminStore",
    "Finish",
    "InsertArtifact",
    "InsertFlowRun",
    "InsertLogs",
    "InsertQuestion",
    "InsertTaskRun",
    "LogEntry",
    "Op",
    "PutCache",
    "QueueStore",
    "RunStore",
    "Store",
    "SupersedeTaskRun",
    "UpdateFlowRun",
    "UpdateTaskRun",
    "open_store",
]
