"""The server's routes, one module per resource, each thin over the store.

Each module declares its routes at module level (``routes = Routes()``); ``include_routes``
adds them all to an app, in this order.
"""

from __future__ import annotations

from fastapi import FastAPI

from legato.server.routes import (
    audit,
    deployments,
    limits,
    notifications,
    pools,
    questions,
    queue,
    retention,
    runs,
    schedules,
    server,
    shares,
    slack,
    tokens,
    triggers,
    workers,
)

MODULES = (
    server,
    runs,
    questions,
    queue,
    workers,
    limits,
    deployments,
    pools,
    tokens,
    schedules,
    triggers,
    notifications,
    shares,
    slack,
    audit,
    retention,
)


def include_routes(app: FastAPI) -> None:
    """Add every module's routes to ``app`` (whose state holds the store and its bounds)."""
    for module in MODULES:
        module.routes.include(app)
