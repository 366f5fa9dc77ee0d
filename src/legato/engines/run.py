"""Run the bridge of an engine-backed pool: ``legato worker start --pool NAME``."""

from __future__ import annotations

import logging
from typing import Any

from legato.models import Pool

log = logging.getLogger("legato.engines")


def run_bridge(
    rt: Any, pool: Pool, *, name: str | None, concurrency: int | None, grace: float
) -> None:
    """Serve ``pool`` through its engine until SIGTERM/SIGINT (then drain) or stop."""
    from legato.engines import make_backend
    from legato.worker import WorkerProcess

    backend = make_backend(pool, home=str(rt.settings.home), results_url=rt.results.url)
    try:
        capacity = backend.capacity()
        worker = WorkerProcess(
            rt.store,
            rt.results,
            pool=pool.name,
            capacity=capacity,
            name=name or None,
            concurrency=concurrency or backend.concurrency(),
            heartbeat=rt.settings.heartbeat_seconds,
            grace=grace,
            backend=backend,
        )
        log.info("bridge for %s pool %s: capacity %s", pool.type, pool.name, capacity)
        worker.run()
    finally:
        backend.close()
