"""Notification rules: which flow run events go to which channel."""

from __future__ import annotations

import time

from legato.errors import UsageError
from legato.models import NotifyRule, State, new_id
from legato.outbound import Policy

# Events are flow run states, lower case, and two that come from the clock (alerts.py): a run
# queued too long without starting, a task run running past its expected time.
CLOCK_EVENTS = ("late", "long")
EVENTS = (*(s.value.lower() for s in State), *CLOCK_EVENTS)
CHANNEL_KINDS = ("slack", "email", "webhook")


def parse_channel(channel: str) -> tuple[str, str]:
    """``slack:#lab`` -> ("slack", "#lab"); UsageError naming the forms otherwise."""
    kind, sep, target = channel.strip().partition(":")
    kind = kind.lower()
    target = target.strip()
    if not sep or kind not in CHANNEL_KINDS or not target:
        raise UsageError(
            f"bad channel {channel!r}: use slack:#channel (or slack:C0123), "
            "email:someone@lab.org or webhook:https://host/path"
        )
    if kind == "email" and "@" not in target:
        raise UsageError(f"bad email address {target!r} in {channel!r}")
    if kind == "webhook" and not target.startswith(("http://", "https://")):
        raise UsageError(f"a webhook channel needs an http(s) URL, got {target!r}")
    return kind, target


def check_channel(channel: str, policy: Policy) -> None:
    """OutboundRefused when ``channel`` is a webhook the server would not send to now (a
    refused address, or not http(s)); other channels need no check."""
    kind, target = parse_channel(channel)
    if kind == "webhook":
        policy.check_url(target)


def parse_events(text: str) -> list[str]:
    """``failed,crashed,paused`` -> a checked list."""
    events = [e.strip().lower() for e in text.split(",") if e.strip()]
    unknown = [e for e in events if e not in EVENTS]
    if not events or unknown:
        raise UsageError(
            f"unknown event(s) {', '.join(unknown) or '(none given)'}: use any of "
            f"{', '.join(EVENTS)}"
        )
    return events


def make_rule(events: list[str], channel: str, flow: str | None = None) -> NotifyRule:
    parse_channel(channel)
    return NotifyRule(
        id=new_id(),
        events=parse_events(",".join(events)),
        channel=channel.strip(),
        flow=flow or None,
        created_at=time.time(),
    )


def matches(rule: NotifyRule, flow: str, state: State) -> bool:
    return state.value.lower() in rule.events and (rule.flow is None or rule.flow == flow)
