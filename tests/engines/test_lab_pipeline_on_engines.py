"""The lab pipeline example, unchanged, with its gpu pool on Slurm and its cpu pool on Dask:
`legato pools create gpu --type slurm`, `legato pools create cpu --type dask`, one bridge
each; the io and flows pools stay on Legato's own workers. Real Slurm, real Dask
(a LocalCluster started by the bridge), real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from legato.loader import load_module

from .conftest import create_pool

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.dask,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.usefixtures("slurm"),
]

EXAMPLE = Path(__file__).parents[2] / "examples" / "lab_pipeline"


@pytest.mark.timeout(400)
def test_the_lab_pipeline_runs_its_gpu_steps_on_slurm_and_cpu_steps_on_dask(
    cluster: Any, tmp_path: Path
) -> None:
    pytest.importorskip("distributed")
    pytest.importorskip("numpy")
    incoming = tmp_path / "incoming"
    load_module(str(EXAMPLE / "generate.py")).generate(incoming, 2, noisy=())
    create_pool(cluster, "gpu", "slurm", poll="0.5")
    create_pool(cluster, "cpu", "dask", n_workers="2")
    cluster.start_worker("gpu-slurm", "gpu", "cpu=1", concurrency=4)
    cluster.start_worker("cpu-dask", "cpu", "cpu=1")
    cluster.start_worker("io-box", "io", "cpu=2")
    cluster.start_worker("flow-box", "flows", "cpu=4")
    cluster.wait_for_workers("gpu-slurm", "cpu-dask", "io-box", "flow-box", timeout=90)
    pools = {
        p["pool"]: p["type"] for p in json.loads(cluster.legato("pools", "ls", "--json").stdout)
    }
    assert pools["gpu"] == "slurm" and pools["cpu"] == "dask" and pools["io"] == "process"

    proc = cluster.legato(
        "run",
        f"{EXAMPLE / 'pipeline.py'}:lab_pipeline",
        "-p",
        f"incoming={incoming}",
        "--json",
        "-q",
        timeout=360,
    )
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)
    assert run["result"] == {"processed": 2, "kept": 2, "rejected": 0, "flagged": []}
    rows = cluster.sql(
        "SELECT t.task, t.state, t.engine_job_id, t.pool FROM task_runs t"
        " WHERE t.pool IN ('gpu', 'cpu')"
    )
    by_pool: dict[str, list[tuple[str, str, str]]] = {}
    for task, state, job, pool in rows:
        by_pool.setdefault(pool, []).append((task, state, job))
    assert {t for t, _, _ in by_pool["gpu"]} == {"extract_poses", "transform_poses"}
    assert {t for t, _, _ in by_pool["cpu"]} == {
        "prelim_stats",
        "detailed_stats",
        "sync_to_database",
    }
    assert all(s == "COMPLETED" and j.startswith("slurm:") for _, s, j in by_pool["gpu"])
    assert all(s == "COMPLETED" and j.startswith("dask:") for _, s, j in by_pool["cpu"])
    assert len(by_pool["gpu"]) == 4 and len(by_pool["cpu"]) == 6
