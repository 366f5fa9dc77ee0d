"""The SQLite backup under a writer that never pauses: it ends, and the copy is whole and
consistent (copied in steps, SQLite would start over after every write by another process,
and never end). Restores refuse a database in use and keep the old one when the copy fails;
paths with '#' or '%' name the file they say."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from legato.errors import UsageError
from legato.store import backup as backups


def _legato_like(path: Path, rows: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE alembic_version (version_num TEXT)")
        conn.execute("INSERT INTO alembic_version VALUES ('0015')")
        conn.execute("CREATE TABLE logs (id INTEGER PRIMARY KEY, text TEXT)")
        conn.executemany("INSERT INTO logs (text) VALUES (?)", [("x" * 500,)] * rows)


def test_a_backup_ends_while_another_process_writes_without_pause(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "legato.db"
    _legato_like(db, 40_000)  # about 20 MB: many steps' worth had it been copied in steps
    started = tmp_path / "writing"
    loop = (
        "import sqlite3, sys, pathlib\n"
        "conn = sqlite3.connect(sys.argv[1], timeout=30)\n"
        "n = 0\n"
        "while True:\n"
        "    conn.execute(\"INSERT INTO logs (text) VALUES ('more')\"); conn.commit(); n += 1\n"
        "    if n == 20: pathlib.Path(sys.argv[2]).touch()\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", loop, str(db), str(started)])
    try:
        while not started.exists():  # the writer is under way before the backup starts
            assert writer.poll() is None, "the writer stopped"
            threading.Event().wait(0.01)
        copied = backups.backup(f"sqlite:///{db}", tmp_path / "copy.db")
    finally:
        writer.kill()
        writer.wait(30)
    with sqlite3.connect(copied.path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        count = conn.execute("SELECT count(*) FROM logs").fetchone()[0]
    assert count >= 40_000 + 20 and copied.revision == "0015"


def test_a_path_with_a_hash_or_percent_sign_is_the_file_it_names(tmp_path: Path) -> None:
    folder = tmp_path / "lab#1 50%"
    folder.mkdir()
    _legato_like(folder / "legato.db", 10)
    copied = backups.backup(f"sqlite:///{folder / 'legato.db'}", tmp_path / "copy.db")
    assert copied.revision == "0015"
    assert not (tmp_path / "lab").exists()  # no stray database made beside it


def test_restore_refuses_a_database_in_use_and_keeps_it(tmp_path: Path) -> None:
    live, saved = tmp_path / "legato.db", tmp_path / "saved.db"
    _legato_like(live, 5)
    _legato_like(saved, 3)
    holder = sqlite3.connect(live)
    holder.execute("BEGIN IMMEDIATE")  # a server in the middle of a write
    try:
        with pytest.raises(UsageError, match="in use"):
            backups.restore(saved, f"sqlite:///{live}", force=True)
    finally:
        holder.rollback()
        holder.close()
    with sqlite3.connect(live) as conn:
        assert conn.execute("SELECT count(*) FROM logs").fetchone() == (5,)
    backups.restore(saved, f"sqlite:///{live}", force=True)
    with sqlite3.connect(live) as conn:
        assert conn.execute("SELECT count(*) FROM logs").fetchone() == (3,)


def test_backup_into_a_folder_is_refused(tmp_path: Path) -> None:
    _legato_like(tmp_path / "legato.db", 1)
    (tmp_path / "backups").mkdir()
    with pytest.raises(UsageError, match="is a folder"):
        backups.backup(f"sqlite:///{tmp_path / 'legato.db'}", tmp_path / "backups", force=True)
    assert not list(tmp_path.glob(".*partial"))
