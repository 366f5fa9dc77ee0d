"""File and webhook triggers; ``/api/v1/hooks/NAME`` authenticates per hook (HMAC
signature or token, see ``legato.triggers.webhooks``)."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import Query, Request

from legato import audit as details
from legato.errors import UsageError
from legato.models import Role
from legato.server.routes._common import Audit, Id, Routes, StoreDep, error, invalid
from legato.store.operations import API, OPERATIONS
from legato.store.wire import Changed, Count, FoundTrigger, TriggerIn

routes = Routes(bounded=False, signed=True)


@routes.op(OPERATIONS["list_triggers"])
def list_triggers(
    store: StoreDep,
    kind: Annotated[str | None, Query(max_length=20)] = None,
) -> list[dict[str, Any]]:
    """File and webhook triggers (webhook secrets are not shown)."""
    return [t.to_json() for t in store.list_triggers(kind)]


@routes.op(OPERATIONS["get_trigger"])
def get_trigger(store: StoreDep, name: Id) -> FoundTrigger:
    """A trigger by name (null if none; its secret is not shown)."""
    trig = store.get_trigger(name)
    return FoundTrigger(trigger=None if trig is None else trig.to_json())


@routes.op(OPERATIONS["put_trigger"])
def put_trigger(store: StoreDep, name: Id, body: TriggerIn, audit: Audit) -> None:
    """Create or replace a trigger (its name must match the path)."""
    if body.trigger.name != name:
        raise invalid((("body", "trigger", "name"), "must match the path"))
    if body.trigger.kind not in ("files", "webhook"):
        raise UsageError("a trigger's kind is files or webhook")
    store.put_trigger(body.trigger)
    audit("trigger.put", name, details.trigger(body.trigger))


@routes.op(OPERATIONS["delete_trigger"])
def delete_trigger(store: StoreDep, name: Id, audit: Audit) -> Changed:
    """Remove a trigger; ``changed`` is false if there was none."""
    changed = store.delete_trigger(name)
    if changed:
        audit("trigger.delete", name)
    return Changed(changed=changed)


def _pause(store: StoreDep, name: str, paused: bool, audit: Audit) -> Changed:
    changed = store.set_trigger_paused(name, paused)
    if changed:
        audit("trigger.pause" if paused else "trigger.resume", name)
    return Changed(changed=changed)


@routes.op(OPERATIONS["pause_trigger"])
def pause_trigger(store: StoreDep, name: Id, audit: Audit) -> Changed:
    return _pause(store, name, True, audit)


@routes.op(OPERATIONS["resume_trigger"])
def resume_trigger(store: StoreDep, name: Id, audit: Audit) -> Changed:
    return _pause(store, name, False, audit)


@routes.op(OPERATIONS["count_trigger_files"])
def count_trigger_files(store: StoreDep, name: Id) -> Count:
    """How many files started runs of a file trigger."""
    return Count(count=store.count_trigger_files(name))


@routes.add("POST", API + "/hooks/{name}", None, status_code=202, tags=["triggers"])
async def webhook(store: StoreDep, name: Id, request: Request) -> Any:
    """Start the hook's deployment; authenticated by HMAC signature or bearer token."""
    from legato.triggers.webhooks import Refused, handle

    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    auth = request.app.state.auth

    def check(authorization: str | None) -> None:
        auth.check(authorization, Role.OPERATOR)

    try:
        return await anyio.to_thread.run_sync(
            lambda: handle(store, name, headers, body, check_token=check)
        )
    except Refused as exc:
        return error(exc.status, str(exc))
