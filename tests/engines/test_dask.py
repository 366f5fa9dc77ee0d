"""Task runs as Dask tasks, on real Dask clusters: a LocalCluster started by the bridge, and a
`dask scheduler` with `dask worker` processes (one with `--resources GPU=1`). Real
PostgreSQL, real bridge processes (`legato worker start --pool dask`)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from .conftest import DaskProcesses, create_pool, run_flow

pytestmark = [pytest.mark.dask, pytest.mark.postgres]


def test_a_local_cluster_started_for_the_pool_runs_the_tasks(cluster: Any) -> None:
    pytest.importorskip("distributed")
    create_pool(cluster, "dask", "dask", n_workers="2", resources="GPU=1")
    cluster.start_worker("dask-bridge", "dask", "cpu=1")
    cluster.wait_for_workers("dask-bridge", timeout=60)
    code, run, err = run_flow(cluster, "trivial_many", "n=20")
    assert code == 0, err
    assert run["result"] == sum(range(20))
    keys = {tr["engine_job_id"] for tr in run["task_runs"]}
    assert len(keys) == 20 and all(k.startswith("dask:legato-") for k in keys)


def test_gpu_tasks_land_on_gpu_workers(cluster: Any, dask_processes: DaskProcesses) -> None:
    address = dask_processes.start_scheduler()
    dask_processes.start_worker("cpuw")
    dask_processes.start_worker("gpuw", "--resources", "GPU=1")
    dask_processes.wait_for_workers(2)
    create_pool(cluster, "dask", "dask", address=address)
    cluster.start_worker("dask-bridge", "dask", "cpu=1")
    cluster.wait_for_workers("dask-bridge", timeout=60)
    code, run, err = run_flow(cluster, "routed", "n=8")
    assert code == 0, err
    assert set(run["result"]["gpu"]) == {"gpuw"}  # resources={"gpu": 1} -> GPU=1 workers only
    assert set(run["result"]["cpu"]) <= {"cpuw", "gpuw"}


@pytest.mark.slow
def test_a_worker_killed_mid_task_is_retried_and_nothing_completes_twice(
    cluster: Any, dask_processes: DaskProcesses, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.txt"
    effects.touch()
    address = dask_processes.start_scheduler()
    dask_processes.start_worker("steady")
    dask_processes.start_worker("victim")
    dask_processes.wait_for_workers(2)
    create_pool(cluster, "dask", "dask", address=address)
    cluster.start_worker("dask-bridge", "dask", "cpu=1")
    cluster.wait_for_workers("dask-bridge", timeout=60)

    import subprocess
    import sys

    from .conftest import FLOWS

    flow = subprocess.Popen(
        [sys.executable, "-m", "legato", "run", f"{FLOWS}:effects", "-q", "--json",
         "-p", "n=6", "-p", f"effects={effects}", "-p", "seconds=2"],
        env=cluster.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        for _ in range(300):  # wait until tasks are running on Dask
            if cluster.sql("SELECT 1 FROM task_runs WHERE engine_job_id IS NOT NULL"):
                break
            time.sleep(0.1)
        time.sleep(0.5)
        dask_processes.kill("victim")
        out, err = flow.communicate(timeout=180)
    finally:
        if flow.poll() is None:
            flow.kill()
    assert flow.returncode == 0, err
    import json

    run = json.loads(out)
    assert run["result"] == sum(range(6))
    runs = {tr["id"]: tr for tr in run["task_runs"]}
    crashed = [
        r[0]
        for r in cluster.sql(
            "SELECT run_id FROM state_history WHERE message LIKE 'CRASHED%%worker was lost%%'"
        )
    ]
    assert crashed, "the killed worker's task run was not seen as CRASHED"
    assert all(runs[i]["attempts"] >= 2 for i in crashed)
    # Recorded COMPLETED exactly once per task run, and each item's body completed once.
    completions = Counter(
        r[0] for r in cluster.sql("SELECT run_id FROM state_history WHERE state = 'COMPLETED'")
    )
    assert {i: completions[i] for i in runs} == dict.fromkeys(runs, 1)
    assert Counter(effects.read_text().split()) == Counter(str(i) for i in range(6))
