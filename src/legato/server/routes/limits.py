"""Concurrency limits (admin sets them)."""

from __future__ import annotations

from legato.server.routes._common import Audit, Id, Routes, StoreDep
from legato.store import wire as w
from legato.store.operations import OPERATIONS

routes = Routes()


@routes.op(OPERATIONS["list_limits"])
def list_limits(
    store: StoreDep,
) -> dict[str, int]:
    """Every concurrency limit (``tag:X``, ``pool:X``, ``flow:X`` -> task runs at once)."""
    return store.list_limits()


@routes.op(OPERATIONS["set_limit"])
def set_limit(store: StoreDep, name: Id, body: w.LimitIn, audit: Audit) -> None:
    """Set a concurrency limit: at most ``limit`` task runs RUNNING at once."""
    store.set_limit(name, body.limit)
    audit("limit.set", name, {"limit": body.limit})


@routes.op(OPERATIONS["delete_limit"])
def delete_limit(store: StoreDep, name: Id, audit: Audit) -> w.Changed:
    """Remove a limit; ``changed`` is false if there was none."""
    changed = store.delete_limit(name)
    if changed:
        audit("limit.delete", name)
    return w.Changed(changed=changed)
