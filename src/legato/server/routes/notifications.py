"""Notification rules and the outbox."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import Depends, Query, Request

from legato import audit as details
from legato.errors import OutboundRefused
from legato.models import Notification, NotifyRule, Role
from legato.outbound import Policy, mask_channel, mask_urls
from legato.server.routes._common import Audit, Caller, Id, Routes, StoreDep, invalid
from legato.store.operations import OPERATIONS
from legato.store.wire import Changed, RuleIn

routes = Routes(bounded=False, signed=True)


async def _outbound(request: Request) -> Policy:
    policy: Policy = request.app.state.outbound
    return policy


Outbound = Annotated[Policy, Depends(_outbound)]


def _masked_rule(rule: NotifyRule) -> NotifyRule:
    return dataclasses.replace(rule, channel=mask_channel(rule.channel))


def _masked_notification(n: Notification) -> Notification:
    # an error may quote the URL (those written before sends masked it, a library's message)
    error = mask_urls(n.last_error) if n.last_error else n.last_error
    return dataclasses.replace(n, channel=mask_channel(n.channel), last_error=error)


@routes.op(OPERATIONS["list_rules"])
def list_rules(store: StoreDep, caller: Caller) -> list[NotifyRule]:
    """Every notification rule; a webhook's URL masked but for admins (its path and query
    may hold a secret: ``https://hooks.slack.com/***``)."""
    rules = store.list_notify_rules()
    return rules if caller.role is Role.ADMIN else [_masked_rule(r) for r in rules]


@routes.op(OPERATIONS["add_rule"])
def add_rule(store: StoreDep, body: RuleIn, audit: Audit, outbound: Outbound) -> None:
    """Add a rule (events, channel, optional flow). A webhook must be one the server may
    send to (``LEGATO_OUTBOUND_ALLOW``): 422 naming the channel otherwise."""
    from legato.notify.rules import check_channel, make_rule

    checked = make_rule(body.rule.events, body.rule.channel, body.rule.flow)
    try:
        check_channel(checked.channel, outbound)
    except OutboundRefused as exc:
        raise invalid((("body", "rule", "channel"), str(exc))) from None
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
    caller: Caller,
    state: Annotated[list[str] | None, Query(max_length=10)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Notification]:
    """Messages sent, waiting or failed (with the last error), newest first; a webhook's URL
    masked but for admins."""
    found = store.list_notifications(states=state, limit=limit)
    return found if caller.role is Role.ADMIN else [_masked_notification(n) for n in found]
