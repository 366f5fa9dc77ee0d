"""One flow, two pools: tasks land on the right workers, GPUs are exclusive, capacity holds.

Real PostgreSQL, real worker processes (`legato worker start`), the flow run by `legato run`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.postgres

FLOWS = str(Path(__file__).with_name("placement_flows.py"))


def _overlap_max(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_tasks_land_on_their_pools_workers_with_exclusive_gpus(
    cluster: Any, tmp_path: Path, start: str
) -> None:
    """Under both process models (spawn: the portable one, forced here)."""
    cluster.start_worker("cpu-box", "cpu", "cpu=4", concurrency=4, LEGATO_PROCESS_START=start)
    cluster.start_worker("gpu-box", "gpu", "gpu=2", concurrency=4, LEGATO_PROCESS_START=start)
    cluster.wait_for_workers("cpu-box", "gpu-box")
    proc = cluster.legato(
        "run", f"{FLOWS}:placed", "-p", "n=6", "-p", f"marker={tmp_path / 'flaky'}", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)
    assert run["state"] == "COMPLETED"
    by_task: dict[str, list[dict[str, Any]]] = {}
    for tr in run["task_runs"]:
        by_task.setdefault(tr["task"], []).append(tr)
    assert {tr["worker"] for tr in by_task["extract"]} == {"gpu-box"}
    assert {tr["worker"] for tr in by_task["stats"] + by_task["flaky"]} == {"cpu-box"}
    assert [tr["worker"] for tr in by_task["local_step"]] == [None]  # ran where the flow ran
    assert [tr["attempts"] for tr in by_task["flaky"]] == [2]  # retried by the worker
    assert run["result"]["count"] == 6 and run["result"]["flaky"] == "ok"

    # Each GPU task saw exactly one GPU; tasks running at the same time saw different ones.
    gpus = {r["i"]: r["gpus"] for r in run["result"]["gpu"]}
    assert set(gpus.values()) <= {"0", "1"}
    rows = cluster.sql(
        "SELECT key, started_at, ended_at FROM task_runs WHERE task = 'extract' ORDER BY key"
    )
    spans = {key: (start, end) for key, start, end in rows}
    index = {f"extract:0[{i}]": i for i in range(6)}
    for a, (sa, ea) in spans.items():
        for b, (sb, eb) in spans.items():
            if a < b and sa < eb and sb < ea:
                assert gpus[index[a]] != gpus[index[b]], (a, b)
    # Capacity gpu=2 never exceeded, though the worker may run 4 at once.
    assert _overlap_max(list(spans.values())) <= 2


def test_a_pool_without_workers_waits_and_says_so(cluster: Any, tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "legato",
            "run",
            f"{FLOWS}:placed",
            "-p",
            "n=1",
            "-p",
            f"marker={tmp_path / 'm'}",
            "-q",
        ],
        env=cluster.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        shown = ""
        for _ in range(100):
            time.sleep(0.2)
            listed = cluster.legato("runs", "ls", "--json")
            runs = json.loads(listed.stdout or "[]")
            if runs:
                shown = cluster.legato("runs", "show", runs[0]["id"]).stdout
                if "waiting for a worker in pool gpu" in shown:
                    break
        assert "waiting for a worker in pool gpu" in shown
        cluster.start_worker("gpu-late", "gpu", "gpu=1")
        cluster.start_worker("cpu-late", "cpu", "cpu=2")
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_deployment_runs_on_its_pool_and_an_answer_requeues_it(
    cluster: Any, tmp_path: Path
) -> None:
    cluster.start_worker("flow-box", "flows", "cpu=2")
    cluster.start_worker("cpu-box", "cpu", "cpu=2")
    cluster.wait_for_workers("flow-box", "cpu-box")
    deployed = cluster.legato("deploy", f"{FLOWS}:reviewed", "--name", "review", "--pool", "flows")
    assert deployed.returncode == 0, deployed.stderr
    [dep] = json.loads(cluster.legato("deployments", "ls", "--json").stdout)
    assert dep["pool"] == "flows" and dep["version"]
    started = cluster.legato("run", "review", "-p", "item=dataset-7", "--json")
    assert started.returncode == 3, started.stderr  # paused: waiting for a person
    run = json.loads(started.stdout)
    assert run["deployment"] == "review" and run["version"] == dep["version"]
    assert run["worker"] == "flow-box"
    [question] = json.loads(cluster.legato("asks", "ls", "--json").stdout)
    answered = cluster.legato("answer", question["flow_run_id"], "yes")
    assert answered.returncode == 0, answered.stderr
    assert "queued for pool flows" in answered.stderr
    import time

    for _ in range(150):
        shown = json.loads(cluster.legato("runs", "show", run["id"], "--json").stdout)
        if shown["state"] == "COMPLETED":
            break
        time.sleep(0.2)
    assert shown["state"] == "COMPLETED"
    assert shown["result"] == {"item": "DATASET-7", "ok": True}
    [prepare] = [t for t in shown["task_runs"] if t["task"] == "prepare"]
    assert prepare["attempts"] == 1  # the resumed run replayed it, did not run it again


def test_an_unknown_deployment_is_a_usage_error(cluster: Any) -> None:
    proc = cluster.legato("run", "nothing-here")
    assert proc.returncode == 2 and "no deployment named 'nothing-here'" in proc.stderr
