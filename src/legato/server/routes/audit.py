"""The audit log, read only: its rows are written by the server for what it does."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from legato.models import AuditEvent
from legato.server.routes._common import Limit, Routes, StoreDep
from legato.store.operations import OPERATIONS

routes = Routes()

Text = Annotated[str | None, Query(min_length=1, max_length=500)]


@routes.op(OPERATIONS["list_audit"])
def list_audit(
    store: StoreDep,
    action: Text = None,
    actor: Text = None,
    target: Text = None,
    since: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    limit: Limit = 100,
) -> list[AuditEvent]:
    """Who answered, cancelled, retried, resumed, and changed tokens, deployments, schedules,
    triggers, rules, pools and limits: newest first (admin only). ``action`` ending in a
    dot is a prefix (``token.``)."""
    return store.list_audit(action=action, actor=actor, target=target, since=since, limit=limit)
