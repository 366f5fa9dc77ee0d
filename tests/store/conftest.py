"""Store backends for the contract suite: each test gets an empty store on every backend.

- sqlite: a fresh database file per test.
- postgres: one fresh database per test session (``CREATE DATABASE legato_test_<random>`` on
  the server at ``LEGATO_TEST_POSTGRES_URL``, dropped at the end), emptied before each test.
  Without a reachable server these tests are skipped with the reason, except when
  ``CI=true``: there a missing PostgreSQL fails the run.

An HTTP store joins by adding a backend here; the tests do not change.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from legato.store import Store, open_store
from legato.store import schema as s

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


class PostgresServer:
    """The test PostgreSQL server: makes throwaway databases and drops them at the end."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self._admin = psycopg.connect(url, autocommit=True, connect_timeout=5)
        self._made: list[str] = []

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        from psycopg import sql
        from sqlalchemy.engine import make_url

        name = f"legato_test_{secrets.token_hex(6)}"
        self._admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._made.append(name)
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def close(self) -> None:
        from psycopg import sql

        for name in self._made:
            self._admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        self._admin.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    url = os.environ.get("LEGATO_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    try:
        server = PostgresServer(url)
    except Exception as exc:  # not installed, not running, refused...
        detail = " ".join(str(exc).split())
        reason = f"PostgreSQL is not reachable at {url} ({type(exc).__name__}: {detail})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true requires it (set LEGATO_TEST_POSTGRES_URL)")
        pytest.skip(f"{reason}; set LEGATO_TEST_POSTGRES_URL to run the PostgreSQL tests")
    yield server
    server.close()


@pytest.fixture(scope="session")
def postgres_database(postgres_server: PostgresServer) -> str:
    """One database for the session's store tests, with the schema created by the store."""
    url = postgres_server.create_database()
    open_store(url).close()
    return url


def _empty_postgres(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    tables = ", ".join(t.name for t in s.metadata.sorted_tables)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {tables} RESTART IDENTITY")  # type: ignore[arg-type]


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_database")
    _empty_postgres(url)
    return url


@pytest.fixture
def store_factory(store_url: str) -> Iterator[Callable[..., Store]]:
    """Opens (another) store on the test's database; every store opened is closed after."""
    opened: list[Store] = []

    def make(**options: Any) -> Store:
        store = open_store(store_url, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: Callable[..., Store]) -> Store:
    return store_factory()
