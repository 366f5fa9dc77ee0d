"""Kill -9 a worker again and again while a 500-task flow runs over two workers.

The flow must complete; every task run is recorded COMPLETED exactly once; a task recorded
COMPLETED before a kill never runs again; and a killed worker's task runs are back in the
queue within two heartbeat intervals.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

FLOWS = str(Path(__file__).with_name("chaos_flows.py"))
HEARTBEAT = 1.0


def test_killing_a_worker_loses_nothing_and_repeats_nothing(cluster: Any, tmp_path: Path) -> None:
    effects = tmp_path / "effects.txt"
    effects.touch()
    env = {"EFFECTS": str(effects)}
    cluster.start_worker("steady", "cpu", "cpu=4", concurrency=4, **env)
    cluster.start_worker("victim", "cpu", "cpu=4", concurrency=4, **env)
    cluster.wait_for_workers("steady", "victim")
    flow = subprocess.Popen(
        [sys.executable, "-m", "legato", "run", f"{FLOWS}:many", "-p", "n=500", "--json", "-q"],
        env=cluster.env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    kills: list[tuple[float, set[str], set[str], Counter[str]]] = []
    try:
        time.sleep(2.0)
        for _ in range(3):
            held = {
                r[0]
                for r in cluster.sql(
                    "SELECT id FROM task_runs WHERE state = 'RUNNING' AND worker = 'victim'"
                )
            }
            done = {
                r[0] for r in cluster.sql("SELECT key FROM task_runs WHERE state = 'COMPLETED'")
            }
            killed_at = cluster.kill_worker("victim")
            ran = Counter(effects.read_text().split())  # executions finished by now
            kills.append((killed_at, held, done, ran))
            time.sleep(1.0)
            cluster.start_worker("victim", "cpu", "cpu=4", concurrency=4, **env)
            time.sleep(1.5)
        out, err = flow.communicate(timeout=240)
    finally:
        if flow.poll() is None:
            flow.kill()
    assert flow.returncode == 0, err
    run = json.loads(out)
    assert run["state"] == "COMPLETED" and run["result"] == sum(range(500))
    assert all(tr["state"] == "COMPLETED" for tr in run["task_runs"])

    # Recorded COMPLETED exactly once per task run.
    completions = Counter(
        r[0] for r in cluster.sql("SELECT run_id FROM state_history WHERE state = 'COMPLETED'")
    )
    task_ids = {tr["id"] for tr in run["task_runs"]}
    assert {i for i in task_ids if completions[i] != 1} == set()

    # A task recorded COMPLETED before a kill never ran again after it. (Before completing,
    # a task may have run twice: an attempt in flight on a killed worker is run again.)
    executions = Counter(effects.read_text().split())
    for _, _, done_before, ran_before in kills:
        items = {k.split("[")[1].rstrip("]") for k in done_before}
        assert {i for i in items if executions[i] != ran_before[i]} == set()
    assert all(executions[str(i)] >= 1 for i in range(500))

    # The victim's runs went back to the queue within two heartbeat intervals of each kill.
    held_any = False
    for killed_at, held, _, _ in kills:
        if not held:
            continue
        rows = cluster.sql(
            "SELECT run_id, min(at) FROM state_history WHERE state = 'CRASHED' AND at >= %s "
            "AND message = 'lease expired' GROUP BY run_id",
            killed_at,
        )
        # A run may finish in the instant between reading `held` and the kill: those were
        # recorded COMPLETED before the kill and have nothing to re-queue.
        finished = {
            r[0]
            for r in cluster.sql(
                "SELECT run_id FROM state_history WHERE state = 'COMPLETED' AND at < %s",
                killed_at,
            )
        }
        still_held = held - finished
        requeued = {run_id: at for run_id, at in rows if run_id in still_held}
        assert set(requeued) == still_held, "some runs of the killed worker were not re-queued"
        if not requeued:
            continue
        held_any = True
        slowest = max(requeued.values()) - killed_at
        assert slowest <= 2 * HEARTBEAT, f"re-queued {slowest:.2f} s after the kill"
    assert held_any, "the victim held no runs at any kill: the test proved nothing"
