"""Notification rules and the outbox."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from legato import audit as details
from legato.models import Notification, NotifyRule
from legato.server.routes._common import Audit, Id, Routes, StoreDep
from legato.store.operations import OPERATIONS
from legato.store.wire import Changed, RuleIn

routes = Routes(bounded=False, signed=True)


@routes.op(OPERATIONS["list_rules"])
def list_rules(
    store: StoreDep,
) -> list[NotifyRule]:
    """Every notification rule."""
    return store.list_notify_rules()


@routes.op(OPERATIONS["add_rule"])
def add_rule(store: StoreDep, body: RuleIn, audit: Audit) -> None:
    """Add a rule (events, channel, optional flow)."""
    from legato.notify.rules import make_rule

    checked = make_rule(body.rule.events, body.rule.channel, body.rule.flow)
    checked.id, checked.created_at = body.rule.id, body.rule.created_at
    store.add_notify_rule(checked)
    audit("rule.add", checked.id, details.rule(checked))


@routes.op(OPERATIONS["delete_rule"])
def delete_rule(store: StoreDep, rule_id: Id, audit: Audit) -> Changed:
    """Remove a rule by id or unique prefix."""
    changed = store.delete_notify_rule(rule_id)
    if changed:
        audit("rule.delete", rule_id)
    return Changed(changed=changed)


@routes.op(OPERATIONS["list_notifications"])
def list_notifications(
    store: StoreDep,
    state: Annotated[list[str] | None, Query(max_length=10)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Notification]:
    """Messages sent, waiting or failed (with the last error), newest first."""
    return store.list_notifications(states=state, limit=limit)
