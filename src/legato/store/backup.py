"""Backups of a SQLite state database, taken while the server or flows write to it.

SQLite's online backup copies the database inside one read transaction. The state database
runs in WAL mode, where a reader does not block writers, so the server carries on meanwhile,
and the copy is the database as of the moment the transaction began. (Copied in several
steps instead, SQLite starts over whenever another process writes between two steps: on a
busy database, it never ends.) The copy is then checked (``PRAGMA integrity_check``) and moved
into place, so a failed backup never leaves a half file under the name asked for.
PostgreSQL is backed up with its own tools (``pg_dump``/``pg_restore``, docs/deploy.md).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from legato.errors import UsageError


@dataclass(frozen=True)
class Copied:
    """What a backup or a restore wrote: the file, its size, and its schema revision."""

    path: Path
    bytes: int
    revision: str | None


def sqlite_file(url: str) -> Path:
    """The file behind a ``sqlite:///`` URL; a clear error for any other database."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        raise UsageError(
            f"legato db backup copies SQLite databases; this one is {parsed.drivername}: "
            "use pg_dump --format=custom (see docs/deploy.md, Backups)"
        )
    if not parsed.database or parsed.database == ":memory:":
        raise UsageError("an in-memory database cannot be backed up")
    return Path(parsed.database)


def _read_only(path: Path, timeout: float = 30) -> sqlite3.Connection:
    # A file: URI built from the path (as_uri quotes '#', '?' and '%', which would otherwise
    # end the path early and open another file, read-write).
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout)


def _revision(path: Path) -> str | None:
    conn = _read_only(path)
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return None
    finally:
        conn.close()
    return str(row[0]) if row else None


def _copy_into(source: sqlite3.Connection, dest: Path, before: Callable[[], None]) -> None:
    """Copy into a hidden file beside ``dest``, check it, run ``before``, then move it into
    place: whatever fails on the way, ``dest`` is the old file or the whole new one."""
    partial = dest.with_name(f".{dest.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        target = sqlite3.connect(partial)
        try:
            source.backup(target, pages=-1)  # one step: see the module's docstring
            found = target.execute("PRAGMA integrity_check").fetchone()[0]
            if found != "ok":
                raise UsageError(f"the copy failed its integrity check: {found}")
        finally:
            target.close()
        before()
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)


def _check_target(path: Path, force: bool, what: str) -> None:
    if path.is_dir():
        raise UsageError(f"{path} is a folder: give the file the {what} should be")
    if path.exists() and not force:
        raise UsageError(f"{path} exists; give --force to replace it")


def backup(url: str, dest: Path, *, force: bool = False) -> Copied:
    """Copy the live database at ``url`` to ``dest``."""
    source_path = sqlite_file(url)
    if not source_path.is_file():
        raise UsageError(f"there is no database at {source_path}")
    dest = dest.resolve()
    if dest == source_path.resolve():
        raise UsageError("the backup must go to another file than the database itself")
    _check_target(dest, force, "backup")
    if _revision(source_path) is None:
        raise UsageError(f"{source_path} is not a Legato database (no schema revision)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    source = _read_only(source_path)
    try:
        _copy_into(source, dest, lambda: None)
    finally:
        source.close()
    return Copied(dest, dest.stat().st_size, _revision(dest))


def _idle(target: Path) -> None:
    """Refuse while another connection writes to the database (a running server or flow)."""
    conn = sqlite3.connect(target, timeout=0.5)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.rollback()
    except sqlite3.OperationalError:
        raise UsageError(
            f"{target} is in use: stop the server, workers and flows that use it first"
        ) from None
    finally:
        conn.close()


def restore(backup_file: Path, url: str, *, force: bool = False) -> Copied:
    """Put a backup in place of the database at ``url``; nothing may be using it (stop the
    server, workers on SQLite, and flows first)."""
    target = sqlite_file(url).resolve()
    if not backup_file.is_file():
        raise UsageError(f"there is no backup at {backup_file}")
    if _revision(backup_file) is None:
        raise UsageError(f"{backup_file} is not a Legato database (no schema revision)")
    _check_target(target, force, "database")
    if target.exists():
        _idle(target)
    target.parent.mkdir(parents=True, exist_ok=True)

    def drop_old_journal() -> None:  # once the copy is whole: it must not replay on it
        for stale in (Path(f"{target}-wal"), Path(f"{target}-shm")):
            stale.unlink(missing_ok=True)

    source = _read_only(backup_file)
    try:
        _copy_into(source, target, drop_old_journal)
    finally:
        source.close()
    return Copied(target, target.stat().st_size, _revision(target))
