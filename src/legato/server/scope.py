"""What a token may touch beyond its role: the pools it is limited to, and the workers, and so
the leases, it registered.

A worker is bound to the token that registered it (``workers.token_id``): only that token
heartbeats it, changes its state, claims in its name and finishes or writes the runs it
holds. Claims and claimed runs name a worker by its name, so a name belongs to one token: a
second token registering a name already taken is refused. Admin tokens are not limited.
Refusals are HTTP 403 (409 for a taken name) naming the token and what it lacks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Protocol

from fastapi import HTTPException

from legato.models import ApiToken, Role

_CACHE_MAX = 65536


class LeaseLookup(Protocol):
    """The server's SQL store answers these (no HTTP route serves them)."""

    def worker_owner(self, worker_id: str) -> tuple[str | None, str] | None: ...

    def worker_name_owners(self, name: str) -> set[str | None]: ...

    def lease_holders(
        self, task_run_ids: Sequence[str], flow_run_ids: Sequence[str] = ()
    ) -> dict[str, str]: ...


def _forbidden(token: ApiToken, what: str) -> HTTPException:
    return HTTPException(403, detail=f"token {token.name!r} may not {what}")


def check_pool(token: ApiToken, pool: str, action: str = "work for") -> None:
    """403 unless ``pool`` is within the token's pools."""
    if not token.may_use_pool(pool):
        allowed = ", ".join(token.pools or [])
        raise _forbidden(token, f"{action} pool {pool!r} (it is limited to: {allowed})")


class TokenScope:
    """Checks one request's token against worker ownership. Owners are remembered: a
    worker's token never changes, and a taken name never changes hands."""

    def __init__(self, store: LeaseLookup) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._by_id: dict[str, tuple[str | None, str]] = {}
        self._by_name: dict[str, str] = {}

    def _remember(self, cache: dict[str, object], key: str, value: object) -> None:
        with self._lock:
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[key] = value

    def _owner_of_id(self, worker_id: str) -> tuple[str | None, str] | None:
        hit = self._by_id.get(worker_id)
        if hit is None:
            hit = self.store.worker_owner(worker_id)
            if hit is not None:
                self._remember(self._by_id, worker_id, hit)  # type: ignore[arg-type]
        return hit

    def owner_of_name(self, name: str) -> str | None:
        """The token that registered workers named ``name`` (None: none did)."""
        hit = self._by_name.get(name)
        if hit is None:
            owners = self.store.worker_name_owners(name) - {None}
            hit = next(iter(owners)) if len(owners) == 1 else None
            if hit is not None:
                self._remember(self._by_name, name, hit)  # type: ignore[arg-type]
        return hit

    def check_new_worker(self, token: ApiToken, name: str, pool: str) -> None:
        """Before registering: the pool is the token's, the name is not another token's."""
        check_pool(token, pool, "serve")
        owners = self.store.worker_name_owners(name) - {None}
        if owners - {token.id}:
            raise HTTPException(
                409, detail=f"worker name {name!r} is taken by another token's worker"
            )

    def check_worker(self, token: ApiToken, worker_id: str) -> None:
        """403 unless ``token`` registered worker ``worker_id`` (and may still use its pool)."""
        if token.role is Role.ADMIN:
            return
        found = self._owner_of_id(worker_id)
        if found is None or found[0] != token.id:
            raise _forbidden(token, f"act for worker {worker_id!r}: another token registered it")
        check_pool(token, found[1])

    def check_worker_name(self, token: ApiToken, name: str) -> None:
        """403 unless ``token`` registered the worker named ``name``."""
        if token.role is not Role.ADMIN and self.owner_of_name(name) != token.id:
            raise _forbidden(token, f"claim as worker {name!r}: register it with this token")

    def check_holds(
        self, token: ApiToken, task_run_ids: Iterable[str], flow_run_ids: Iterable[str] = ()
    ) -> None:
        """403 if any of these runs is claimed by a worker this token did not register: only
        the lease holder writes a claimed run."""
        if token.role is Role.ADMIN:
            return
        tasks, flows = list(dict.fromkeys(task_run_ids)), list(dict.fromkeys(flow_run_ids))
        if not tasks and not flows:
            return
        for run_id, worker in self.store.lease_holders(tasks, flows).items():
            if self.owner_of_name(worker) != token.id:
                raise _forbidden(token, f"write run {run_id}: worker {worker!r} holds its lease")
