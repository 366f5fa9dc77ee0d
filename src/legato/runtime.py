"""The process-wide pieces a flow run needs: settings, store, recorder, result storage, local
executors. Created on first use and shared by every flow run in the process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from legato import logs
from legato.executors import LocalResources, thread_pool
from legato.models import LogRecord, Question, State, now
from legato.recorder import Recorder
from legato.remote import RemoteWaiter
from legato.results import ResultStorage
from legato.settings import Settings, get_settings
from legato.store import InsertLogs, Store, open_store

if TYPE_CHECKING:
    from legato.engine import FlowRunEngine


class Runtime:
    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        # LEGATO_API_URL set: an HttpStore on that server; else the database (embedded).
        self.store = store or open_store(
            settings.api_url or settings.db_url, token=settings.api_token
        )
        self.recorder = Recorder(self.store)
        self.results = ResultStorage(
            settings.results_url,
            inline_max_bytes=settings.inline_result_max_bytes,
            allow_pickle=settings.allow_pickle,
        )
        self.resources = LocalResources(settings.local_resources())
        remote = settings.remote_pools
        # Tasks naming a pool go to that pool's workers in server mode; embedded, local
        # executors serve every pool.
        self.remote_pools = bool(getattr(settings, "api_url", None)) if remote is None else remote
        self.remote = RemoteWaiter(self.store)
        self._lock = threading.Lock()
        self._task_pool: ThreadPoolExecutor | None = None
        self._flow_pool: ThreadPoolExecutor | None = None
        self._active: dict[str, FlowRunEngine] = {}
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        # Called with (question, channels) when ask() records a question (Slack and the like).
        self.question_notifiers: list[Callable[[Question, Any], None]] = []
        logs.install(settings.log_level)
        if settings.capture_output:
            logs.capture_output()

    @property
    def task_pool(self) -> ThreadPoolExecutor:
        if self._task_pool is None:
            with self._lock:
                if self._task_pool is None:
                    self._task_pool = thread_pool(self.settings.max_workers or 32)
        return self._task_pool

    @property
    def flow_pool(self) -> ThreadPoolExecutor:
        # Child flows get their own threads: a child waiting on its tasks must never hold a
        # thread those tasks need.
        if self._flow_pool is None:
            with self._lock:
                if self._flow_pool is None:
                    self._flow_pool = ThreadPoolExecutor(
                        max_workers=max(8, self.settings.max_workers or 32),
                        thread_name_prefix="legato-flow",
                    )
        return self._flow_pool

    # -- cancellation requested from outside (`legato runs cancel`) -----------------------

    def watch(self, engine: FlowRunEngine) -> None:
        with self._lock:
            self._active[engine.run.id] = engine
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._watch_loop, name="legato-cancel-watch", daemon=True
                )
                self._watcher.start()

    def unwatch(self, engine: FlowRunEngine) -> None:
        with self._lock:
            self._active.pop(engine.run.id, None)

    def is_running(self, run_id: str) -> bool:
        """True if this process is running that top-level flow run now."""
        with self._lock:
            return run_id in self._active

    def notify_question(self, question: Question, channels: Any) -> None:
        """Tell people a question waits: in the run's log, and through each notifier."""
        self.recorder.record(
            InsertLogs(
                [
                    LogRecord(
                        question.flow_run_id,
                        None,
                        now(),
                        logging.WARNING,
                        "legato.ask",
                        f"waiting for an answer to {question.prompt!r} (question {question.key}): "
                        f"legato answer {question.flow_run_id} VALUE",
                    )
                ]
            )
        )
        for notifier in self.question_notifiers:
            try:
                notifier(question, channels)
            except Exception as exc:  # a failing channel never fails the run
                logging.getLogger("legato.notify").warning("question notifier failed: %s", exc)

    def _watch_loop(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                engines = list(self._active.values())
            for engine in engines:
                try:
                    state = self.store.get_flow_run(engine.run.id).state
                except Exception:
                    continue
                if state is State.CANCELLED:
                    engine.cancel()

    def close(self) -> None:
        self._stop.set()
        self.remote.close()
        self.recorder.close()
        for pool in (self._task_pool, self._flow_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        with _runtime_lock:
            if _runtime is None:
                _runtime = Runtime(get_settings())
    return _runtime


def set_runtime(runtime: Runtime | None) -> Runtime | None:
    """Replace the process's runtime (tests, the CLI); returns the previous one."""
    global _runtime
    with _runtime_lock:
        previous, _runtime = _runtime, runtime
    return previous
