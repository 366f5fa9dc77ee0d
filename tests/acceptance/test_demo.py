"""`legato demo` sets everything up, runs the lab pipeline through a server and workers, and
leaves exactly one recording waiting for approval."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_the_demo_runs_the_pipeline_and_leaves_one_question(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env["LEGATO_HOME"] = str(tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "legato",
            "demo",
            "--port",
            str(port),
            "--recordings",
            "8",
            "--no-serve",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 3, proc.stderr  # paused: one recording waits for a person
    assert f"http://127.0.0.1:{port}" in proc.stderr and "legato answer" in proc.stderr
    home = tmp_path / "demo"
    local = {
        **env,
        "LEGATO_HOME": str(home),
        "LEGATO_DATABASE_URL": f"sqlite:///{home / 'legato.db'}",
    }
    asks = subprocess.run(
        [sys.executable, "-m", "legato", "asks", "ls", "--json"],
        env=local,
        capture_output=True,
        text=True,
        check=True,
    )
    [question] = json.loads(asks.stdout)
    assert "rec-007" in question["prompt"]
    runs = json.loads(
        subprocess.run(
            [sys.executable, "-m", "legato", "runs", "ls", "--all", "--json", "-n", "50"],
            env=local,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    mapped = [r for r in runs if r["flow"] == "process_recording" and r["parent_task_run_id"]]
    states = sorted(r["state"] for r in mapped)
    assert states == ["COMPLETED"] * 7 + ["PAUSED"]
    triggers = json.loads(
        subprocess.run(
            [sys.executable, "-m", "legato", "triggers", "ls", "--json"],
            env=local,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert [t["deployment"] for t in triggers] == ["lab-recording"]  # new files start runs
