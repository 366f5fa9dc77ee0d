"""Migrations: `alembic upgrade head` on an empty database gives exactly the schema in
``legato.store.schema`` (a drift test, on each dialect), the one-step creation of a fresh
database gives the same schema as every migration in turn, and a database from a newer Legato
is refused without being touched."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from legato.store.migrate import (
    MIGRATIONS_DIR,
    check_schema,
    create_head,
    current_revision,
    upgrade,
)

from .conftest import PostgresServer

DIALECTS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _empty_database(request: pytest.FixtureRequest, path: Path) -> Iterator[Engine]:
    """A SQLAlchemy engine on an empty database of the dialect ``request.param``."""
    if request.param == "sqlite":
        url: Any = f"sqlite:///{path}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = make_url(server.create_database()).set(drivername="postgresql+psycopg")
    engine = create_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture(params=DIALECTS)
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    yield from _empty_database(request, tmp_path / "empty.db")


@pytest.fixture(params=DIALECTS)
def two_empty_engines(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Engine, Engine]]:
    """Two empty databases of the same dialect."""
    for first in _empty_database(request, tmp_path / "first.db"):
        for second in _empty_database(request, tmp_path / "second.db"):
            yield first, second


def _schema(engine: Engine) -> dict[str, Any]:
    """Everything SQLAlchemy's inspector tells about every table, in a comparable form."""
    found = inspect(engine)
    tables: dict[str, Any] = {}
    for table in sorted(found.get_table_names()):
        columns = [
            {**col, "type": str(col["type"]), "default": str(col.get("default"))}
            for col in found.get_columns(table)
        ]
        tables[table] = {
            "columns": columns,
            "primary_key": found.get_pk_constraint(table),
            "foreign_keys": found.get_foreign_keys(table),
            "indexes": sorted(found.get_indexes(table), key=lambda i: str(i["name"])),
            "unique": sorted(found.get_unique_constraints(table), key=lambda u: str(u["name"])),
            "checks": found.get_check_constraints(table),
        }
    return tables


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


def test_one_step_creation_gives_the_schema_every_migration_gives(
    two_empty_engines: tuple[Engine, Engine],
) -> None:
    migrated, created = two_empty_engines
    upgrade(migrated)
    assert create_head(created) is True
    with created.connect() as conn:
        assert current_revision(conn) == s.HEAD_REVISION
    made = _schema(created)
    assert set(made) == set(s.metadata.tables) | {"alembic_version"}
    assert made["task_runs"]["indexes"] and made["task_runs"]["unique"]  # it reads them
    assert made == _schema(migrated)


def test_one_step_creation_leaves_a_database_with_tables_alone(empty_engine: Engine) -> None:
    upgrade(empty_engine, "0001")
    assert create_head(empty_engine) is False
    with empty_engine.connect() as conn:
        assert current_revision(conn) == "0001"
    check_schema(empty_engine, auto_upgrade=True)  # an older schema is migrated, not created
    with empty_engine.connect() as conn:
        assert current_revision(conn) == s.HEAD_REVISION
        assert compare_metadata(MigrationContext.configure(conn), s.metadata) == []


def test_a_database_created_in_one_step_takes_later_migrations(empty_engine: Engine) -> None:
    """Stamped at head, it is what Alembic expects: ``downgrade`` and ``upgrade`` run on it."""
    from alembic import command

    assert create_head(empty_engine) is True
    with empty_engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, s.KNOWN_REVISIONS[-2])
        assert current_revision(conn) == s.KNOWN_REVISIONS[-2]
    upgrade(empty_engine)
    with empty_engine.connect() as conn:
        assert current_revision(conn) == s.HEAD_REVISION
        assert compare_metadata(MigrationContext.configure(conn), s.metadata) == []


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
