"""A small Legato deployment for tests: a PostgreSQL database, worker processes, and a way to
run flows against them. Everything it starts it stops, by PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


class Cluster:
    def __init__(self, database_url: str, home: Path, heartbeat: float = 1.0) -> None:
        self.database_url = database_url
        self.home = home
        self.heartbeat = heartbeat
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[Any] = []
        self.logs = home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
        env.update(
            LEGATO_HOME=str(self.home),
            LEGATO_DATABASE_URL=self.database_url,
            LEGATO_REMOTE_POOLS="true",
            LEGATO_HEARTBEAT_SECONDS=str(self.heartbeat),
            LEGATO_RESULT_STORAGE=str(self.home / "shared-results"),
            **extra,
        )
        return env

    def legato(
        self, *args: str, timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "legato", *args],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_worker(
        self, name: str, pool: str, resources: str | None, concurrency: int | None = 4, **env: str
    ) -> None:
        """``None`` for resources or concurrency: the worker's defaults, as a user gets them."""
        log = (self.logs / f"{name}.log").open("ab")
        self._logs.append(log)
        self.workers[name] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "legato",
                "worker",
                "start",
                "--pool",
                pool,
                "--name",
                name,
                *(["--resources", resources] if resources is not None else []),
                *(["--concurrency", str(concurrency)] if concurrency is not None else []),
                "--grace",
                "5",
            ],
            env=self.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def wait_for_workers(self, *names: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            listed = self.legato("workers", "ls", "--json")
            if listed.returncode == 0:
                online = {w["name"] for w in json.loads(listed.stdout) if w["state"] == "online"}
                if set(names) <= online:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"workers {names} did not come online; see {self.logs}")

    def kill_worker(self, name: str, sig: int = signal.SIGKILL) -> float:
        proc = self.workers.pop(name)
        at = time.time()
        proc.send_signal(sig)
        proc.wait(30)
        return at

    def stop(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
        self.workers.clear()
        for log in self._logs:
            log.close()

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()  # type: ignore[arg-type]
