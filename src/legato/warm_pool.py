"""Warm child processes reused across a worker's task runs, as a prefork pool does.

A trivial task on a remote pool would otherwise pay a fresh process for every run. A warm
child (``python -m legato._warm``) runs one call at a time, in its own session; the worker's
threads hand it calls over a pipe. What stays from the fresh-process model: a task that
crashes its process (segfault, ``os._exit``) takes only that child down (the run is FAILED or
retried, the next call gets a new child); a cancelled run's child is killed with its whole
process group; heartbeats come from the worker's own process, which no task can block.
What a warm child does not give: a clean interpreter per run (module state lives on, as in
Celery), and stopping processes a task left running after it returned. Tasks with a
timeout, GPUs or ``isolation="process"`` get a fresh process instead (``executors``).
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from legato._warm import read_frame, write_frame
from legato.errors import Cancelled, ProcessCrashed
from legato.processes import kill_tree, session_options

_GONE = b""  # put on a child's replies when its process ends


class WarmChild:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] = subprocess.Popen(
            [sys.executable, "-m", "legato._warm"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=dict(os.environ),
            **session_options(),
        )
        self.replies: queue.Queue[bytes] = queue.Queue()
        self.runs = 0
        threading.Thread(target=self._read, name="legato-warm-replies", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            while True:
                frame = read_frame(self.proc.stdout)
                if frame is None:
                    break
                self.replies.put(frame)
        except (OSError, ValueError):
            pass
        self.replies.put(_GONE)

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        write_frame(self.proc.stdin, data)

    def kill(self) -> None:
        kill_tree(self.proc.pid, self.proc)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def exit_status(self) -> int | None:
        try:
            return self.proc.wait(5)
        except subprocess.TimeoutExpired:
            return None


class WarmPool:
    """At most ``size`` warm children, started on first need; calls beyond that wait for
    one to be free. A child is replaced after ``max_runs`` calls (bounded memory growth)."""

    def __init__(self, size: int, *, max_runs: int = 1000) -> None:
        self.size = size
        self.max_runs = max_runs
        self._lock = threading.Lock()
        self._free_slots = threading.Semaphore(size)
        self._idle: list[WarmChild] = []
        self._all: set[WarmChild] = set()
        self._closed = False

    def run(self, call: bytes, cancelled: threading.Event, decode: Callable[[bytes], Any]) -> Any:
        """Run a pickled call in a warm child; ``decode`` its reply. Raises Cancelled (the
        child is killed) or ProcessCrashed (the child died)."""
        while not self._free_slots.acquire(timeout=0.05):
            if cancelled.is_set():
                raise Cancelled()
        child: WarmChild | None = None
        try:
            child = self._take()
            child.send(call)
            while True:
                try:
                    reply = child.replies.get(timeout=0.05)
                    break
                except queue.Empty:
                    if cancelled.is_set():
                        self._discard(child)
                        child = None
                        raise Cancelled() from None
            if not reply:  # _GONE: a real reply is never empty
                status = child.exit_status()
                self._discard(child)
                child = None
                raise ProcessCrashed(
                    f"the task's process exited with status {status} without a result"
                )
            child.runs += 1
            return decode(reply)
        except (BrokenPipeError, OSError) as exc:
            if child is not None:
                self._discard(child)
                child = None
            raise ProcessCrashed(f"the task's process could not be reached: {exc}") from exc
        finally:
            if child is not None:
                self._give_back(child)
            self._free_slots.release()

    def _take(self) -> WarmChild:
        with self._lock:
            while self._idle:
                child = self._idle.pop()
                if child.proc.poll() is None:
                    return child
                self._all.discard(child)
        child = WarmChild()
        with self._lock:
            self._all.add(child)
        return child

    def _give_back(self, child: WarmChild) -> None:
        with self._lock:
            keep = not self._closed and child.runs < self.max_runs
            if keep:
                self._idle.append(child)
        if not keep:
            self._discard(child)

    def _discard(self, child: WarmChild) -> None:
        with self._lock:
            self._all.discard(child)
        child.kill()

    def close(self) -> None:
        """Stop every child (the worker is stopping)."""
        with self._lock:
            self._closed = True
            children = list(self._all)
            self._all.clear()
            self._idle.clear()
        for child in children:
            child.kill()
