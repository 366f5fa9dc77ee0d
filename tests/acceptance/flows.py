"""Flows the CLI tests run (loaded by path, as users do with `legato run FILE.py:FLOW`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from legato import artifact, ask, flow, get_logger, task

MARK = Path(os.environ.get("MARK_FILE", "/nonexistent/mark"))
GATE = Path(os.environ.get("GATE_DIR", "/nonexistent/gate"))


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


@task(timeout=120)  # a timeout: the task runs in a process of its own, which cancel kills
def gated_side_effect(wait: float) -> str:
    """Says it has started (GATE_DIR/started, holding its pid), waits at most ``wait`` seconds
    for the test to open the gate (GATE_DIR/go), then writes the mark."""
    started = GATE / "started"
    partial = started.with_suffix(".partial")
    partial.write_text(str(os.getpid()))
    partial.replace(started)  # the test never reads a half-written pid
    deadline = time.monotonic() + wait
    while not (GATE / "go").exists():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nobody opened the gate in {GATE} within {wait:g} s")
        time.sleep(0.02)
    MARK.write_text("written")  # must never happen once the run is cancelled
    return "done"


@flow
def cancellable(wait: float = 60.0) -> str:
    return gated_side_effect(wait)


@flow
def unserializable() -> object:
    return (i for i in range(3))  # a generator: neither JSON nor picklable


@task
def index_into(items: list[str]) -> str:
    raise IndexError(f"[bold]no item[/bold] [{len(items)}] in {items}")


@flow
def bracketed(items: list[str]) -> str:
    return index_into(items)


@flow
def bracketed_question(item: str) -> str:
    ok = ask(f"ship [/x] {item} [bold]now[/bold]?")
    return "shipped" if ok else "held"
