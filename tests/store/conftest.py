"""Store backends for the contract suite: each test gets an empty store on every backend.

- sqlite: a fresh database file per test.
- postgres: one fresh database per test session (``CREATE DATABASE legato_test_<random>`` on
  the server at ``LEGATO_TEST_POSTGRES_URL``, dropped at the end), emptied before each test.
  Without a reachable server these tests are skipped with the reason, except when
  ``CI=true``: there a missing PostgreSQL fails the run.

An HTTP store joins by adding a backend here; the tests do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from legato.store import Store, open_store
from legato.store import schema as s
from tests.conftest import PostgresServer


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


# The test servers' result storage: a stored result sent to them must point into it.
RESULT_STORAGE = "file:///results"

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "http"]


@pytest.fixture(scope="session")
def http_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Store]]:
    """An empty SQLite database at the current schema, to copy (cheaper than migrating one
    per test), and a store holding the test servers' admin tokens."""
    folder = tmp_path_factory.mktemp("http-backend")
    open_store(f"sqlite:///{folder / 'template.db'}").close()
    tokens = open_store(f"sqlite:///{folder / 'tokens.db'}")
    yield folder / "template.db", tokens
    tokens.close()


@pytest.fixture
def http_server(http_templates: tuple[Path, Store], tmp_path: Path) -> Iterator[Any]:
    """A real server (uvicorn, in a thread) over a fresh SQLite store, with an admin token.
    The token lives in a store of its own, so the store under test starts empty (the token
    contract lists every token)."""
    import shutil

    from tests.live_server import LiveServer

    template, tokens = http_templates
    shutil.copy(template, tmp_path / "server.db")
    store = open_store(f"sqlite:///{tmp_path / 'server.db'}", auto_upgrade=False)
    server = LiveServer(store, token_store=tokens, result_storage=RESULT_STORAGE)
    yield server
    server.stop()
    store.close()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    if request.param == "http":
        return str(request.getfixturevalue("http_server").url)
    url: str = request.getfixturevalue("postgres_database")
    _empty_postgres(url)
    return url


@pytest.fixture
def store_factory(store_url: str, request: pytest.FixtureRequest) -> Iterator[Callable[..., Store]]:
    """Opens (another) store on the test's database; every store opened is closed after."""
    opened: list[Store] = []
    if store_url.startswith("http"):
        token = request.getfixturevalue("http_server").token
        options_for_url: dict[str, Any] = {"token": token}
    else:
        options_for_url = {}

    def make(**options: Any) -> Store:
        store = open_store(store_url, **options_for_url, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: Callable[..., Store]) -> Store:
    return store_factory()
