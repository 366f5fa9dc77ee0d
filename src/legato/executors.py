"""Where task bodies run in embedded mode: inline, in threads, or in a child process.

A task with a ``timeout`` or a GPU runs in a child process of its own session, so a timeout or
a cancellation kills the whole process tree (nothing it started keeps running) and
``CUDA_VISIBLE_DEVICES`` can name exactly the GPUs it was given.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from legato.errors import Cancelled, LegatoError, NoWorkerForPool, TaskTimeout


class ProcessCrashed(LegatoError):
    """The task's child process died without returning a result."""


@dataclass
class LocalResources:
    """The machine's capacity, handed out to tasks that declare ``resources``."""

    capacity: dict[str, float]
    _used: dict[str, float] = field(default_factory=dict)
    _free_gpus: list[int] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self._free_gpus = list(range(int(self.capacity.get("gpu", 0))))

    def check(self, task_name: str, pool: str | None, needs: dict[str, float]) -> None:
        for name, amount in needs.items():
            have = self.capacity.get(name, 0.0)
            if amount > have:
                raise NoWorkerForPool(
                    f"task {task_name!r} needs {name}={amount:g} but this machine has "
                    f"{name}={have:g} (pool {pool or 'local'}). Set LEGATO_RESOURCES (e.g. "
                    f"LEGATO_RESOURCES={name}={amount:g}) to override detection, or run it on a "
                    "worker with that capacity."
                )

    def acquire(self, needs: dict[str, float], cancelled: threading.Event) -> list[int]:
        """Block until ``needs`` fit; return the GPU ids given out."""
        if not needs:
            return []
        with self._cond:
            while not self._fits(needs):
                if cancelled.is_set():
                    raise Cancelled()
                self._cond.wait(0.5)
            for name, amount in needs.items():
                self._used[name] = self._used.get(name, 0.0) + amount
            n = int(needs.get("gpu", 0))
            gpus, self._free_gpus = self._free_gpus[:n], self._free_gpus[n:]
            return gpus

    def release(self, needs: dict[str, float], gpus: list[int]) -> None:
        if not needs:
            return
        with self._cond:
            for name, amount in needs.items():
                self._used[name] = self._used.get(name, 0.0) - amount
            self._free_gpus.extend(gpus)
            self._free_gpus.sort()
            self._cond.notify_all()

    def _fits(self, needs: dict[str, float]) -> bool:
        return all(
            self._used.get(k, 0.0) + v <= self.capacity.get(k, 0.0) + 1e-9 for k, v in needs.items()
        )


def thread_pool(max_workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="legato-task")


@dataclass
class ChildResult:
    value: Any
    error: BaseException | None
    logs: list[Any]
    artifacts: list[Any]


def run_in_child(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    context: dict[str, Any],
    timeout: float | None,
    gpus: list[int] | None,
    cancelled: threading.Event,
    on_start: Callable[[int], None] | None = None,
) -> ChildResult:
    """Run ``fn(*args, **kwargs)`` in a child process; kill its whole process group on timeout
    or cancellation. Raises TaskTimeout, Cancelled or ProcessCrashed."""
    import cloudpickle

    env = dict(os.environ)
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    with tempfile.TemporaryDirectory(prefix="legato-child-") as tmp:
        out_path = os.path.join(tmp, "result.pkl")
        payload = cloudpickle.dumps((list(sys.path), fn, args, kwargs, context))
        proc = subprocess.Popen(
            [sys.executable, "-m", "legato._child", out_path],
            stdin=subprocess.PIPE,
            start_new_session=True,  # its own process group: we kill everything it starts
            env=env,
        )
        if on_start is not None:
            on_start(proc.pid)
        try:
            assert proc.stdin is not None
            proc.stdin.write(payload)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                try:
                    proc.wait(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    if cancelled.is_set():
                        raise Cancelled() from None
                    if deadline is not None and time.monotonic() >= deadline:
                        raise TaskTimeout(
                            f"the task ran past its timeout of {timeout:g} s and was stopped"
                        ) from None
        except BaseException:
            _kill_group(proc)  # timeout, cancel, Ctrl-C: nothing the task started survives
            raise
        _kill_group(proc)  # reap anything the task left behind in its group
        if not os.path.exists(out_path):
            raise ProcessCrashed(
                f"the task's process exited with code {proc.returncode} without a result"
            )
        with open(out_path, "rb") as fh:
            value, error, logs, artifacts = cloudpickle.load(fh)
        return ChildResult(value, error, logs, artifacts)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
