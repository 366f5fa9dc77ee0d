"""A worker that stops (SIGSTOP) or is starved must never cause a wrong outcome.

- Stopped for three lease periods with a claimed run: the run is re-queued and completed by
  another worker; when the stopped one resumes, its late result is refused as stale. The run
  is recorded COMPLETED exactly once.
- Tasks that hold the GIL or keep both cores busy for longer than a lease: the worker's
  heartbeats come from its own process, which task code cannot block, so no run is marked
  CRASHED by mistake (warm processes and fresh ones alike, under both process models).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

FLOWS = str(Path(__file__).with_name("stall_flows.py"))


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_stopped_worker_resumed_after_its_lease_has_its_result_refused(
    cluster: Any, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.txt"
    effects.touch()
    cluster.start_worker("stopped", "cpu", None, concurrency=None)
    cluster.wait_for_workers("stopped")
    flow = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "legato",
            "run",
            f"{FLOWS}:one_slow",
            "-p",
            f"effects={effects}",
            "--json",
            "-q",
        ],
        env=cluster.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stopped = cluster.workers["stopped"]
    try:
        _wait(lambda: "start" in effects.read_text(), 60, "the task to start on 'stopped'")
        stopped.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        cluster.start_worker("steady", "cpu", None, concurrency=None)
        # The lease runs out, the run is queued again, and the steady worker completes it.
        _wait(
            lambda: (
                cluster.sql("SELECT state, worker FROM task_runs WHERE task = 'takes_a_second'")
                == [("COMPLETED", "steady")]
            ),
            60,
            "the steady worker to complete the re-queued run",
        )
        lease = 1.5 * cluster.heartbeat
        time.sleep(max(0.0, 3 * lease - (time.monotonic() - stopped_at)))  # 3 lease periods
        stopped.send_signal(signal.SIGCONT)
        log = cluster.logs / "stopped.log"
        _wait(lambda: "refused (lease lost)" in log.read_text(), 60, "the stale result refused")
        out, err = flow.communicate(timeout=120)
    finally:
        stopped.send_signal(signal.SIGCONT)
        if flow.poll() is None:
            flow.kill()
    assert flow.returncode == 0, err
    run = json.loads(out)
    assert run["state"] == "COMPLETED"
    [tr] = run["task_runs"]
    assert tr["worker"] == "steady" and tr["attempts"] == 2
    history = cluster.sql(
        "SELECT state FROM state_history WHERE run_id = %s ORDER BY at, id", tr["id"]
    )
    states = Counter(s for (s,) in history)
    assert states["COMPLETED"] == 1
    assert states["CRASHED"] == 1  # the lost lease, once
    assert effects.read_text().count("start") == 2  # both attempts ran; one result counts


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_tasks_that_hog_the_gil_or_the_cores_are_never_marked_crashed(
    cluster: Any, start: str
) -> None:
    cluster.start_worker("busy", "cpu", None, concurrency=None, LEGATO_PROCESS_START=start)
    cluster.wait_for_workers("busy")
    seconds = 3 * 1.5 * cluster.heartbeat  # three lease periods each
    proc = cluster.legato(
        "run", f"{FLOWS}:hogs", "-p", f"seconds={seconds}", "--json", "-q", timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)
    assert run["state"] == "COMPLETED"
    assert run["result"] == ["gil", "cpu", "gil", "cpu", "cpu", "gil"]
    assert all(tr["attempts"] == 1 for tr in run["task_runs"]), run["task_runs"]
    ids = [tr["id"] for tr in run["task_runs"]]
    crashed = cluster.sql(
        "SELECT run_id FROM state_history WHERE state = 'CRASHED' AND run_id = ANY(%s)", ids
    )
    assert crashed == []
