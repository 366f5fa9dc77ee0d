"""Backups and restores, as an admin runs them: `legato db backup` copies a SQLite database
while a server writes to it, `legato db restore` puts the copy in place on another home, and
the documented pg_dump/pg_restore commands do the same for PostgreSQL."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import Legato, as_json
from tests.acceptance.test_server import server

FLOWS = str(Path(__file__).parent / "flows.py")


def _run_ids(legato: Legato, env: dict[str, str] | None = None) -> set[str]:
    return {r["id"] for r in as_json(legato("runs", "ls", "--limit", "500", "--json", env=env))}


def test_a_backup_taken_while_the_server_writes_restores_on_another_home(
    legato: Legato, home: Path, tmp_path: Path
) -> None:
    first = legato("run", f"{FLOWS}:arithmetic", "-p", "n=3", "--json")
    assert first.returncode == 0, first.stderr
    backup = tmp_path / "backups" / "legato.db"
    stop = threading.Event()
    written: list[int] = []
    with server(home, "--no-auth") as (url, _proc):

        def keep_writing() -> None:  # flows through the server until the backup is done
            while not stop.is_set():
                ran = legato("run", f"{FLOWS}:arithmetic", "-p", "n=2", "-q",
                             env={"LEGATO_API_URL": url})  # fmt: skip
                written.append(ran.returncode)

        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            made = legato("db", "backup", str(backup))
        finally:
            stop.set()
            writer.join(120)
    assert made.returncode == 0, made.stderr
    assert "integrity checked" in made.stderr and written and set(written) == {0}
    with sqlite3.connect(backup) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    kept = _run_ids(legato)  # what the live database holds now: the backup has a prefix of it
    restored_home = tmp_path / "restored"
    other = {"LEGATO_HOME": str(restored_home)}
    put = legato("db", "restore", str(backup), env=other)
    assert put.returncode == 0, put.stderr
    restored = _run_ids(legato, env=other)
    assert as_json(first)["id"] in restored and restored <= kept
    shown = as_json(legato("runs", "show", as_json(first)["id"], "--json", env=other))
    assert shown["state"] == "COMPLETED" and shown["result"] == as_json(first)["result"]
    again = legato("db", "restore", str(backup), env=other)
    assert again.returncode == 2 and "--force" in again.stderr  # never over a database silently
    assert legato("db", "restore", str(backup), "--force", env=other).returncode == 0


def test_backup_refuses_what_it_cannot_copy(legato: Legato, home: Path, tmp_path: Path) -> None:
    pg = legato("db", "backup", str(tmp_path / "x.db"),
                env={"LEGATO_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})  # fmt: skip
    assert pg.returncode == 2 and "pg_dump" in pg.stderr
    assert legato("run", f"{FLOWS}:arithmetic", "-p", "n=1", "-q").returncode == 0
    target = tmp_path / "exists.db"
    target.write_text("keep me")
    refused = legato("db", "backup", str(target))
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert target.read_text() == "keep me"
    stranger = tmp_path / "stranger.db"
    sqlite3.connect(stranger).close()
    bad = legato("db", "restore", str(stranger), "--force",
                 env={"LEGATO_HOME": str(tmp_path / "h2")})  # fmt: skip
    assert bad.returncode == 2 and "not a Legato database" in bad.stderr


@pytest.mark.postgres
def test_pg_dump_and_pg_restore_as_documented(
    legato: Legato, postgres_server: Any, tmp_path: Path
) -> None:
    source, target = postgres_server.create_database(), postgres_server.create_database()
    env = {"LEGATO_DATABASE_URL": source}
    assert legato("db", "upgrade", env=env).returncode == 0
    ran = legato("run", f"{FLOWS}:arithmetic", "-p", "n=3", "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    dump = tmp_path / "legato.dump"
    plain = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    # docs/deploy.md, Backups: the same two commands
    subprocess.run(["pg_dump", "--format=custom", f"--file={dump}", source.replace(
        "postgresql+psycopg://", "postgresql://")], check=True, env=plain, timeout=120)  # fmt: skip
    subprocess.run(["pg_restore", "--no-owner", f"--dbname={target}", str(dump)],
                   check=True, env=plain, timeout=120)  # fmt: skip
    back = {"LEGATO_DATABASE_URL": target}
    status = legato("db", "status", env=back)
    assert status.returncode == 0 and "needs" in status.stdout
    shown = legato("runs", "show", as_json(ran)["id"], "--json", env=back)
    assert json.loads(shown.stdout)["state"] == "COMPLETED"
