"""Notification rules sent to Slack (fake Slack on 127.0.0.1), email (a local SMTP server) and
webhooks: matched, deduplicated, retried with backoff, rate-limited; a failing channel is
visible and never touches the run."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from legato.errors import UsageError
from legato.loader import load_flow
from legato.models import State
from legato.notify.rules import make_rule, parse_channel
from legato.notify.sender import Notifier
from legato.runtime import Runtime
from legato.settings import Settings
from legato.store import Store

from .fake_slack import FakeSlack


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def smtp() -> Iterator[list[Any]]:
    from aiosmtpd.controller import Controller

    received: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope)
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    received.append(port)  # the first item is the port
    yield received
    controller.stop()


def _settings(fake: FakeSlack, smtp_port: int = 25, **more: Any) -> Settings:
    return Settings(
        slack_bot_token="xoxb-test-token",
        slack_api_url=fake.url,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_from="legato@lab.org",
        public_url="https://legato.lab.org",
        outbound_allow="127.0.0.1",  # the webhook receiver is the fake Slack, on loopback
        **more,
    )


def _fail_a_run(rt: Runtime, flows_file: Path) -> str:
    broken = load_flow(f"{flows_file}:broken")
    with pytest.raises(ValueError, match="disk full"):
        broken("S-9")
    (run,) = rt.store.list_flow_runs(flow="broken")
    assert run.state is State.FAILED
    return run.id


def test_rules_check_their_channels_and_events() -> None:
    assert parse_channel("slack:#lab-alerts") == ("slack", "#lab-alerts")
    assert parse_channel("email:qc@lab.org") == ("email", "qc@lab.org")
    for bad in ("slack:", "sms:123", "email:nobody", "webhook:ftp://x"):
        with pytest.raises(UsageError, match=r"bad|needs"):
            parse_channel(bad)
    with pytest.raises(UsageError, match="unknown event"):
        make_rule(["failed", "exploded"], "slack:#x")


def test_a_failed_run_is_sent_to_slack_email_and_a_webhook_once(
    rt: Runtime, flows_file: Path, fake_slack: FakeSlack, smtp: list[Any]
) -> None:
    store = rt.store
    notifier = Notifier(store, _settings(fake_slack, smtp[0]))
    notifier.collect()  # starts its cursor at "now": the past is not announced
    hook_url = fake_slack.url.replace("/api/", "/hooks/lab")
    for channel in ("slack:#lab-alerts", "email:qc@lab.org", f"webhook:{hook_url}"):
        store.add_notify_rule(make_rule(["failed", "crashed"], channel, "broken"))
    store.add_notify_rule(make_rule(["failed"], "slack:#other", "some_other_flow"))
    store.add_notify_rule(make_rule(["completed"], "slack:#done"))
    run_id = _fail_a_run(rt, flows_file)

    assert notifier.collect() == 3
    assert notifier.collect() == 0  # deduplicated
    assert Notifier(store, _settings(fake_slack, smtp[0])).collect() == 0  # a second server
    assert notifier.deliver() == 3
    assert notifier.deliver() == 0

    (post,) = fake_slack.of("chat.postMessage")
    assert post.headers["authorization"] == "Bearer xoxb-test-token"
    assert post.body["channel"] == "lab-alerts"
    assert "broken failed" in post.body["text"]
    from slack_sdk.models.blocks import Block

    for block in post.body["blocks"]:
        parsed = Block.parse(block)
        assert parsed is not None
        parsed.validate_json()
    text = " ".join(b["text"]["text"] for b in post.body["blocks"])
    assert f"https://legato.lab.org/runs/{run_id}" in text
    assert "disk full while writing S-9" in text

    (mail,) = smtp[1:]
    assert mail.rcpt_tos == ["qc@lab.org"]
    content = mail.content.decode()
    assert "Subject: broken failed" in content
    assert "disk full while writing S-9" in content
    assert f"https://legato.lab.org/runs/{run_id}" in content

    (hook,) = fake_slack.of("lab")
    assert hook.body["flow_run_id"] == run_id and hook.body["state"] == "FAILED"
    assert "disk full" in hook.body["error"]
    sent = store.list_notifications(states=["sent"])
    assert len(sent) == 3 and all(n.attempts == 1 for n in sent)


def test_a_failing_channel_retries_with_backoff_then_shows_as_failed(
    rt: Runtime,
    flows_file: Path,
    fake_slack: FakeSlack,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = rt.store
    clock = Clock()
    notifier = Notifier(store, _settings(fake_slack), now=clock, max_attempts=3)
    notifier.collect()
    store.add_notify_rule(make_rule(["failed"], "slack:#lab-alerts"))
    fake_slack.fail = 500
    run_id = _fail_a_run(rt, flows_file)
    # The run is what it is: the channel played no part in it.
    assert store.get_flow_run(run_id).error and "disk full" in str(store.get_flow_run(run_id).error)
    caplog.set_level(logging.WARNING, "legato.notify")
    assert notifier.tick() == 0
    (n,) = store.list_notifications()
    assert n.state == "pending" and n.attempts == 1 and n.last_error
    assert 4.0 <= n.next_attempt_at - clock.t <= 6.0  # 5 s, with jitter
    assert notifier.deliver() == 0  # not due yet: nothing sent, nothing tried
    clock.t = n.next_attempt_at
    assert notifier.deliver() == 0
    (n,) = store.list_notifications()
    assert n.attempts == 2 and 8.0 <= n.next_attempt_at - clock.t <= 12.0  # doubled
    clock.t = n.next_attempt_at
    notifier.deliver()
    (n,) = store.list_notifications(states=["failed"])
    assert n.attempts == 3 and "SlackApiError" in (n.last_error or "")
    assert any("failed for good" in r.message for r in caplog.records)
    assert len(fake_slack.of("chat.postMessage")) == 3


def test_messages_are_rate_limited_per_channel(
    rt: Runtime, flows_file: Path, fake_slack: FakeSlack
) -> None:
    store = rt.store
    clock = Clock()
    notifier = Notifier(store, _settings(fake_slack, notify_rate_per_minute=2), now=clock)
    notifier.collect()
    store.add_notify_rule(make_rule(["failed"], "slack:#lab-alerts"))
    for _ in range(5):
        _fail_a_run_again(rt, flows_file)
    assert notifier.collect() == 5
    assert notifier.deliver() == 2
    assert notifier.deliver() == 0
    clock.t += 61
    assert notifier.deliver() == 2
    clock.t += 61
    assert notifier.deliver() == 1
    assert len(fake_slack.of("chat.postMessage")) == 5


def _fail_a_run_again(rt: Runtime, flows_file: Path) -> None:
    broken = load_flow(f"{flows_file}:broken")
    with pytest.raises(ValueError):
        broken("S-1")


def test_unused_store_fixture_is_separate(store: Store) -> None:
    assert store.list_notify_rules() == []


def test_a_completed_runs_message_carries_its_share_link(
    rt: Runtime, tmp_path: Path, fake_slack: FakeSlack, smtp: list[Any]
) -> None:
    """What a flow linked to (the lab pipeline's share link) is in its run's message."""
    flows = tmp_path / "sharing_flows.py"
    flows.write_text(
        "from legato import artifact, flow\n\n"
        "@flow\n"
        "def publish() -> int:\n"
        "    artifact.link('https://legato.lab.org/s/lgs_abc', title='Share rec-1 | lab')\n"
        "    artifact.link('javascript:alert(1)', title='not a web link')\n"
        "    return 1\n"
    )
    store = rt.store
    notifier = Notifier(store, _settings(fake_slack, smtp[0]))
    notifier.collect()
    store.add_notify_rule(make_rule(["completed"], "slack:#lab", "publish"))
    store.add_notify_rule(make_rule(["completed"], "email:lab@lab.org", "publish"))
    assert load_flow(f"{flows}:publish")() == 1
    assert notifier.collect() == 2 and notifier.deliver() == 2
    (post,) = fake_slack.of("chat.postMessage")
    from slack_sdk.models.blocks import Block

    for block in post.body["blocks"]:
        parsed = Block.parse(block)
        assert parsed is not None
        parsed.validate_json()
    text = " ".join(b["text"]["text"] for b in post.body["blocks"])
    assert "<https://legato.lab.org/s/lgs_abc|Share rec-1 / lab>" in text
    assert "javascript" not in text
    (mail,) = smtp[1:]
    assert "Share rec-1 | lab: https://legato.lab.org/s/lgs_abc" in mail.content.decode()


def test_ask_notify_channels_are_told_besides_the_configured_one(
    rt: Runtime, tmp_path: Path, fake_slack: FakeSlack, smtp: list[Any]
) -> None:
    from legato.errors import Paused

    flows = tmp_path / "asking_flows.py"
    flows.write_text(
        "from legato import ask, flow\n\n"
        "@flow\n"
        "def qc(name: str) -> bool:\n"
        "    return ask(f'Keep {name}?', notify=['slack:#qc-leads', 'email:lead@lab.org'])\n\n"
        "@flow\n"
        "def quiet(name: str) -> bool:\n"
        "    return ask(f'Keep {name} quietly?')\n\n"
        "@flow\n"
        "def misspelt(name: str) -> bool:\n"
        "    return ask('?', notify='pager:#oncall')\n"
    )
    store = rt.store
    with pytest.raises(Paused):
        load_flow(f"{flows}:qc")("rec-7")
    with pytest.raises(Paused):
        load_flow(f"{flows}:quiet")("rec-8")
    with pytest.raises(UsageError, match="bad channel 'pager:#oncall'"):
        load_flow(f"{flows}:misspelt")("rec-9")

    # No Slack channel configured: only the question that named channels is announced.
    bare = Notifier(store, _settings(fake_slack, smtp[0]))
    assert bare.collect() == 2 and bare.deliver() == 2
    (post,) = fake_slack.of("chat.postMessage")
    assert post.body["channel"] == "qc-leads" and "Keep rec-7?" in post.body["text"]
    (mail,) = smtp[1:]
    content = mail.content.decode()
    assert mail.rcpt_tos == ["lead@lab.org"] and "Keep rec-7?" in content
    assert "legato answer" in content and "https://legato.lab.org/runs/" in content
    assert bare.collect() == 0  # announced once

    # With LEGATO_SLACK_CHANNEL set, the other question goes there (and only there).
    configured = Notifier(store, _settings(fake_slack, smtp[0], slack_channel="#lab"))
    assert configured.collect() == 1 and configured.deliver() == 1
    posts = fake_slack.of("chat.postMessage")
    assert [p.body["channel"] for p in posts] == ["qc-leads", "lab"]
    assert "Keep rec-8 quietly?" in posts[1].body["text"]


def test_long_channels_fit_the_outbox_and_too_long_ones_are_refused(
    rt: Runtime, tmp_path: Path, fake_slack: FakeSlack, smtp: list[Any]
) -> None:
    from legato.errors import Paused

    hook = "webhook:https://hooks.lab.org/" + "p" * 400  # 430 characters: fits the channel
    flows = tmp_path / "long_channel_flows.py"
    flows.write_text(
        "from legato import ask, flow\n\n"
        "@flow\n"
        f"def long(name: str) -> bool:\n    return ask('Keep?', notify=['{hook}'])\n\n"
        "@flow\n"
        f"def too_long(name: str) -> bool:\n    return ask('?', notify=['{hook}' + 'q' * 80])\n"
    )
    with pytest.raises(Paused):
        load_flow(f"{flows}:long")("a")
    with pytest.raises(UsageError, match="at most 500 characters"):
        load_flow(f"{flows}:too_long")("b")
    notifier = Notifier(rt.store, _settings(fake_slack, smtp[0], slack_channel="#lab"))
    assert notifier.collect() == 2
    queued = rt.store.list_notifications()
    assert {n.channel for n in queued} == {"slack:#lab", hook}
    assert all(len(n.dedup_key) <= 300 for n in queued)  # the column's bound (PostgreSQL)
