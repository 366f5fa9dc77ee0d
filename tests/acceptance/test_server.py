"""`legato server start` and `legato tokens` as a user runs them (subprocesses)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine

from legato.store.migrate import upgrade
from tests.acceptance.conftest import Legato, as_json

FLOWS = str(Path(__file__).with_name("flows.py"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`legato server start` on a free port; killed at the end whatever happens. ``env``:
    the whole environment (LEGATO_HOME is set to ``home``), else this one's without LEGATO_*."""
    port = free_port()
    env = (
        dict(env)
        if env is not None
        else {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    )
    env["LEGATO_HOME"] = str(home)
    # Its output goes to a file, never a pipe nobody reads: a full pipe stalls the server.
    log_path = home.parent / f"server-{port}.log"
    home.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "legato", "server", "start", "--port", str(port), *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    proc.log_path = log_path  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield url, proc
    finally:
        proc.kill()
        proc.wait(10)


def test_the_server_refuses_an_out_of_date_schema(legato: Legato, home: Path) -> None:
    home.mkdir(parents=True)
    engine = create_engine(f"sqlite:///{home / 'legato.db'}")
    upgrade(engine, "0001")
    engine.dispose()
    proc = legato("server", "start", "--port", str(free_port()), timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "legato db upgrade" in lines[0] and "0001" in lines[0]


def test_the_server_creates_the_schema_of_an_empty_database(home: Path) -> None:
    from sqlalchemy import text

    from legato.store.schema import HEAD_REVISION

    assert not (home / "legato.db").exists()
    with server(home) as (url, _proc):
        assert httpx.get(f"{url}/health", timeout=5).json() == {"status": "ok"}
    engine = create_engine(f"sqlite:///{home / 'legato.db'}")
    with engine.connect() as conn:
        found = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    assert found == HEAD_REVISION


def test_a_created_token_works_against_a_started_server(legato: Legato, home: Path) -> None:
    made = legato("tokens", "create", "--name", "ops", "--role", "runner")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("lgt_") and "\n" not in secret
    assert "not shown again" in made.stderr and secret not in made.stderr
    listed = as_json(legato("tokens", "ls", "--json"))
    assert [t["name"] for t in listed] == ["ops"]
    assert secret not in str(listed)
    with server(home) as (url, proc):
        api = {"LEGATO_API_URL": url, "LEGATO_API_TOKEN": secret}
        got = httpx.get(f"{url}/api/v1/flow-runs", headers={"Authorization": f"Bearer {secret}"})
        assert got.status_code == 200 and got.json() == []
        run = legato("run", f"{FLOWS}:arithmetic", "-p", "n=3", "--json", env=api)
        assert run.returncode == 0, run.stderr
        assert as_json(run)["state"] == "COMPLETED"
        runs = legato("runs", "ls", "--json", env=api)
        assert runs.returncode == 0, runs.stderr
        assert [r["flow"] for r in as_json(runs)] == ["arithmetic"]
        wrong = legato("runs", "ls", "--json", env={**api, "LEGATO_API_TOKEN": "lgt_wrong"})
        assert wrong.returncode != 0 and "token is wrong or revoked" in wrong.stderr
        # A runner may not manage tokens.
        denied = legato("tokens", "ls", env=api)
        assert denied.returncode != 0 and "needs admin" in denied.stderr
        proc.kill()
        proc.wait(10)
        output = proc.log_path.read_text()
    assert secret not in output
