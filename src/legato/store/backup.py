"""Backups of a SQLite state database, taken while the server or flows write to it.

SQLite's online backup copies the database page by page between short read locks, so
writers carry on; a page written meanwhile makes SQLite copy it again, and the copy ends
consistent as of one moment. The copy is then checked (``PRAGMA integrity_check``) and
moved into place, so a failed backup never leaves a half file under the name asked for.
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

PAGES_PER_STEP = 1024  # about 4 MiB a step: writers wait at most one step
Progress = Callable[[int, int], None]


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


def _copy_into(source: sqlite3.Connection, dest: Path, progress: Progress | None) -> None:
    """Copy into a hidden file beside ``dest``, then move it into place: whatever fails on
    the way, ``dest`` is the old file or the whole new one, never half of one."""
    partial = dest.with_name(f".{dest.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        _copy(source, partial, progress)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, dest)


def _copy(source: sqlite3.Connection, dest: Path, progress: Progress | None) -> None:
    target = sqlite3.connect(dest)
    try:
        source.backup(
            target,
            pages=PAGES_PER_STEP,
            progress=(lambda _status, left, total: progress(total - left, total))
            if progress
            else None,
        )
        found = target.execute("PRAGMA integrity_check").fetchone()[0]
        if found != "ok":
            raise UsageError(f"the copy failed its integrity check: {found}")
    finally:
        target.close()


def _revision(path: Path) -> str | None:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.DatabaseError:
            return None
    return str(row[0]) if row else None


def backup(
    url: str, dest: Path, *, force: bool = False, progress: Progress | None = None
) -> Copied:
    """Copy the live database at ``url`` to ``dest``."""
    source_path = sqlite_file(url)
    if not source_path.is_file():
        raise UsageError(f"there is no database at {source_path}")
    dest = dest.resolve()
    if dest == source_path.resolve():
        raise UsageError("the backup must go to another file than the database itself")
    if dest.exists() and not force:
        raise UsageError(f"{dest} exists; give --force to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True, timeout=30)
    try:
        _copy_into(source, dest, progress)
    finally:
        source.close()
    return Copied(dest, dest.stat().st_size, _revision(dest))


def restore(backup_file: Path, url: str, *, force: bool = False) -> Copied:
    """Put a backup in place of the database at ``url``; nothing may be using it (stop the
    server, workers on SQLite, and flows first)."""
    target = sqlite_file(url)
    if not backup_file.is_file():
        raise UsageError(f"there is no backup at {backup_file}")
    source = sqlite3.connect(f"file:{backup_file.resolve()}?mode=ro", uri=True)
    try:
        found = source.execute("PRAGMA integrity_check").fetchone()[0]
        if found != "ok":
            raise UsageError(f"{backup_file} failed its integrity check: {found}")
        if _revision(backup_file) is None:
            raise UsageError(f"{backup_file} is not a Legato database (no schema revision)")
        if target.exists() and not force:
            raise UsageError(f"{target} exists; give --force to replace it with the backup")
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in (Path(f"{target}-wal"), Path(f"{target}-shm")):
            stale.unlink(missing_ok=True)  # the old database's journal must not replay on it
        _copy_into(source, target, None)
    finally:
        source.close()
    return Copied(target, target.stat().st_size, _revision(target))
