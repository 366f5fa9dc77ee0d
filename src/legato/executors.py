"""Where task bodies run: inline, in threads, in a fresh child process, or in a warm one.

A task with a ``timeout``, a GPU or ``isolation="process"`` runs in a fresh child process of
its own session, so a timeout or a cancellation kills the whole process tree (nothing it
started keeps running) and ``CUDA_VISIBLE_DEVICES`` can name exactly the GPUs it was given.
On a worker, other task runs go to warm children reused across runs (``warm_pool``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from legato._calls import pack
from legato.errors import Cancelled, NoWorkerForPool, ProcessCrashed, TaskTimeout
from legato.processes import kill_tree, session_options, start_mode
from legato.warm_pool import WarmPool


@dataclass
class LocalResources:
    """The machine's capacity, handed out to tasks that declare ``resources``."""

    capacity: dict[str, float]
    _used: dict[str, float] = field(default_factory=dict)
    _free_gpus: list[int] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        # GPU ids as this process sees them: CUDA_VISIBLE_DEVICES=2,3 hands out 2 and 3.
        visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")]
        ids = [int(d) for d in visible if d.isdigit()]
        count = int(self.capacity.get("gpu", 0))
        self._free_gpus = (ids + list(range(max(ids, default=-1) + 1, 1 << 16)))[:count]

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


class _Child:
    """A task's fresh child: forked by the fork server, or spawned."""

    def __init__(self, pid: int, proc: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self.proc = proc
        self.status: int | None = None
        self.exited = threading.Event()


class ForkServer:
    """Talks to ``python -m legato._zygote``: one request per task run, answered with the
    forked child's pid, and later its exit status. Restarted if it dies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._next = 0
        self._waiting: dict[int, list[Any]] = {}
        self._children: dict[int, _Child] = {}

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            proc = subprocess.Popen(
                [sys.executable, "-m", "legato._zygote"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=dict(os.environ),
            )
            self._proc = proc
            threading.Thread(target=self._read, args=(proc,), daemon=True).start()
        return self._proc

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        import json

        assert proc.stdout is not None
        for line in proc.stdout:
            msg = json.loads(line)
            with self._lock:
                if "pid" in msg:
                    child = self._children[msg["pid"]] = _Child(msg["pid"])
                    slot = self._waiting.pop(msg["id"], None)
                    if slot is not None:
                        slot[1] = child
                        slot[0].set()
                else:
                    done = self._children.pop(msg["exit"], None)
                    if done is not None:
                        done.status = msg["status"]
                        done.exited.set()
        with self._lock:  # the fork server died: nobody will report these children
            for child in self._children.values():
                child.exited.set()
            self._children.clear()
            for slot in self._waiting.values():
                slot[0].set()
            self._waiting.clear()

    def start(self, payload_path: str, out_path: str, env: dict[str, str]) -> _Child:
        import json

        event = threading.Event()
        with self._lock:
            proc = self._ensure()
            self._next += 1
            slot: list[Any] = [event, None]
            self._waiting[self._next] = slot
            request = {"id": self._next, "payload": payload_path, "out": out_path, "env": env}
            assert proc.stdin is not None
            proc.stdin.write((json.dumps(request) + "\n").encode())
            proc.stdin.flush()
        if not event.wait(30) or slot[1] is None:
            raise ProcessCrashed("the fork server did not start the task's process")
        child: _Child = slot[1]
        return child


_fork_server: ForkServer | None = None
_fork_lock = threading.Lock()


def fork_server() -> ForkServer:
    global _fork_server
    with _fork_lock:
        if _fork_server is None:
            _fork_server = ForkServer()
        return _fork_server


def run_in_child(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    context: dict[str, Any],
    timeout: float | None,
    gpus: list[int] | None,
    cancelled: threading.Event,
) -> ChildResult:
    """Run ``fn(*args, **kwargs)`` in a fresh child process of its own session (forked by the
    fork server, or spawned: ``processes.start_mode``); kill its whole process group on
    timeout or cancellation. Raises TaskTimeout,
    Cancelled or ProcessCrashed."""
    import cloudpickle

    env = dict(os.environ)
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    with tempfile.TemporaryDirectory(prefix="legato-child-") as tmp:
        payload = pack(fn, args, kwargs, context)
        out_path = os.path.join(tmp, "result.pkl")
        if start_mode() == "fork":
            payload_path = os.path.join(tmp, "call.pkl")
            with open(payload_path, "wb") as fh:
                fh.write(payload)
            child = fork_server().start(payload_path, out_path, env)
        else:
            child = _spawn(payload, out_path, env)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not child.exited.wait(0.05):
                if cancelled.is_set():
                    raise Cancelled()
                if deadline is not None and time.monotonic() >= deadline:
                    raise TaskTimeout(
                        f"the task ran past its timeout of {timeout:g} s and was stopped"
                    )
        except BaseException:
            kill_tree(child.pid, child.proc)  # timeout, cancel, Ctrl-C: nothing it started survives
            child.exited.wait(10)
            raise
        kill_tree(child.pid, child.proc)  # anything the task left behind in its group
        if not os.path.exists(out_path):
            raise ProcessCrashed(
                f"the task's process exited with status {child.status} without a result"
            )
        with open(out_path, "rb") as fh:
            value, error, logs, artifacts = cloudpickle.load(fh)
        return ChildResult(value, error, logs, artifacts)


def _spawn(payload: bytes, out_path: str, env: dict[str, str]) -> _Child:
    """The portable model: a new interpreter per task run (``legato._child``), in its own
    session or process group, given its call on stdin."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "legato._child", out_path],
        stdin=subprocess.PIPE,
        env=env,
        **session_options(),
    )
    child = _Child(proc.pid, proc)
    assert proc.stdin is not None
    try:
        proc.stdin.write(payload)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # it died at once: its exit status tells

    def reap() -> None:
        child.status = proc.wait()
        child.exited.set()

    threading.Thread(target=reap, name="legato-child-reaper", daemon=True).start()
    return child


def run_warm(
    pool: WarmPool,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    context: dict[str, Any],
    cancelled: threading.Event,
) -> ChildResult:
    """Run ``fn(*args, **kwargs)`` in one of ``pool``'s warm children. Raises Cancelled or
    ProcessCrashed."""
    import cloudpickle

    call = pack(fn, args, kwargs, context)
    result: ChildResult = pool.run(
        call, cancelled, lambda reply: ChildResult(*cloudpickle.loads(reply))
    )
    return result
