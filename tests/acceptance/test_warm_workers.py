"""A worker with default options runs light task runs in warm processes it reuses, gives a
fresh one to tasks that ask for it, and survives a task that kills its process.

Real PostgreSQL, a real `legato worker start` with no --concurrency or --resources."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.postgres

FLOWS = str(Path(__file__).with_name("warm_flows.py"))


def test_light_runs_reuse_warm_processes_and_isolated_ones_get_their_own(
    cluster: Any, tmp_path: Path
) -> None:
    cluster.start_worker("box", "cpu", None, concurrency=None)
    cluster.wait_for_workers("box")
    marker = tmp_path / "crashed"
    proc = cluster.legato("run", f"{FLOWS}:where", "-p", "n=40", "-p", f"marker={marker}", "--json")
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)
    assert run["state"] == "COMPLETED"
    pids = run["result"]
    worker_pid = cluster.workers["box"].pid
    processes = os.cpu_count() or 1  # the default: one warm process per CPU
    # 40 light runs in at most one process per CPU, none of them the worker itself
    assert 1 <= len(set(pids["light"])) <= processes
    assert worker_pid not in pids["light"]
    # isolation="process": a fresh process for every run, never a warm one
    assert len(set(pids["isolated"])) == 5
    assert not set(pids["isolated"]) & set(pids["light"] + pids["after"])
    # the crash cost one attempt, not the worker: the retry ran, later runs still ran warm
    [crashed] = [tr for tr in run["task_runs"] if tr["task"] == "crashes_once"]
    assert crashed["state"] == "COMPLETED" and crashed["attempts"] == 2
    assert cluster.workers["box"].poll() is None
    assert 1 <= len(set(pids["after"])) <= processes
