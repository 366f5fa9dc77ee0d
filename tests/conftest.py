"""Fixtures shared by every kind of test.

``legato_home`` gives a test its own ``LEGATO_HOME`` (in ``tmp_path``), no other ``LEGATO_*``
variable, fresh settings, and no runtime: the first flow call builds one on that home. The
runtime is closed when the test ends. Integration tests get it automatically (see
``tests/integration/conftest.py``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from legato.runtime import Runtime, get_runtime
from legato.testing import replace_runtime


@pytest.fixture
def legato_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith("LEGATO_"):
            monkeypatch.delenv(name)
    home = tmp_path / "legato-home"
    monkeypatch.setenv("LEGATO_HOME", str(home))
    replace_runtime()  # closes any runtime left over, forgets cached settings
    yield home
    replace_runtime()


@pytest.fixture
def configure(legato_home: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Runtime]:
    """``configure(resources="gpu=2", allow_pickle=False)``: set LEGATO_* variables for this
    test and return a fresh runtime built from them."""

    def apply(**settings: object) -> Runtime:
        for name, value in settings.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            monkeypatch.setenv("LEGATO_" + name.upper(), text)
        replace_runtime()
        return get_runtime()

    return apply


@pytest.fixture
def rt(legato_home: Path) -> Runtime:
    """The runtime flows in this test record to (built on the test's own home)."""
    return get_runtime()


# -- PostgreSQL: a throwaway database per use, on the server at LEGATO_TEST_POSTGRES_URL -----

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
        self._execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._made.append(name)
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def close(self) -> None:
        from psycopg import sql

        for name in self._made:
            self._execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        self._admin.close()

    def _execute(self, query: Any) -> None:
        """Run an admin statement; reconnect once if PostgreSQL was restarted by a test."""
        import psycopg

        try:
            self._admin.execute(query)
        except psycopg.OperationalError:
            self._admin.close()
            self._admin = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            self._admin.execute(query)


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


@pytest.fixture
def cluster(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[Any]:
    """A fresh PostgreSQL database (schema upgraded) and a home for workers and flows; worker
    processes started through it are killed at the end."""
    from tests.cluster import Cluster

    url = postgres_server.create_database()
    made = Cluster(url, tmp_path / "cluster")
    upgraded = made.legato("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    yield made
    made.stop()
