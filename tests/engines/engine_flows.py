"""Flows for the engine tests: the same tasks run on a Slurm pool ("hpc"), a Dask pool
("dask") and a Kubernetes pool ("k8s"); the pools are defined by each test."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from legato import flow, get_logger, task

# -- Slurm --------------------------------------------------------------------------------


@task(pool="hpc", resources={"gpu": 1})
def gpu_env() -> dict[str, str | None]:
    print("hello from the GPU job")
    get_logger().info("logged inside the Slurm job")
    return {
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
    }


@task(pool="hpc", timeout=60, retries=1, retry_delay=0)
def outlives_its_time(marker: str) -> str:
    """The first attempt runs past --time and is killed by Slurm; the retry is quick."""
    if not os.path.exists(marker):
        Path(marker).write_text("attempt 1")
        time.sleep(600)
    return "second attempt"


@task(pool="hpc")
def sleeps(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


@task(pool="hpc", retries=2, retry_delay=0)
def dies(code: int) -> None:
    print("about to fail", file=sys.stderr, flush=True)
    print("the disk is on fire", file=sys.stderr, flush=True)
    os._exit(code)


@task(pool="hpc")
def add_one(i: int) -> int:
    return i + 1


@flow
def on_gpu() -> dict[str, str | None]:
    return gpu_env()


@flow
def timed_out(marker: str) -> str:
    return outlives_its_time(marker)


@flow
def sleeper(seconds: float) -> str:
    return sleeps(seconds)


@flow
def failing(code: int) -> None:
    dies(code)


@flow
def many_small(n: int) -> int:
    return sum(f.result() for f in add_one.map(range(n)))


# -- Dask ---------------------------------------------------------------------------------


@task(pool="dask", resources={"gpu": 1})
def where_gpu(i: int) -> str:
    return os.environ.get("DASK_WORKER_NAME") or _worker_name()


@task(pool="dask")
def where_any(i: int) -> str:
    return _worker_name()


def _worker_name() -> str:
    from distributed import get_worker

    return str(get_worker().name)


@flow
def routed(n: int) -> dict[str, list[str]]:
    gpu = where_gpu.map(range(n))
    cpu = where_any.map(range(n))
    return {"gpu": [f.result() for f in gpu], "cpu": [f.result() for f in cpu]}


@task(pool="dask", retries=3, retry_delay=0)
def slow_effect(i: int, effects: str, seconds: float) -> int:
    time.sleep(seconds)
    with open(effects, "a") as fh:  # one line per completed execution
        fh.write(f"{i}\n")
    return i


@flow
def effects(n: int, effects: str, seconds: float) -> int:
    return sum(f.result() for f in slow_effect.map(range(n), effects=effects, seconds=seconds))


@task(pool="dask")
def trivial(i: int) -> int:
    return i


@flow
def trivial_many(n: int) -> int:
    return sum(f.result() for f in trivial.map(range(n)))


# -- Kubernetes -----------------------------------------------------------------------------


@task(pool="k8s", resources={"gpu": 1, "cpu": 2, "mem_gb": 4}, timeout=120)
def in_a_pod(x: int) -> int:
    print("inside the pod")
    return x * 2


@task(pool="k8s", retries=1, retry_delay=0)
def pod_fails() -> None:
    raise ValueError("bad input in the pod")


@flow
def on_k8s(x: int) -> int:
    return in_a_pod(x)


@flow
def k8s_failing() -> None:
    pod_fails()
