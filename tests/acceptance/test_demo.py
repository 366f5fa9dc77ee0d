"""`legato demo` sets everything up, runs the lab pipeline through a server and workers, and
leaves exactly one recording waiting for approval."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


def _processes_of(home: Path) -> list[int]:
    """Pids of processes whose environment names ``home`` (the demo's children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"LEGATO_HOME={home}".encode() in environ:
            found.append(int(entry.name))
    return found


DEMO = (sys.executable, "-m", "legato", "demo")


@contextmanager
def _serving_demo(tmp_path: Path, recordings: int) -> Iterator[subprocess.Popen[bytes]]:
    """`legato demo` in a process group of its own, as a terminal starts it; its output in
    demo.log. Killed at the end if a test left it running."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env["LEGATO_HOME"] = str(tmp_path)
    with (tmp_path / "demo.log").open("w") as log:
        proc = subprocess.Popen(
            [*DEMO, "--port", str(port), "--recordings", str(recordings)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)


def _wait_until(proc: subprocess.Popen[bytes], log: Path, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 240
    while not ready():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the demo did not get there"
        time.sleep(0.2)


def test_ctrl_c_stops_the_demo_in_order_and_leaves_nothing_running(tmp_path: Path) -> None:
    log, home = tmp_path / "demo.log", tmp_path / "demo"
    with _serving_demo(tmp_path, 3) as proc:
        _wait_until(proc, log, lambda: "Serving until Ctrl-C." in log.read_text())
        assert len(_processes_of(home)) >= 5  # the server and four workers
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
        assert proc.wait(60) == 0
    assert "stopping the demo" in log.read_text()
    assert _processes_of(home) == []
    worker_log = (home / "logs" / "worker-cpu.log").read_text()
    assert "Traceback" not in worker_log, worker_log[-2000:]


def test_a_closed_terminal_stops_the_demo_in_order_too(tmp_path: Path) -> None:
    log, home = tmp_path / "demo.log", tmp_path / "demo"
    with _serving_demo(tmp_path, 2) as proc:
        # the server is up: SIGHUP before the demo serves, while it starts its workers
        _wait_until(proc, log, lambda: len(_processes_of(home)) >= 2)
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(60) == 0
    left = {p: Path(f"/proc/{p}/cmdline").read_bytes() for p in _processes_of(home)}
    assert left == {}  # what is left, by command line
