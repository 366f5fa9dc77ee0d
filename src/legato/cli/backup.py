"""`legato db backup PATH` and `legato db restore PATH`: SQLite state databases, copied
online (PostgreSQL: pg_dump and pg_restore, docs/deploy.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from legato.cli import output


def db_backup(
    path: Annotated[Path, typer.Argument(help="Where the copy goes (a new file).")],
    force: Annotated[bool, typer.Option("--force", help="Replace PATH if it exists.")] = False,
) -> None:
    """Copy the SQLite state database to PATH while the server and flows keep writing."""
    from legato.settings import get_settings
    from legato.store.backup import backup, sqlite_file

    url = get_settings().db_url
    source = sqlite_file(url)
    # One step (store/backup.py): nothing to count, so a spinner while it copies.
    with output.err.status(f"backing up {source}"):
        copied = backup(url, path, force=force)
    output.err.print(
        f"{source} -> {copied.path}: {copied.bytes:,} bytes, schema {copied.revision}, "
        "integrity checked",
        markup=False,
    )


def db_restore(
    path: Annotated[Path, typer.Argument(help="A backup made by `legato db backup`.")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace the current database with the backup.")
    ] = False,
) -> None:
    """Put a backup in place of the SQLite state database. Stop the server, workers and
    flows using it first; `legato db upgrade` after, if the backup is older than this Legato."""
    from legato.settings import get_settings
    from legato.store.backup import restore
    from legato.store.schema import HEAD_REVISION

    copied = restore(path, get_settings().db_url, force=force)
    output.err.print(
        f"{path} -> {copied.path}: {copied.bytes:,} bytes, schema {copied.revision}",
        markup=False,
    )
    if copied.revision != HEAD_REVISION:
        older = (copied.revision or "") < HEAD_REVISION  # revisions are zero-padded numbers
        advice = (
            "run `legato db upgrade`"
            if older
            else "the backup is newer than this Legato: install the Legato that made it"
        )
        output.err.print(f"this Legato needs schema {HEAD_REVISION}: {advice}", markup=False)
