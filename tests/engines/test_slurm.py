"""Task runs as Slurm jobs, on a real single-node Slurm (sbatch, squeue, scancel) with one
fake GPU (a GRES whose device file is /dev/null), a real PostgreSQL and real bridge
processes (`legato worker start --pool hpc` for a pool of type slurm)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import create_pool, run_flow

pytestmark = [pytest.mark.slurm, pytest.mark.postgres, pytest.mark.usefixtures("slurm")]


@pytest.fixture
def hpc(cluster: Any) -> Any:
    create_pool(cluster, "hpc", "slurm", poll="0.5", array_window="0.2")
    cluster.start_worker("hpc-bridge", "hpc", "cpu=1", concurrency=8)
    cluster.wait_for_workers("hpc-bridge")
    return cluster


def _history(cluster: Any, task_run_id: str) -> list[tuple[str, str]]:
    return [
        (r[0], r[1] or "")
        for r in cluster.sql(
            "SELECT state, message FROM state_history WHERE run_id = %s ORDER BY id", task_run_id
        )
    ]


def test_a_gpu_task_gets_cuda_visible_devices_and_its_job_id_is_shown(hpc: Any) -> None:
    code, run, err = run_flow(hpc, "on_gpu")
    assert code == 0, err
    assert run["result"]["cuda"] == "0"  # Slurm's GRES plugin handed out GPU 0
    [tr] = run["task_runs"]
    assert tr["engine_job_id"] == f"slurm:{run['result']['slurm_job']}"
    shown = hpc.legato("runs", "show", run["id"])
    assert f"job slurm:{run['result']['slurm_job']}" in shown.stdout
    logs = hpc.legato("runs", "logs", run["id"]).stdout
    assert "hello from the GPU job" in logs  # the job's stdout, shipped back
    assert "logged inside the Slurm job" in logs  # get_logger() records


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_task_killed_by_its_time_limit_is_timed_out_then_retried(
    hpc: Any, tmp_path: Path
) -> None:
    code, run, err = run_flow(hpc, "timed_out", f"marker={tmp_path / 'm'}", timeout=380)
    assert code == 0, err
    assert run["result"] == "second attempt"
    [tr] = run["task_runs"]
    assert tr["attempts"] == 2
    states = _history(hpc, tr["id"])
    [retry] = [m for st, m in states if st == "AWAITING_RETRY"]
    assert "TaskTimeout" in retry and "TIMEOUT" in retry, states  # Slurm's state, mapped


def test_scancel_from_outside_is_seen_as_cancelled(hpc: Any) -> None:
    proc = subprocess.Popen(
        [*hpc_cmd(hpc), "run", f"{FLOWS()}:sleeper", "-p", "seconds=300", "--json", "-q"],
        env=hpc.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        job = None
        for _ in range(300):
            rows = hpc.sql("SELECT engine_job_id FROM task_runs WHERE engine_job_id IS NOT NULL")
            if rows:
                job = rows[0][0]
                break
            time.sleep(0.1)
        assert job is not None and job.startswith("slurm:")
        subprocess.run(["scancel", job.removeprefix("slurm:")], check=True, timeout=30)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    run = json.loads(out)
    [tr] = run["task_runs"]
    assert tr["state"] == "CANCELLED", (tr, err)
    assert tr["attempts"] == 1
    assert "CANCELLED" in (tr["error"] or "")


def test_a_job_that_fails_is_failed_with_its_stderr(hpc: Any) -> None:
    code, run, err = run_flow(hpc, "failing", "code=3")
    assert code == 1, err
    [tr] = run["task_runs"]
    assert tr["state"] == "FAILED"
    assert tr["attempts"] == 3  # retried under the task's policy (retries=2)
    assert "FAILED" in tr["error"] and "exit code 3" in tr["error"]
    assert "the disk is on fire" in tr["error"]


def test_many_small_tasks_go_as_job_arrays(hpc: Any) -> None:
    code, run, err = run_flow(hpc, "many_small", "n=12")
    assert code == 0, err
    assert run["result"] == sum(range(1, 13))
    jobs = [tr["engine_job_id"] for tr in run["task_runs"]]
    arrays = {j.split(":")[1].split("_")[0] for j in jobs if "_" in j}
    assert arrays and len(arrays) < len(jobs), jobs  # packed: fewer submissions than tasks


def hpc_cmd(_: Any) -> list[str]:
    import sys

    return [sys.executable, "-m", "legato"]


def FLOWS() -> str:
    from .conftest import FLOWS as path

    return path
