"""Real engines for the engine tests: a single-node Slurm (set up by .ci/setup-slurm.sh when
`sinfo` does not answer and we are root) and Dask schedulers and workers started as
processes. Everything started here is stopped here, by PID."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOWS = str(Path(__file__).with_name("engine_flows.py"))


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires it")
    pytest.skip(reason)


def _sinfo_answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10, check=False
        )
    except subprocess.TimeoutExpired:
        return False
    return out.returncode == 0 and any(
        s.strip() in ("idle", "mix", "alloc") for s in out.stdout.split()
    )


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A Slurm cluster that answers; set up here (as root) when there is none."""
    started_file = tmp_path_factory.mktemp("slurm") / "started.txt"
    if not _sinfo_answers():
        if os.geteuid() != 0:
            _unavailable("Slurm is not running and setting it up needs root (.ci/setup-slurm.sh)")
        env = dict(os.environ, LEGATO_SLURM_STARTED=str(started_file))
        proc = subprocess.run(
            ["bash", str(ROOT / ".ci" / "setup-slurm.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0 or not _sinfo_answers():
            _unavailable(f"could not set up Slurm: {proc.stderr.strip()[-2000:]}")
    yield
    if started_file.exists():  # stop what we started, newest first, by PID
        for line in reversed(started_file.read_text().splitlines()):
            _name, _, pid = line.partition(" ")
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)


def _dask_available() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        _unavailable("the distributed package is not installed (pip install 'legato[dask]')")


class DaskProcesses:
    """A `dask scheduler` and `dask worker` processes, on 127.0.0.1, ports chosen by the OS."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.scheduler_file = folder / "scheduler.json"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = dict(
            os.environ,
            DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0",
            DASK_DISTRIBUTED__DIAGNOSTICS__NVML="False",
        )

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.folder / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [str(Path(sys.executable).with_name("dask")), *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def start_scheduler(self) -> str:
        self._spawn(
            "scheduler",
            [
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                "127.0.0.1:0",
                "--scheduler-file",
                str(self.scheduler_file),
            ],
        )
        for _ in range(300):
            if self.scheduler_file.exists():
                try:
                    return str(json.loads(self.scheduler_file.read_text())["address"])
                except (ValueError, KeyError):
                    pass
            time.sleep(0.1)
        raise TimeoutError(f"the dask scheduler did not start; see {self.folder}")

    def start_worker(self, name: str, *extra: str) -> None:
        self._spawn(
            name,
            [
                "worker",
                "--scheduler-file",
                str(self.scheduler_file),
                "--host",
                "127.0.0.1",
                "--nthreads",
                "1",
                "--name",
                name,
                "--no-dashboard",
                *extra,
            ],
        )

    def wait_for_workers(self, n: int) -> None:
        from distributed import Client

        with Client(scheduler_file=str(self.scheduler_file), timeout="30s") as client:
            client.wait_for_workers(n, timeout=60)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill a worker and everything it started (the nanny and its worker process)."""
        proc = self.procs.pop(name)
        try:
            _kill_tree(proc.pid, sig)
        finally:
            proc.wait(30)

    def stop(self) -> None:
        for name in [n for n in self.procs if n != "scheduler"]:
            proc = self.procs.pop(name)
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                _kill_tree(proc.pid, signal.SIGKILL)
                proc.wait(15)
        sched = self.procs.pop("scheduler", None)
        if sched is not None:
            sched.terminate()
            try:
                sched.wait(15)
            except subprocess.TimeoutExpired:
                sched.kill()
                sched.wait(15)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def _kill_tree(pid: int, sig: int) -> None:
    """Signal a process and its descendants (children first listed, then the parent)."""
    for child in _children(pid):
        _kill_tree(child, sig)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


@pytest.fixture
def dask_processes(tmp_path: Path) -> Iterator[DaskProcesses]:
    _dask_available()
    procs = DaskProcesses(tmp_path)
    yield procs
    procs.stop()


def create_pool(cluster: Any, name: str, kind: str, **options: str) -> None:
    args = ["pools", "create", name, "--type", kind]
    for key, value in options.items():
        args += ["--option", f"{key}={value}"]
    made = cluster.legato(*args)
    assert made.returncode == 0, made.stderr


def run_flow(cluster: Any, ref: str, *params: str, timeout: float = 240) -> tuple[int, Any, str]:
    args = ["run", f"{FLOWS}:{ref}", "--json", "-q"]
    for p in params:
        args += ["-p", p]
    proc = cluster.legato(*args, timeout=timeout)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        data = None
    return proc.returncode, data, proc.stderr
