"""Schema versions: check what a database holds, and upgrade it with Alembic.

Alembic is imported only when an upgrade is needed: opening an up-to-date database costs
one SELECT.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text

from legato.errors import SchemaOutOfDate, SchemaTooNew
from legato.store.schema import HEAD_REVISION, KNOWN_REVISIONS

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


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
    upgrade(engine)
