"""Warm child processes (``warm_pool``): reused across calls, yet a crash, a cancel or the
worker's death takes down only what it should."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from legato.errors import Cancelled, ProcessCrashed
from legato.executors import ChildResult, run_warm
from legato.warm_pool import WarmPool

CONTEXT = {
    "flow_run_id": "f",
    "task_run_id": "t",
    "flow_name": None,
    "task_name": "t",
    "log_level": "INFO",
    "capture_output": False,
}


@pytest.fixture
def pool() -> Iterator[WarmPool]:
    pool = WarmPool(2)
    yield pool
    pool.close()


def call(
    pool: WarmPool,
    fn: Callable[..., Any],
    *args: Any,
    cancelled: threading.Event | None = None,
) -> ChildResult:
    return run_warm(
        pool, fn, args, {}, context=dict(CONTEXT), cancelled=cancelled or threading.Event()
    )


def pid() -> int:
    return os.getpid()


def logs_and_prints(x: int) -> int:
    from legato import get_logger

    print("printed by the task: it must not reach the protocol")
    get_logger().info("logged %d", x)
    return x * 2


def dies() -> None:
    os._exit(3)


def fails() -> None:
    raise LookupError("from a warm child")


def waits_for(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.01)


def alive(p: int) -> bool:
    try:
        os.kill(p, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{p}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_calls_reuse_a_warm_process_and_bring_back_values_logs_and_errors(
    pool: WarmPool,
) -> None:
    first = call(pool, pid).value
    assert first != os.getpid()
    assert call(pool, pid).value == first  # the same process: no fork or start per call
    out = call(pool, logs_and_prints, 21)
    assert out.value == 42 and out.error is None
    assert [r.message for r in out.logs] == ["logged 21"]
    failed = call(pool, fails)
    assert isinstance(failed.error, LookupError) and str(failed.error) == "from a warm child"
    assert call(pool, pid).value == first  # an exception does not cost the process


def test_a_crashing_call_takes_only_its_process_down(pool: WarmPool) -> None:
    before = call(pool, pid).value
    with pytest.raises(ProcessCrashed, match="status 3"):
        call(pool, dies)
    after = call(pool, pid).value
    assert after != before  # the next call gets a fresh warm process
    assert not alive(before)


def test_a_cancelled_call_kills_its_process(pool: WarmPool, tmp_path: Path) -> None:
    busy = call(pool, pid).value
    cancelled = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            call(pool, waits_for, str(tmp_path / "never"), cancelled=cancelled)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    # the call is running when its process shows up busy: cancel then
    assert wait_until(lambda: len(pool._all) >= 1 and not pool._idle)
    cancelled.set()
    t.join(30)
    assert len(errors) == 1 and isinstance(errors[0], Cancelled)
    assert wait_until(lambda: not alive(busy))


def test_more_calls_than_processes_wait_their_turn(pool: WarmPool) -> None:
    results: list[int] = []
    lock = threading.Lock()

    def run() -> None:
        value = call(pool, pid).value
        with lock:
            results.append(value)

    threads = [threading.Thread(target=run) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 12
    assert len(set(results)) <= 2  # never more processes than the pool's size


def test_a_warm_process_dies_with_its_worker_even_in_the_middle_of_a_call(
    tmp_path: Path,
) -> None:
    """kill -9 on the worker: its warm child must not run on (it would race the attempt that
    replaces it). The child notices its request pipe close and exits at once."""
    started, pid_file = tmp_path / "started", tmp_path / "pid"
    script = textwrap.dedent(
        f"""
        import os, threading, time
        from legato.executors import ChildResult, run_warm
        from legato.warm_pool import WarmPool

        def forever(started, pid_file):
            open(pid_file, "w").write(str(os.getpid()))
            open(started, "w").close()
            while True:
                time.sleep(0.05)

        pool = WarmPool(1)
        ctx = {CONTEXT!r}
        run_warm(pool, forever, ({str(started)!r}, {str(pid_file)!r}), {{}}, context=ctx,
                 cancelled=threading.Event())
        """
    )
    worker = subprocess.Popen([sys.executable, "-c", script])
    try:
        assert wait_until(started.exists), "the call never started"
        child = int(pid_file.read_text())
        assert alive(child)
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
        assert wait_until(lambda: not alive(child)), "the warm child outlived its worker"
    finally:
        if worker.poll() is None:
            worker.kill()
