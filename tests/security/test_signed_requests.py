"""Issue 15, finding 3: signed requests from outside (webhooks, Slack).

- A webhook timestamp of ``nan`` passed the 5-minute window check (``abs(now - nan) > 300`` is
  False), so a request signed with it stayed valid forever. Now a timestamp must be finite.
- Slack: a timestamp of ``nan`` made the request fail with a 500 (slack_sdk's ``int()``), and
  the same signed request was accepted again and again within the window (a captured
  ``/legato retry`` could be replayed). Now the timestamp must be whole unix seconds, and the
  same request (signature and timestamp) is accepted once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from legato.integrations.slack import SlackApp
from legato.models import Trigger
from legato.settings import Settings
from legato.store import Store
from legato.triggers.webhooks import sign, webhook_config
from tests.live_server import LiveServer
from tests.triggers.conftest import deploy_flow, flows_file, store  # noqa: F401  (fixtures)

SECRET = "whsec_security-test"
SLACK_SECRET = "slack-signing-secret-for-tests"
BODY = json.dumps({"sample": "S-1"}).encode()


@pytest.fixture
def server(store: Store, flows_file: Path) -> Iterator[httpx.Client]:  # noqa: F811
    deploy_flow(store, flows_file, "from_hook")
    store.put_trigger(Trigger("hook", "webhook", "from_hook", webhook_config(secret=SECRET)))
    live = LiveServer(store)
    settings = Settings(slack_signing_secret=SLACK_SECRET, slack_users="U1=operator")
    live.app.state.slack = SlackApp(store, settings)
    try:
        with httpx.Client(base_url=live.url, timeout=30) as client:
            yield client
    finally:
        live.stop()


@pytest.mark.parametrize("timestamp", ["nan", "NaN", "-nan", "+nan"])
def test_a_webhook_signed_with_a_nan_timestamp_is_refused(
    server: httpx.Client,
    store: Store,  # noqa: F811
    timestamp: str,
) -> None:
    headers = {
        "content-type": "application/json",
        "x-legato-timestamp": timestamp,
        "x-legato-signature": sign(SECRET, timestamp, BODY),  # correctly signed, by the secret
    }
    got = server.post("/api/v1/hooks/hook", content=BODY, headers=headers)
    assert got.status_code == 401, got.text
    assert "timestamp" in got.json()["detail"].lower()
    assert store.list_flow_runs() == []  # nothing started


def slack_headers(body: str, timestamp: str | None = None) -> dict[str, str]:
    ts = timestamp if timestamp is not None else str(int(time.time()))
    base = f"v0:{ts}:{body}".encode()
    signature = "v0=" + hmac.new(SLACK_SECRET.encode(), base, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": ts,
        "x-slack-signature": signature,
    }


COMMAND = urllib.parse.urlencode({"user_id": "U1", "command": "/legato", "text": "runs"})


@pytest.mark.parametrize("timestamp", ["nan", "inf", "1e9", "-1", "underscored"])
def test_a_slack_request_with_a_timestamp_that_is_not_unix_seconds_is_refused(
    server: httpx.Client, timestamp: str
) -> None:
    if timestamp == "underscored":  # int() reads "1_764..." as now: Slack never sends it
        now = str(int(time.time()))
        timestamp = f"{now[0]}_{now[1:]}"
    headers = slack_headers(COMMAND, timestamp)
    got = server.post("/api/v1/slack/commands", content=COMMAND.encode(), headers=headers)
    assert got.status_code == 401, got.text


def test_the_same_slack_request_is_accepted_once(server: httpx.Client) -> None:
    headers = slack_headers(COMMAND)
    first = server.post("/api/v1/slack/commands", content=COMMAND, headers=headers)
    assert first.status_code == 200, first.text
    again = server.post("/api/v1/slack/commands", content=COMMAND, headers=headers)
    assert again.status_code == 409, again.text
    assert "already handled" in again.json()["detail"]
    # A new request (a new timestamp, so a new signature) is accepted.
    later = slack_headers(COMMAND, str(int(time.time()) + 1))
    assert server.post("/api/v1/slack/commands", content=COMMAND, headers=later).status_code == 200


def test_a_replayed_slack_interaction_is_refused(server: httpx.Client) -> None:
    body = "payload=" + urllib.parse.quote(
        json.dumps({"type": "view_closed", "user": {"id": "U1"}})
    )
    headers = slack_headers(body)
    assert (
        server.post("/api/v1/slack/interactions", content=body, headers=headers).status_code == 200
    )
    again = server.post("/api/v1/slack/interactions", content=body, headers=headers)
    assert again.status_code == 409, again.text
