"""A state database or result disk that stops taking writes while a run goes on: a clear
error naming the database, exit code 1 (never 2, never a hang), and a run that resumes once
the database takes writes again.

The failures are real: SQLite refusing writes on its own connections (``query_only``, a
``max_page_count`` it has reached), PostgreSQL in read-only mode, and a process whose files
cannot grow (RLIMIT_FSIZE, which binds root too, with SIGXFSZ ignored: writes past the limit
fail with EFBIG as on a full disk).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from legato.errors import StoreUnavailable
from legato.models import FlowRun, State, new_id, now
from legato.recorder import Recorder
from legato.store import InsertFlowRun
from legato.store.sql import SqlStore

# python -c LIMITED N ARGS...: run ARGS with files limited to N bytes.
LIMITED = (
    "import os, resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "n = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)


def legato_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env.update({"LEGATO_HOME": str(home), "COLUMNS": "200", **extra})
    return env


def legato(
    home: Path, *args: str, limit: int | None = None, timeout: float = 300, **extra: str
) -> subprocess.CompletedProcess[str]:
    """The real `legato` command on ``home``, its files limited to ``limit`` bytes if given."""
    prefix = [] if limit is None else ["-c", LIMITED, str(limit)]
    return subprocess.run(
        [sys.executable, *prefix, "-m", "legato", *args],
        env=legato_env(home, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,  # generous: only a hang should reach it
    )


def a_run() -> InsertFlowRun:
    return InsertFlowRun(FlowRun(id=new_id(), flow="f", state=State.RUNNING, created_at=now()))


# -- the refusal itself: StoreUnavailable naming the database --------------------------------


@pytest.mark.parametrize(
    ("pragma", "says"),
    [
        ("PRAGMA query_only = 1", "attempt to write a readonly database"),
        ("PRAGMA max_page_count = 1", "database or disk is full"),
    ],
)
def test_sqlite_refusing_writes_is_store_unavailable_naming_the_database(
    tmp_path: Path, pragma: str, says: str
) -> None:
    db = tmp_path / "state.db"
    store = SqlStore(f"sqlite:///{db}")
    store.apply([a_run()])  # writes work
    event.listen(store.engine, "connect", lambda conn, _: conn.execute(pragma))
    if store._write_conn is not None:  # the long-lived writer, too
        store._write_conn.close()
    store.engine.dispose()  # every connection from now on has the pragma
    try:
        with pytest.raises(StoreUnavailable) as info:
            store.apply([a_run() for _ in range(2000)])  # more than the pages it has left
        assert str(info.value) == f"the state database sqlite:///{db} cannot take writes: {says}"
    finally:
        store.close()


@pytest.mark.postgres
def test_postgresql_in_read_only_mode_is_store_unavailable_with_the_password_masked(
    postgres_server: Any,
) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_server.create_database()).set(password="s3cret")
    store = SqlStore(url.render_as_string(hide_password=False))
    recorder = Recorder(store)
    name = url.database
    try:
        store.apply([a_run()])
        postgres_server._execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        store.engine.dispose()  # new sessions are read-only
        with pytest.raises(StoreUnavailable, match="read-only transaction") as info:
            recorder.commit(a_run())
        message = str(info.value)
        assert "s3cret" not in message
        assert f"the state database postgresql://postgres:***@{url.host}:{url.port}/{name} " in (
            message
        )
        assert "cannot take writes" in message
        with pytest.raises(StoreUnavailable):  # remembered: raised at once from now on
            recorder.record(a_run())
        postgres_server._execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        store.engine.dispose()
        recorder.flush()  # writable again: what was queued is committed
        assert len(store.list_flow_runs()) == 3
    finally:
        recorder.close()
        store.close()


# -- a run whose state database fills up -----------------------------------------------------

FLOWS = """
from pathlib import Path

from legato import flow, get_logger, task

LEDGER = Path(__file__).with_name("ledger.txt")


@task
def square(i: int) -> dict:
    with LEDGER.open("a") as fh:  # every execution, to tell a call run twice
        fh.write(f"{i}\\n")
    get_logger().info("squared %d", i)
    return {"i": i, "square": i * i, "padding": "x" * 200}


