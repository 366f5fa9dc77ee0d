"""An app over a fresh SQLite store, served by a real uvicorn in a thread, with a token per
role made directly in the store. (starlette's TestClient is not used: it warns about httpx.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from legato.models import Role
from legato.store import open_store
from legato.store.sql import SqlStore
from tests.live_server import LiveServer


@pytest.fixture
def server_store(tmp_path: Path) -> Iterator[SqlStore]:
    store = open_store(f"sqlite:///{tmp_path / 'server.db'}")
    assert isinstance(store, SqlStore)
    yield store
    store.close()


@pytest.fixture
def tokens(server_store: SqlStore) -> dict[Role, str]:
    """A secret per role."""
    return {role: server_store.create_token(f"t-{role.value}", role)[1] for role in Role}


@pytest.fixture
def live(server_store: SqlStore) -> Iterator[LiveServer]:
    server = LiveServer(server_store, max_body_bytes=64 * 1024, max_wait=0.05)
    yield server
    server.stop()


@pytest.fixture
def app(live: LiveServer) -> FastAPI:
    return live.app


@pytest.fixture
def anonymous(live: LiveServer) -> Iterator[httpx.Client]:
    """A client sending no token."""
    with httpx.Client(base_url=live.url, timeout=30) as c:
        yield c


@pytest.fixture
def client(live: LiveServer, tokens: dict[Role, str]) -> Iterator[httpx.Client]:
    """A client sending an admin token."""
    headers = {"Authorization": f"Bearer {tokens[Role.ADMIN]}"}
    with httpx.Client(base_url=live.url, headers=headers, timeout=30) as c:
        yield c
