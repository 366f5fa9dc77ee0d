"""The server, then PostgreSQL, restarted while a flow runs through them: clients retry and
carry on; no run is lost or duplicated; every task run is recorded COMPLETED exactly once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

FLOWS = str(Path(__file__).with_name("restart_flows.py"))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, cluster: Any, port: int) -> None:
        self.cluster, self.port = cluster, port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "legato",
                "server",
                "start",
                "--port",
                str(self.port),
                "--no-auth",
                "--log-level",
                "warning",
            ],
            env=self.cluster.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import httpx

        for _ in range(200):
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("the server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)


def _api_env(cluster: Any, port: int, effects: Path) -> dict[str, str]:
    env = cluster.env(EFFECTS=str(effects), LEGATO_API_URL=f"http://127.0.0.1:{port}")
    env.pop("LEGATO_DATABASE_URL")  # everything goes through the server
    return env


def _run_with_disruption(cluster: Any, tmp_path: Path, disrupt: Any) -> None:
    effects = tmp_path / "effects.txt"
    effects.touch()
    port = _port()
    server = Server(cluster, port)
    server.start()
    env = _api_env(cluster, port, effects)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "legato",
            "worker",
            "start",
            "--pool",
            "cpu",
            "--resources",
            "cpu=4",
            "--concurrency",
            "4",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    flow = subprocess.Popen(
        [sys.executable, "-m", "legato", "run", f"{FLOWS}:steady", "-p", "n=40", "--json", "-q"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(300):  # disrupt once the flow is under way
            if len(effects.read_text().split()) >= 5:
                break
            time.sleep(0.05)
        disrupt(server)
        out, err = flow.communicate(timeout=180)
    finally:
        for proc in (flow, worker):
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        server.kill()
    assert flow.returncode == 0, err
    run = json.loads(out)
    assert run["state"] == "COMPLETED" and run["result"] == sum(range(40))
    runs = cluster.sql("SELECT id FROM flow_runs")
    assert len(runs) == 1  # nothing lost, nothing started twice
    completed = Counter(
        r[0] for r in cluster.sql("SELECT run_id FROM state_history WHERE state = 'COMPLETED'")
    )
    ids = {tr["id"] for tr in run["task_runs"]}
    assert len(ids) == 40 and all(completed[i] == 1 for i in ids)
    assert set(effects.read_text().split()) == {str(i) for i in range(40)}


def test_the_server_killed_and_restarted_mid_run(cluster: Any, tmp_path: Path) -> None:
    def restart_server(server: Server) -> None:
        server.kill()
        time.sleep(1.5)
        server.start()

    _run_with_disruption(cluster, tmp_path, restart_server)


def _pg_ctlcluster() -> list[str] | None:
    tool = shutil.which("pg_ctlcluster")
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if tool is None or not versions or os.geteuid() != 0:
        return None
    return [tool, "--skip-systemctl-redirect", versions[-1], "main", "restart"]


def test_postgresql_restarted_mid_run(cluster: Any, tmp_path: Path) -> None:
    command = _pg_ctlcluster()
    if command is None:
        reason = "restarting PostgreSQL needs root and pg_ctlcluster (Debian's cluster tools)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)

    def restart_postgres(_: Server) -> None:
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    _run_with_disruption(cluster, tmp_path, restart_postgres)
