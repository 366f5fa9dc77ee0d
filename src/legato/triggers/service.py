"""The background threads of the server and of ``legato serve``: the scheduler and the file
watcher in one thread, the notifier in another (a slow or failing channel never delays a
scheduled run). Every pass is guarded: an error is logged and the next pass runs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from legato.notify.sender import Notifier
from legato.settings import Settings
from legato.store import Store
from legato.triggers.files import FileWatcher
from legato.triggers.scheduler import Scheduler
from legato.triggers.timeouts import expire_questions
from legato.triggers.webhooks import WINDOW_SECONDS

log = logging.getLogger("legato.triggers")


class TriggerService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        now: Callable[[], float] = time.time,
        tick: float | None = None,
        notify: bool = True,
    ) -> None:
        self.store = store
        self.tick_seconds = tick if tick is not None else settings.scheduler_tick
        self.scheduler = Scheduler(store, now=now, grace=max(30.0, 2 * self.tick_seconds))
        self.files = FileWatcher(store, now=now)
        self.notifier = Notifier(store, settings, now=now) if notify else None
        self.now = now
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_prune = 0.0

    def tick(self) -> int:
        """One pass of the scheduler and the file watcher; runs started."""
        started = 0
        for part in (self.scheduler.tick, self.files.tick):
            try:
                started += part()
            except Exception as exc:
                log.error("trigger pass failed: %s", exc)
        try:
            expire_questions(self.store, self.now())
        except Exception as exc:
            log.error("question timeouts pass failed: %s", exc)
        now = self.now()
        if now - self._last_prune > 3600:
            self._last_prune = now
            try:
                self.store.forget_webhook_deliveries(now - 2 * WINDOW_SECONDS)
            except Exception as exc:
                log.warning("could not prune webhook deliveries: %s", exc)
        return started

    def _loop(self, step: Callable[[], Any]) -> None:
        while not self._stop.is_set():
            try:
                step()
            except Exception as exc:
                log.error("background pass failed: %s", exc)
            self._stop.wait(self.tick_seconds)

    def start(self) -> TriggerService:
        steps: list[tuple[str, Callable[[], Any]]] = [("legato-scheduler", self.tick)]
        if self.notifier is not None:
            steps.append(("legato-notifier", self.notifier.tick))
        for name, step in steps:
            thread = threading.Thread(target=self._loop, args=(step,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
