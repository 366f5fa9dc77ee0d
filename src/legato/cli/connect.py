"""The store a command works on: the server's API when LEGATO_API_URL is set (with
LEGATO_API_TOKEN), else the database itself (LEGATO_DATABASE_URL, or the embedded one)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def opened_store() -> Iterator[Any]:
    """The store, closed when the block ends."""
    from legato.settings import get_settings
    from legato.store import open_store

    settings = get_settings()
    store = open_store(settings.api_url or settings.db_url, token=settings.api_token)
    try:
        yield store
    finally:
        store.close()
