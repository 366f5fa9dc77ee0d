"""Flows the CLI tests run (loaded by path, as users do with `legato run FILE.py:FLOW`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from legato import artifact, ask, flow, get_logger, task

MARK = Path(os.environ.get("MARK_FILE", "/nonexistent/mark"))


@task(retries=2, retry_delay=0)
def double(x: int) -> int:
    return 2 * x


@task
def explode(x: int) -> int:
    raise ValueError(f"cannot handle {x}")


@flow
def arithmetic(n: int, scale: float = 1.0, label: str = "run") -> dict[str, object]:
    get_logger().info("summing %d items for %s", n, label)
    values = [f.result() for f in double.map(range(n))]
    artifact.table([{"i": i, "v": v} for i, v in enumerate(values)], title="values")
    return {"total": sum(values) * scale, "label": label}


@flow
def failing(x: int = 3) -> int:
    return explode(x)


@flow
def approval(item: str) -> str:
    ok = ask(f"ship {item}?")
    return "shipped" if ok else "held"


@task(timeout=60)
def slow_side_effect(seconds: float) -> str:
    time.sleep(seconds)
    MARK.write_text("written")  # must never happen once the run is cancelled
    return "done"


@flow
def cancellable(seconds: float = 4.0) -> str:
    return slow_side_effect(seconds)


@flow
def unserializable() -> object:
    return (i for i in range(3))  # a generator: neither JSON nor picklable
