"""What the security tests share: a server's SQLite store and a token per role in it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from legato.models import Role
from legato.store import open_store
from legato.store.sql import SqlStore


@pytest.fixture
def server_store(tmp_path: Path) -> Iterator[SqlStore]:
    store = open_store(f"sqlite:///{tmp_path / 'server.db'}")
    assert isinstance(store, SqlStore)
    yield store
    store.close()


@pytest.fixture
def secrets_by_role(server_store: SqlStore) -> dict[Role, str]:
    return {role: server_store.create_token(f"t-{role.value}", role)[1] for role in Role}
