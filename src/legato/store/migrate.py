"""Schema versions: check what a database holds, create it, or upgrade it with Alembic.

An empty database gets the schema at head in one step (``create_head``: the current
metadata's DDL, stamped with the head revision), so a fresh home pays neither Alembic's
import nor every migration in turn; later migrations apply to it as to any other. Alembic is
imported only when an older database must be upgraded: opening an up-to-date database costs
one SELECT.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    inspect,
    text,
)

from legato.errors import SchemaOutOfDate, SchemaTooNew
from legato.store.schema import HEAD_REVISION, KNOWN_REVISIONS, metadata

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Alembic's own version table, as ``alembic upgrade`` creates it (a test compares the two).
_version = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)
# Any fixed number: PostgreSQL sessions creating a schema at the same time take turns on it.
_CREATE_LOCK = 0x1E6A70


def current_revision(conn: Connection) -> str | None:
    """The revision recorded in the database, or None for an empty database."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
    return None if row is None else str(row[0])


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to ``revision`` (``legato db upgrade``)."""
    from alembic import command
    from alembic.config import Config

    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def create_head(engine: Engine) -> bool:
    """Create the schema at head in an empty database, in one transaction, and stamp it with
    the head revision. False (nothing done) if the database is not empty by then: another
    process created it first, or it holds something else."""
    with engine.connect() as conn:
        conn.info["write"] = True  # SQLite: BEGIN IMMEDIATE, so two creators take turns
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CREATE_LOCK})
            if inspect(conn).get_table_names():
                return False
            metadata.create_all(conn)
            _version.create(conn)
            conn.execute(_version.insert().values(version_num=HEAD_REVISION))
    return True


def check_schema(engine: Engine, *, auto_upgrade: bool, create_empty: bool = False) -> None:
    """Make sure the database has the schema this code expects.

    An empty or older database is upgraded when ``auto_upgrade`` (embedded mode, zero set-up);
    ``create_empty`` creates the schema in an empty database only (the server: nothing there
    to lose, while an older schema's upgrade is left to a person). Otherwise it is an error
    that says to run ``legato db upgrade``. A database written by a newer Legato is never
    touched.
    """
    with engine.connect() as conn:
        found = current_revision(conn)
    if found == HEAD_REVISION:
        return
    if found is not None and found not in KNOWN_REVISIONS:
        raise SchemaTooNew(
            f"the database is at schema revision {found}, which this Legato does not know "
            f"(it knows up to {HEAD_REVISION}): it was written by a newer Legato. "
            "Upgrade Legato; nothing was changed in the database."
        )
    if not auto_upgrade and not (create_empty and found is None):
        raise SchemaOutOfDate(
            f"the database schema is at {found or 'nothing (empty database)'}, this Legato "
            f"needs {HEAD_REVISION}: run `legato db upgrade` first."
        )
    if found is None and create_head(engine):
        return
    upgrade(engine)
