"""Pool definitions (process, slurm, dask, kubernetes)."""

from __future__ import annotations

from legato import audit as details
from legato.models import Pool
from legato.server.routes._common import Audit, Id, Routes, StoreDep, invalid
from legato.store import wire as w
from legato.store.operations import OPERATIONS

routes = Routes()


@routes.op(OPERATIONS["list_pools"])
def list_pools(
    store: StoreDep,
) -> list[Pool]:
    """Every defined pool (process, slurm, dask, kubernetes), by name."""
    return store.list_pools()


@routes.op(OPERATIONS["get_pool"])
def get_pool(store: StoreDep, name: Id) -> w.FoundPool:
    """A pool's definition (null if nobody defined it: served by process workers)."""
    return w.FoundPool(pool=store.get_pool(name))


@routes.op(OPERATIONS["put_pool"])
def put_pool(store: StoreDep, name: Id, body: w.PoolIn, audit: Audit) -> None:
    """Create or replace a pool definition (its name must match the path)."""
    if body.pool.name != name:
        raise invalid((("body", "pool", "name"), "must match the path"))
    store.put_pool(body.pool)
    audit("pool.put", name, details.pool(body.pool))


@routes.op(OPERATIONS["delete_pool"])
def delete_pool(store: StoreDep, name: Id, audit: Audit) -> w.Changed:
    """Remove a pool definition; ``changed`` is false if there was none."""
    changed = store.delete_pool(name)
    if changed:
        audit("pool.delete", name)
    return w.Changed(changed=changed)
