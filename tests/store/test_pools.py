"""Pool definitions and engine job ids, on every store backend (SQLite, PostgreSQL, HTTP)."""

from __future__ import annotations

import time

from legato.models import Pool, State, TaskRun, new_id
from legato.store import InsertFlowRun, InsertTaskRun, Store


def test_pools_are_created_replaced_listed_and_removed(store: Store) -> None:
    assert store.get_pool("gpu") is None and store.list_pools() == []
    store.put_pool(Pool("gpu", "slurm", {"partition": "gpu"}, created_at=100.0))
    store.put_pool(Pool("cpu", "dask", {"address": "tcp://127.0.0.1:8786"}, created_at=101.0))
    store.put_pool(Pool("gpu", "slurm", {"partition": "a100", "qos": "high"}, created_at=200.0))
    gpu = store.get_pool("gpu")
    assert gpu is not None
    assert gpu.options == {"partition": "a100", "qos": "high"} and gpu.created_at == 100.0
    assert [(p.name, p.type) for p in store.list_pools()] == [("cpu", "dask"), ("gpu", "slurm")]
    assert store.delete_pool("gpu") and not store.delete_pool("gpu")
    assert [p.name for p in store.list_pools()] == ["cpu"]


def test_the_engine_job_id_is_fenced_by_the_attempt(store: Store) -> None:
    from legato.models import FlowRun

    flow_run = FlowRun(new_id(), "f", State.RUNNING, created_at=time.time())
    tr = TaskRun(new_id(), flow_run.id, "t", "t:0", State.PENDING, pool="hpc", max_attempts=2)
    tr.queued_at = time.time() - 1
    store.apply([InsertFlowRun(flow_run), InsertTaskRun(tr)])
    [claimed] = store.claim_task_runs("hpc", "bridge", {}, limit=1)
    assert claimed.attempts == 1
    assert not store.set_engine_job(tr.id, 2, "slurm:99")  # not the attempt holding it
    assert store.set_engine_job(tr.id, 1, "slurm:12")
    assert store.get_task_run(tr.id).engine_job_id == "slurm:12"
    assert any(h.message == "engine job slurm:12" for h in store.get_history(tr.id))
    assert store.finish_task_run(tr.id, 1, State.COMPLETED, {"result": {"v": 1}})
    assert not store.set_engine_job(tr.id, 1, "slurm:13")  # ended: nothing changes
    assert store.get_task_run(tr.id).engine_job_id == "slurm:12"
