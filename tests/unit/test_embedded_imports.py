"""An embedded run (a plain ``@flow`` call, or ``legato run``, no server) loads only what
running a flow needs: no trigger, token, share, dashboard, admin or server module, no HTTP
client or web framework, and on a fresh home no Alembic (the schema is made in one step)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FLOW = """
import json, sys
from legato import flow, task

@task
def inc(x: int) -> int:
    return x + 1

@flow
def small(n: int) -> int:
    return inc(inc.submit(n).result())

assert small(1) == 3
print(json.dumps(sorted(sys.modules)))
"""

ONE_TASK = """
from legato import flow, task

@task
def inc(x: int) -> int:
    return x + 1

@flow
def one(n: int = 1) -> int:
    return inc(n)
"""

# `legato run FILE.py:FLOW` in this process, printing the modules it loaded as it exits.
CLI = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted(sys.modules))))
sys.argv = ["legato", "run", sys.argv[1]]
from legato.cli import main
main()
"""

# Module names that must stay out of an embedded run (substrings of the dotted name).
NOT_LOADED = ("trigger", "token", "share", "dashboard", "server", "admin", "views", "stats")
# Libraries a run on a fresh home does not need (top-level package names).
HEAVY = ("alembic", "fastapi", "starlette", "uvicorn", "httpx", "jinja2", "psycopg", "jsonschema")


def _run(tmp_path: Path, *args: str) -> list[str]:
    """Run ``python ARGS`` on a fresh home; the module names it printed last."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env["LEGATO_HOME"] = str(tmp_path / "home")
    out = subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=100
    )
    assert out.returncode == 0, out.stderr
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def _heavy(loaded: list[str]) -> list[str]:
    return sorted({m.split(".")[0] for m in loaded} & set(HEAVY))


def test_an_embedded_run_loads_no_admin_trigger_or_server_module(tmp_path: Path) -> None:
    script = tmp_path / "small.py"
    script.write_text(FLOW)
    modules = _run(tmp_path, str(script))
    loaded = [m for m in modules if m == "legato" or m.startswith("legato.")]
    assert "legato.engine" in loaded and "legato.store.sql" in loaded  # the measurement works
    unwanted = [m for m in loaded if any(word in m for word in NOT_LOADED)]
    unwanted += [m for m in loaded if m.startswith(("legato.store.http", "legato.cli"))]
    assert unwanted == []
    assert "sqlalchemy" in modules and _heavy(modules) == []


def test_legato_run_on_a_fresh_home_loads_no_migrations_server_or_http(tmp_path: Path) -> None:
    (tmp_path / "one.py").write_text(ONE_TASK)
    (tmp_path / "cli.py").write_text(CLI)
    modules = _run(tmp_path, str(tmp_path / "cli.py"), f"{tmp_path / 'one.py'}:one")
    assert "legato.cli" in modules and "legato.store.sql" in modules  # the measurement works
    assert _heavy(modules) == []
    assert [m for m in modules if m.startswith("legato.server")] == []
