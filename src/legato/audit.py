"""The audit log's one way in: who did what, recorded by whoever carries the action out.

The server records what its routes, dashboard forms and Slack app do, naming the caller's
token (``Actor.of_token``); the CLI records what it does on the database itself (embedded
mode, no LEGATO_API_URL) as ``local:USER`` (``record_local``). Over HTTP the CLI records
nothing: the server does, so a client can neither forge nor skip a row.

The details of an action are built here too (``deployment``, ``trigger``, ``rule``...), so the
server and the CLI describe the same action the same way. A detail is small and never holds
a secret: no token secret, no webhook secret, no webhook URL beyond its host.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from legato.models import (
    ApiToken,
    AuditEvent,
    Deployment,
    NotifyRule,
    Pool,
    Schedule,
    State,
    Trigger,
)
from legato.outbound import mask_channel
from legato.store import AdminStore

LOCAL_ROLE = "local"  # the CLI on the database file: whoever can open it can do anything
_MAX_TEXT = 200
_MAX_ITEMS = 20


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a token's name and role, ``local:USER``, or ``slack:NAME``."""

    name: str
    role: str

    @classmethod
    def of_token(cls, token: ApiToken) -> Actor:
        return cls(token.name, token.role.value)

    def record(
        self, store: AdminStore, action: str, target: str, detail: dict[str, Any] | None = None
    ) -> None:
        """Add one event, after the action succeeded."""
        store.record_audit(
            AuditEvent(
                actor=self.name,
                role=self.role,
                action=action,
                target=str(target),
                detail=bounded(detail or {}),
                at=time.time(),
            )
        )


def local_actor() -> Actor:
    """The person running the CLI on the database itself."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment (some containers)
        user = "unknown"
    return Actor(f"local:{user}", LOCAL_ROLE)


def record_local(
    store: AdminStore, action: str, target: str, detail: dict[str, Any] | None = None
) -> None:
    """The CLI's record of an action it did on ``store``: only when the store is the
    database itself; through a server's API the server records it (with the token)."""
    if store.url.startswith(("http://", "https://")):
        return
    local_actor().record(store, action, target, detail)


def bounded(detail: dict[str, Any]) -> dict[str, Any]:
    """The detail cut to size: short strings, short lists, no nesting beyond one level."""

    def cut(value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return value if len(value) <= _MAX_TEXT else value[:_MAX_TEXT] + "..."
        if isinstance(value, bool | int | float) or value is None:
            return value
        if isinstance(value, dict) and depth == 0:
            return {str(k)[:50]: cut(v, 1) for k, v in list(value.items())[:_MAX_ITEMS]}
        if isinstance(value, list | tuple) and depth == 0:
            return [cut(v, 1) for v in list(value)[:_MAX_ITEMS]]
        return cut(str(value), depth)

    return {str(k)[:50]: cut(v) for k, v in list(detail.items())[:_MAX_ITEMS]}


# -- which action a flow run's compare-and-set is ------------------------------------------


def run_action(state: State, allowed_from: Sequence[State], message: str | None) -> str | None:
    """``run.cancel``, ``run.retry`` or ``run.resume`` for a change people ask for; None for
    a process carrying on a run it already holds (RUNNING to RUNNING, after a worker's claim)
    and for other changes."""
    sources = set(allowed_from)
    if state is State.CANCELLED and sources - {State.CANCELLED}:
        return "run.cancel"
    if state is State.RUNNING and sources - {State.RUNNING}:
        # The engine says which when it takes a run over ("retried" / "resumed"); a CRASHED
        # run can be either.
        if message == "retried" or sources <= {State.FAILED, State.CANCELLED}:
            return "run.retry"
        return "run.resume"
    return None


def queue_action(allowed_from: Sequence[State]) -> str | None:
    """``run.retry`` or ``run.resume`` for a stopped run queued again for its pool's workers
    (the operator's way: the dashboard, Slack, the CLI over the API); None for a worker
    handing back a run it holds."""
    sources = set(allowed_from)
    if not sources or State.RUNNING in sources or State.PENDING in sources:
        return None
    return "run.retry" if sources & {State.FAILED, State.CANCELLED} else "run.resume"


# -- details: what is worth knowing about each action, and nothing secret ------------------


def deployment(dep: Deployment) -> dict[str, Any]:
    return {"flow": dep.flow, "pool": dep.pool, "version": dep.version}


def pool(p: Pool) -> dict[str, Any]:
    return {"type": str(p.type), "options": sorted(p.options)}  # option names only


def trigger(t: Trigger) -> dict[str, Any]:
    return {"kind": t.kind, "deployment": t.deployment}


def schedules(items: Sequence[Schedule]) -> dict[str, Any]:
    return {"schedules": [s.describe() for s in items]}


def channel(text: str) -> str:
    """A notification channel without what may be secret: a webhook URL keeps its host."""
    return mask_channel(text)


def rule(r: NotifyRule) -> dict[str, Any]:
    return {"events": list(r.events), "channel": channel(r.channel), "flow": r.flow}