@flow
def squares(n: int) -> dict:
    mapped = square.map(range(n // 2))  # committed by the recorder's thread
    direct = [square(i) for i in range(n // 2, n)]  # committed by the flow's thread
    return {str(r["i"]): r["square"] for r in [f.result() for f in mapped] + direct}
"""


def test_a_state_database_that_fills_up_stops_the_run_with_exit_1_and_it_resumes(
    tmp_path: Path,
) -> None:
    n = 400
    home = tmp_path / "home"
    source = tmp_path / "flows.py"
    source.write_text(textwrap.dedent(FLOWS))
    upgraded = legato(home, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    db = home / "legato.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    limit = db.stat().st_size + 300_000  # room for a few dozen of the 400 calls

    stopped = legato(home, "run", f"{source}:squares", "-p", f"n={n}", "-q", limit=limit)
    assert stopped.returncode == 1, stopped.stderr
    assert "Traceback" not in stopped.stderr
    naming = [line for line in stopped.stderr.splitlines() if str(db) in line]
    assert len(naming) == 1, stopped.stderr  # one line naming the database
    [line] = naming
    assert line.startswith(f"error: the state database sqlite:///{db} cannot take writes")
    [run] = json.loads(legato(home, "runs", "ls", "--json").stdout)
    assert run["state"] == "RUNNING"  # as its last committed change left it
    assert f"legato runs resume {run['id']}" in line

    shown = json.loads(legato(home, "runs", "show", run["id"], "--json").stdout)
    done_before = {t["result"]["i"] for t in shown["task_runs"] if t["state"] == "COMPLETED"}
    assert len(done_before) < n  # the limit bit before the end

    resumed = legato(home, "runs", "resume", run["id"], "--json")
    assert resumed.returncode == 0, resumed.stderr
    finished = json.loads(resumed.stdout)
    assert finished["state"] == "COMPLETED"
    assert finished["result"] == {str(i): i * i for i in range(n)}
    ran = [int(x) for x in (tmp_path / "ledger.txt").read_text().split()]
    assert sorted(set(ran)) == list(range(n))
    twice = {i for i in done_before if ran.count(i) > 1}
    assert twice == set()  # a call whose COMPLETED record was committed never ran again


BIG_RESULT = """
from legato import flow, task


@task
def big() -> list:
    return list(range(1_000_000))  # about 6.9 MB of JSON


@flow
def makes_big() -> int:
    return len(big())
"""


def test_a_full_result_disk_fails_the_run_with_exit_1_and_leaves_no_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    source = tmp_path / "big.py"
    source.write_text(BIG_RESULT)
    assert legato(home, "db", "upgrade").returncode == 0
    proc = legato(home, "run", f"{source}:makes_big", "-q", limit=3_000_000)
    assert proc.returncode == 1, proc.stderr
    assert "cannot write a result to the result storage" in proc.stderr
    assert "File too large" in proc.stderr and "Traceback" not in proc.stderr
    results = home / "results"
    assert not results.exists() or list(results.iterdir()) == []  # nothing partial
    [run] = json.loads(legato(home, "runs", "ls", "--json").stdout)
    assert run["state"] == "FAILED" and "ResultStorageError" in run["error"]


GATED = """
import time
from pathlib import Path

from legato import flow, task

HERE = Path(__file__).parent


@task
def step(i: int) -> int:
    if i >= 5:  # the test lets these through once the database is read-only
        while not (HERE / "gate").exists():
            time.sleep(0.02)
    with (HERE / "ledger.txt").open("a") as fh:
        fh.write(f"{i}\\n")
    return i * 10


@flow
def gated(n: int) -> list:
    return [step(i) for i in range(n)]
"""


@pytest.mark.postgres
def test_a_postgresql_database_turned_read_only_stops_the_run_with_exit_1_and_it_resumes(
    postgres_server: Any, tmp_path: Path
) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_server.create_database()).set(password="s3cret")
    name = url.database
    env = {"LEGATO_DATABASE_URL": url.render_as_string(hide_password=False)}
    home = tmp_path / "home"
    source = tmp_path / "gated.py"
    source.write_text(GATED)
    assert legato(home, "db", "upgrade", **env).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "legato", "run", f"{source}:gated", "-p", "n=20", "-q"],
        env=legato_env(home, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        store = SqlStore(env["LEGATO_DATABASE_URL"], auto_upgrade=False)
        try:
            deadline = now() + 120
            while not any(
                t.state is State.COMPLETED and t.key == "step:4"
                for r in store.list_flow_runs()
                for t in store.get_task_runs(r.id)
            ):
                assert now() < deadline and proc.poll() is None, "the run did not get going"
                time.sleep(0.05)
        finally:
            store.close()
        postgres_server._execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        postgres_server._execute(  # its open sessions end: the new ones are read-only
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        (tmp_path / "gate").touch()
        _, err = proc.communicate(timeout=300)  # generous: only a hang should reach it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "s3cret" not in err
    [line] = [x for x in err.splitlines() if "error:" in x]
    assert f"postgresql://postgres:***@{url.host}:{url.port}/{name}" in line
    assert "cannot take writes" in line and "legato runs resume" in line

    postgres_server._execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
    [run] = json.loads(legato(home, "runs", "ls", "--json", **env).stdout)
    assert run["state"] == "RUNNING"
    resumed = legato(home, "runs", "resume", run["id"], "--json", **env)
    assert resumed.returncode == 0, resumed.stderr
    finished = json.loads(resumed.stdout)
    assert finished["state"] == "COMPLETED" and finished["result"] == [i * 10 for i in range(20)]
    ran = [int(x) for x in (tmp_path / "ledger.txt").read_text().split()]
    assert sorted(set(ran)) == list(range(20))
    assert all(ran.count(i) == 1 for i in range(5))  # committed before: never ran again
