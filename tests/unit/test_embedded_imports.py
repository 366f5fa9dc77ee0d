"""An embedded run (a plain ``@flow`` call, no server) loads only what running a flow needs:
no trigger, token, share, dashboard, admin or server module, and no HTTP client."""

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
print(json.dumps(sorted(m for m in sys.modules if m == "legato" or m.startswith("legato."))))
"""

# Module names that must stay out of an embedded run (substrings of the dotted name).
NOT_LOADED = ("trigger", "token", "share", "dashboard", "server", "admin", "views", "stats")


def test_an_embedded_run_loads_no_admin_trigger_or_server_module(tmp_path: Path) -> None:
    script = tmp_path / "small.py"
    script.write_text(FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env["LEGATO_HOME"] = str(tmp_path / "home")
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert "legato.engine" in loaded and "legato.store.sql" in loaded  # the measurement works
    unwanted = [m for m in loaded if any(word in m for word in NOT_LOADED)]
    unwanted += [m for m in loaded if m.startswith(("legato.store.http", "legato.cli"))]
    assert unwanted == []
