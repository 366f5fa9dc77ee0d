"""Wake-ups without sleep loops: "work was queued in pool P", "task run T finished".

A ``Notifier`` keeps a version number per key; a waiter remembers the version it saw, looks
for work, and if there is none waits for the version to move, so a wake-up that lands between
the look and the wait is never lost. Threads wait on a condition; coroutines (the server's
long-polls) on a future that a move resolves through their event loop, so a waiting client
holds no thread. On PostgreSQL the keys are moved by LISTEN/NOTIFY from
any process; on SQLite, by commits in this process (other processes fall back to a short poll).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("legato.store")

QUEUE_CHANNEL = "legato_queue"  # payload: pool names
DONE_CHANNEL = "legato_done"  # payload: task run ids
# One NOTIFY carries many keys as a JSON list (a pool's name may hold any character): a
# worker finishing 50 runs in one transaction sends one notification, not 50. PostgreSQL caps
# a payload below 8,000 bytes.
PAYLOAD_BYTES = 7000


def pack(keys: Iterable[str]) -> list[str]:
    """``keys`` as few JSON-list payloads as fit PostgreSQL's limit."""
    payloads: list[str] = []
    current: list[str] = []  # each key JSON-encoded once
    size = 2  # the brackets
    for key in keys:
        encoded = json.dumps(key)
        cost = len(encoded.encode()) + 1  # and its comma
        if current and size + cost > PAYLOAD_BYTES:
            payloads.append("[" + ",".join(current) + "]")
            current, size = [], 2
        current.append(encoded)
        size += cost
    if current:
        payloads.append("[" + ",".join(current) + "]")
    return payloads


def unpack(payload: str) -> list[str] | None:
    """The keys of one payload; None for a payload that is not a list of keys."""
    try:
        keys = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        return None
    return keys


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Notifier:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._versions: dict[str, int] = {}
        self._epoch = 0  # moves on every notification: "something happened"
        # Coroutines waiting, by the keys they watch: a move wakes only its key's waiters.
        self._futures: dict[str, set[asyncio.Future[None]]] = {}

    def version(self, key: str) -> int:
        with self._cond:
            return self._versions.get(key, 0)

    def versions(self, keys: Iterable[str]) -> dict[str, int]:
        """Current versions of ``keys`` (and of "*", which wakes every waiter)."""
        with self._cond:
            seen = {k: self._versions.get(k, 0) for k in keys}
            seen["*"] = self._versions.get("*", 0)
            return seen

    def notify(self, key: str) -> None:
        self.notify_many((key,))

    def notify_many(self, keys: Iterable[str]) -> None:
        """Move every key once, under one lock; wake their waiters."""
        futures: set[asyncio.Future[None]] = set()
        with self._cond:
            for key in keys:
                self._versions[key] = self._versions.get(key, 0) + 1
                self._epoch += 1
                futures.update(self._futures.pop(key, ()))
            self._cond.notify_all()
        for future in futures:
            # RuntimeError: its loop is closed, so nobody waits on it any more.
            with contextlib.suppress(RuntimeError):
                future.get_loop().call_soon_threadsafe(_resolve, future)

    def wait(self, seen: dict[str, int], timeout: float) -> bool:
        """Wait until any key's version differs from ``seen``; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if any(self._versions.get(k, 0) != v for k, v in seen.items()):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)

    async def wait_async(self, seen: dict[str, int], timeout: float) -> bool:
        """``wait`` for a coroutine: the same answer, holding no thread while it waits."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._cond:
            if any(self._versions.get(k, 0) != v for k, v in seen.items()):
                return True
            # Registered under the lock that guards the versions: a move after the check
            # above finds this future and resolves it.
            for key in seen:
                self._futures.setdefault(key, set()).add(future)
        try:
            async with asyncio.timeout(timeout):
                await future
            return True
        except TimeoutError:
            return False
        finally:
            with self._cond:
                for key in seen:
                    waiting = self._futures.get(key)
                    if waiting is not None:
                        waiting.discard(future)
                        if not waiting:
                            del self._futures[key]


class PostgresListener:
    """A thread holding one LISTEN connection, turning notifications into Notifier moves."""

    def __init__(self, conninfo: str, notifier: Notifier) -> None:
        self.conninfo = conninfo
        self.notifier = notifier
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="legato-listen", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        import psycopg

        backoff = 0.2
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {QUEUE_CHANNEL}")
                    conn.execute(f"LISTEN {DONE_CHANNEL}")
                    self._ready.set()
                    backoff = 0.2
                    # After a reconnect we may have missed notifications: wake everyone once.
                    self.notifier.notify("*")
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._deliver(note)
            except Exception as exc:  # the server restarted: reconnect with backoff
                if self._stop.is_set():
                    break
                log.warning("LISTEN connection lost (%s); reconnecting", exc)
                self._ready.set()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _deliver(self, note: Any) -> None:
        keys = unpack(note.payload)
        if keys is None:  # an older process's plain payload: wake everyone, lose nothing
            self.notifier.notify("*")
            return
        channel = "queue:" if note.channel == QUEUE_CHANNEL else "done:"
        self.notifier.notify_many(channel + key for key in keys)

    def close(self) -> None:
        self._stop.set()
