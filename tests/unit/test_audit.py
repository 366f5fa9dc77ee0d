"""The audit log's pure parts: which run change is which action, and details cut to size
with nothing secret in them."""

from __future__ import annotations

from legato import audit
from legato.models import NotifyRule, State


def test_run_changes_people_ask_for_are_named() -> None:
    active = [s for s in State if not s.is_final]
    assert audit.run_action(State.CANCELLED, active, None) == "run.cancel"
    assert audit.run_action(State.CANCELLED, [State.CANCELLED], None) is None  # acknowledged
    assert audit.run_action(State.RUNNING, [State.FAILED], "retried") == "run.retry"
    assert audit.run_action(State.RUNNING, [State.CANCELLED], None) == "run.retry"
    assert audit.run_action(State.RUNNING, [State.CRASHED], "retried") == "run.retry"
    assert audit.run_action(State.RUNNING, [State.CRASHED], "resumed") == "run.resume"
    assert audit.run_action(State.RUNNING, [State.PAUSED], "resumed") == "run.resume"
    assert audit.run_action(State.RUNNING, [State.RUNNING], "resumed") is None  # a claim
    assert audit.run_action(State.FAILED, [State.RUNNING], None) is None


def test_details_are_bounded() -> None:
    cut = audit.bounded({"long": "x" * 1000, "many": list(range(100)), "deep": {"a": {"b": 1}}})
    assert len(cut["long"]) < 210 and len(cut["many"]) == 20
    assert cut["deep"] == {"a": "{'b': 1}"}
    assert len(audit.bounded({str(i): i for i in range(100)})) == 20


def test_a_webhook_channel_keeps_only_its_host() -> None:
    rule = NotifyRule("r1", ["failed"], "webhook:https://hooks.example.org/T0/B0/secret?x=1")
    detail = audit.rule(rule)
    assert detail["channel"] == "webhook:https://hooks.example.org/***"
    assert audit.channel("slack:#lab") == "slack:#lab"
