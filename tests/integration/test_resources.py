"""Resources: tasks get exclusive GPU ids through CUDA_VISIBLE_DEVICES, and a task that needs
more than the machine has fails clearly."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from legato import State, flow, task
from legato.errors import NoWorkerForPool
from legato.runtime import Runtime, get_runtime
from legato.store import Store
from legato.testing import last_flow_run


def store() -> Store:
    return get_runtime().store


@task(resources={"gpu": 1})
def which_gpu(hold: float) -> str:
    time.sleep(hold)
    return os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")


def test_a_gpu_task_sees_one_gpu_id(configure: Callable[..., Runtime]) -> None:
    configure(resources="gpu=2")

    @flow
    def one_gpu() -> str:
        return which_gpu(0.0)

    visible = one_gpu()
    assert visible in {"0", "1"}
    [tr] = store().get_task_runs(last_flow_run(store()).id)
    assert tr.resources == {"gpu": 1.0}
    assert tr.state is State.COMPLETED


def test_two_concurrent_gpu_tasks_get_different_ids(configure: Callable[..., Runtime]) -> None:
    configure(resources="gpu=2")

    @flow
    def two_gpus() -> list[str]:
        futures = [which_gpu.submit(1.0) for _ in range(2)]
        return [f.result() for f in futures]

    visible = two_gpus()
    assert sorted(visible) == ["0", "1"]


def test_gpu_tasks_beyond_capacity_wait_for_a_free_gpu(configure: Callable[..., Runtime]) -> None:
    configure(resources="gpu=1")

    @flow
    def queued_gpus() -> list[str]:
        futures = [which_gpu.submit(0.2) for _ in range(2)]
        return [f.result() for f in futures]

    assert queued_gpus() == ["0", "0"]
    runs = store().get_task_runs(last_flow_run(store()).id)
    assert {tr.state for tr in runs} == {State.COMPLETED}


def test_a_task_needing_more_than_the_machine_has_fails_with_no_worker_for_pool(
    configure: Callable[..., Runtime],
) -> None:
    configure(resources="gpu=2,cpu=4")
    ran: list[int] = []

    @task(resources={"gpu": 4})
    def huge() -> None:
        ran.append(1)

    @flow
    def too_big() -> None:
        huge()

    with pytest.raises(NoWorkerForPool, match="gpu=4") as info:
        too_big()
    assert "LEGATO_RESOURCES" in str(info.value)
    assert ran == []
    run = last_flow_run(store())
    assert run.state is State.FAILED
    [tr] = store().get_task_runs(run.id)
    assert tr.state is State.FAILED
    assert (tr.error or "").startswith("NoWorkerForPool:")


def test_a_custom_resource_the_machine_lacks_fails_with_no_worker_for_pool(
    configure: Callable[..., Runtime],
) -> None:
    configure(resources="cpu=2")

    @task(resources={"licence": 1})
    def licensed() -> None:
        pass

    @flow
    def needs_licence() -> None:
        licensed()

    with pytest.raises(NoWorkerForPool, match="licence"):
        needs_licence()


def test_cpu_resources_are_shared_out_without_a_child_process(
    configure: Callable[..., Runtime],
) -> None:
    configure(resources="cpu=2")

    @task(resources={"cpu": 1})
    def pid(_item: int) -> int:
        return os.getpid()

    @flow
    def cpu_bound() -> list[int]:
        return [f.result() for f in pid.map(range(4))]

    assert cpu_bound() == [os.getpid()] * 4
