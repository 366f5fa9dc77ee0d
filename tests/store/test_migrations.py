"""Migrations: `alembic upgrade head` on an empty database gives exactly the schema in
``legato.store.schema`` (a drift test, on each dialect), and a database from a newer Legato is
refused without being touched."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url

from legato import flow
from legato.errors import SchemaOutOfDate, SchemaTooNew
from legato.store import open_store
from legato.store import schema as s
from legato.store.migrate import MIGRATIONS_DIR, current_revision, upgrade

from .conftest import PostgresServer


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A SQLAlchemy engine on an empty database of each dialect."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = make_url(server.create_database()).set(drivername="postgresql+psycopg")
    engine = create_engine(url)
    yield engine
    engine.dispose()


def test_head_revision_is_alembics_head() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(cfg)
    assert script.get_heads() == [s.HEAD_REVISION]
    known = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert tuple(known) == s.KNOWN_REVISIONS


def test_migrations_produce_exactly_the_schema(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    with empty_engine.connect() as conn:
        assert current_revision(conn) == s.HEAD_REVISION
        diffs = compare_metadata(MigrationContext.configure(conn), s.metadata)
    assert diffs == []
    tables = set(inspect(empty_engine).get_table_names())
    assert tables == set(s.metadata.tables) | {"alembic_version"}


def test_an_empty_database_without_auto_upgrade_asks_for_db_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    with pytest.raises(SchemaOutOfDate, match="legato db upgrade"):
        open_store(url, auto_upgrade=False)
    store = open_store(url)  # embedded mode creates it
    store.close()
    open_store(url, auto_upgrade=False).close()


def _newer_database(path: Path) -> None:
    """A Legato database that a newer Legato has migrated past what this one knows."""
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
        conn.execute("CREATE TABLE future_feature (id INTEGER PRIMARY KEY)")
    conn.close()


def _snapshot(path: Path) -> tuple[str, list[str]]:
    conn = sqlite3.connect(path)
    try:
        dump = list(conn.iterdump())
    finally:
        conn.close()
    return hashlib.sha256(path.read_bytes()).hexdigest(), dump


def test_a_database_from_a_newer_schema_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    _newer_database(path)
    before = _snapshot(path)
    for auto_upgrade in (True, False):
        with pytest.raises(SchemaTooNew, match="9999_from_the_future") as info:
            open_store(f"sqlite:///{path}", auto_upgrade=auto_upgrade)
        assert "nothing was changed" in str(info.value)
    assert _snapshot(path) == before


def test_running_a_flow_on_a_newer_database_raises_schema_too_new(legato_home: Path) -> None:
    path = legato_home / "legato.db"
    _newer_database(path)
    before = _snapshot(path)
    ran: list[int] = []

    @flow
    def on_newer_db() -> None:
        ran.append(1)

    with pytest.raises(SchemaTooNew):
        on_newer_db()
    assert ran == []
    assert _snapshot(path) == before


@pytest.mark.postgres
def test_a_newer_postgres_schema_is_refused_and_left_unchanged(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.create_database()
    open_store(url).close()
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))

        def snapshot() -> tuple[object, ...]:
            with engine.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT table_name, column_name, data_type FROM information_schema.columns"
                        " WHERE table_schema = 'public' ORDER BY 1, 2"
                    )
                ).all()
                return (current_revision(conn), tuple(map(tuple, rows)))

        before = snapshot()
        with pytest.raises(SchemaTooNew, match="9999"):
            open_store(url)
        assert snapshot() == before
        assert before[0] == "9999"
    finally:
        engine.dispose()
