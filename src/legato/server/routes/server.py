"""The server's own routes: /health, /metrics, and the statistics behind /metrics."""

from __future__ import annotations

from fastapi.responses import PlainTextResponse

from legato.models import Role
from legato.server import metrics
from legato.server.routes._common import Limit, Routes, StoreDep
from legato.store.operations import OPERATIONS

routes = Routes()


@routes.add("GET", "/health", None, bounded=False, tags=["server"])
def health(
    store: StoreDep,
) -> dict[str, str]:
    """The server is up and its store answers (503 otherwise); no token needed."""
    store.list_flow_runs(limit=1)
    return {"status": "ok"}


@routes.add("GET", "/metrics", Role.VIEWER, tags=["server"], response_class=PlainTextResponse)
def get_metrics(
    store: StoreDep,
) -> PlainTextResponse:
    """Prometheus metrics: runs by state, queue depth per pool, workers, task durations."""
    return PlainTextResponse(metrics.render(store), media_type=metrics.CONTENT_TYPE)


@routes.op(OPERATIONS["count_runs"])
def count_runs(
    store: StoreDep,
) -> dict[str, dict[str, int]]:
    """Flow runs and task runs per state."""
    return store.count_runs()


@routes.op(OPERATIONS["recent_task_durations"])
def recent_task_durations(store: StoreDep, limit: Limit = 2000) -> list[tuple[str, str, float]]:
    """(task, state, seconds) of the task runs that ended among the newest ``limit``."""
    return store.recent_task_durations(limit)
