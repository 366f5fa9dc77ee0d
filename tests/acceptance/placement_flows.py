"""Flows for the placement tests: tasks on a cpu pool and a gpu pool, in one flow."""

from __future__ import annotations

import os
import time

from legato import flow, task


@task(pool="gpu", resources={"gpu": 1})
def extract(i: int) -> dict[str, object]:
    time.sleep(0.3)
    return {"i": i, "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid()}


@task(pool="cpu")
def stats(extracted: dict[str, object]) -> dict[str, object]:
    time.sleep(0.05)
    return {"i": extracted["i"], "cpu_pid": os.getpid()}


@task(pool="cpu", retries=2, retry_delay=0.1)
def flaky(marker: str) -> str:
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("the first attempt fails")
    return "ok"


@task
def local_step(values: list[dict[str, object]]) -> int:
    return len(values)


@flow
def placed(n: int, marker: str) -> dict[str, object]:
    extracted = extract.map(range(n))
    summaries = [stats.submit(e) for e in extracted]
    values = [s.result() for s in summaries]
    return {
        "count": local_step(values),
        "flaky": flaky(marker),
        "gpu": [e.result() for e in extracted],
    }


@task(pool="cpu")
def prepare(item: str) -> str:
    return item.upper()


@flow(pool="flows")
def reviewed(item: str) -> dict[str, object]:
    from legato import ask

    prepared = prepare(item)
    ok = ask(f"publish {prepared}?")
    return {"item": prepared, "ok": ok}
