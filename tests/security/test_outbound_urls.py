"""Finding 3: a notification rule made the server POST to its own loopback, and any token
could read every rule's full URL. Against a real server and real HTTP receivers on loopback:
webhooks to non-public addresses are refused when a rule is added (however the address is
written or named) and again when the notifier sends; an allowed receiver gets its webhook;
a redirect is not followed; only admins see a webhook's full URL."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest

from legato.models import FlowRun, Notification, NotifyRule, Role, State, new_id, now
from legato.notify.rules import make_rule
from legato.notify.sender import Notifier
from legato.settings import Settings
from legato.store import InsertFlowRun, UpdateFlowRun, open_store
from legato.store.http import HttpStore
from legato.store.sql import SqlStore
from tests.live_server import LiveServer

SECRET_PATH = "services/T0AAAA/B0BBBB/XXXXsecretXXXX"


class Receiver:
    """A real HTTP server on 127.0.0.1 that records every request; it answers 204, or a 302
    to ``redirect`` when set."""

    def __init__(self, redirect: str | None = None) -> None:
        self.hits: list[tuple[str, bytes]] = []
        hits, location = self.hits, redirect

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                hits.append((self.path, self.rfile.read(size)))
                self.send_response(302 if location else 204)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(redirect: str | None = None) -> Receiver:
        made.append(Receiver(redirect))
        return made[-1]

    yield make
    for r in made:
        r.stop()


@pytest.fixture
def server_store(tmp_path: Any) -> Iterator[SqlStore]:
    store = open_store(f"sqlite:///{tmp_path / 'server.db'}")
    assert isinstance(store, SqlStore)
    yield store
    store.close()


@pytest.fixture
def serve(server_store: SqlStore) -> Iterator[Callable[[str], LiveServer]]:
    """A live server whose LEGATO_OUTBOUND_ALLOW is the argument."""
    started: list[LiveServer] = []

    def make(allow: str) -> LiveServer:
        started.append(LiveServer(server_store, outbound_allow=allow))
        return started[-1]

    yield make
    for s in started:
        s.stop()


def _add_rule(server: LiveServer, token: str, channel: str) -> httpx.Response:
    rule = make_rule(["failed"], channel).to_json()
    return httpx.post(
        f"{server.url}/api/v1/notify-rules",
        json={"rule": rule},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def _fail_a_run(store: SqlStore) -> None:
    run = FlowRun(id=new_id(), flow="etl", state=State.RUNNING, created_at=now())
    store.apply([InsertFlowRun(run), UpdateFlowRun(run.id, State.FAILED, now())])


def _notify_once(store: SqlStore, allow: str = "") -> list[Notification]:
    """A failed run, and one pass of the server's notifier (LEGATO_OUTBOUND_ALLOW=allow)."""
    notifier = Notifier(store, Settings(outbound_allow=allow))
    notifier.collect()  # its cursor starts now
    _fail_a_run(store)
    notifier.tick()
    return store.list_notifications()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/internal-admin",
        "http://2130706433:{port}/internal-admin",  # 127.0.0.1 as one decimal number
        "http://0x7f.1:{port}/internal-admin",  # ... and in hex, shortened
        "http://localhost:{port}/internal-admin",  # a name resolving to loopback
        "http://[::ffff:127.0.0.1]:{port}/internal-admin",  # IPv4-mapped IPv6
        "http://[::1]:{port}/internal-admin",
        "http://169.254.169.254/latest/meta-data/",  # the cloud metadata service
        "http://10.0.0.1:{port}/",
    ],
)
def test_a_webhook_to_a_non_public_address_is_refused_when_added(
    url: str,
    serve: Callable[[str], LiveServer],
    server_store: SqlStore,
    receivers: Callable[..., Receiver],
) -> None:
    internal = receivers()
    server = serve("")
    answer = _add_rule(server, server.token, "webhook:" + url.format(port=internal.port))
    assert answer.status_code == 422, answer.text
    (problem,) = answer.json()["detail"]
    assert problem["loc"] == ["body", "rule", "channel"]
    assert "LEGATO_OUTBOUND_ALLOW" in problem["msg"]
    assert server_store.list_notify_rules() == []
    assert internal.hits == []


def test_a_rule_stored_before_is_refused_when_sent_and_fails_at_once(
    server_store: SqlStore, receivers: Callable[..., Receiver]
) -> None:
    internal = receivers()  # say, a rule from before the policy, or before the list narrowed
    server_store.add_notify_rule(make_rule(["failed"], f"webhook:{internal.url}/internal-admin"))
    (sent,) = _notify_once(server_store)
    assert sent.state == "failed" and sent.attempts == 1  # not retried for hours
    assert sent.last_error and "loopback" in sent.last_error
    assert "LEGATO_OUTBOUND_ALLOW" in sent.last_error
    assert internal.hits == []


def test_a_receiver_the_setting_allows_gets_its_webhook(
    serve: Callable[[str], LiveServer],
    server_store: SqlStore,
    receivers: Callable[..., Receiver],
) -> None:
    lims = receivers()
    allow = f"127.0.0.1:{lims.port}"
    server = serve(allow)
    assert _add_rule(server, server.token, f"webhook:{lims.url}/legato-events").status_code == 204
    (sent,) = _notify_once(server_store, allow)
    assert sent.state == "sent", sent.last_error
    ((path, body),) = lims.hits
    assert path == "/legato-events" and b'"state": "FAILED"' in body
    other = receivers()  # the same host on another port is not allowed
    assert _add_rule(server, server.token, f"webhook:{other.url}/").status_code == 422


def test_a_redirect_from_an_allowed_receiver_to_loopback_is_not_followed(
    server_store: SqlStore, receivers: Callable[..., Receiver]
) -> None:
    internal = receivers()
    hop = receivers(redirect=f"{internal.url}/internal-admin")
    server_store.add_notify_rule(make_rule(["failed"], f"webhook:{hop.url}/hook"))
    (sent,) = _notify_once(server_store, f"127.0.0.1:{hop.port}")
    assert len(hop.hits) == 1
    assert internal.hits == []  # never reached
    assert sent.state == "failed" and sent.attempts == 1
    assert sent.last_error and "redirect" in sent.last_error


def test_only_admins_see_a_webhooks_full_url(
    serve: Callable[[str], LiveServer], server_store: SqlStore
) -> None:
    server = serve("")
    channel = f"webhook:https://hooks.slack.com/{SECRET_PATH}?token=abc"
    rule = make_rule(["failed"], channel)
    server_store.add_notify_rule(rule)
    server_store.add_notify_rule(NotifyRule("r-slack", ["failed"], "slack:#lab", None, now()))
    error = f"HTTPStatusError: Server error '500' for url 'https://hooks.slack.com/{SECRET_PATH}'"
    server_store.enqueue_notification(
        Notification(new_id(), channel, "failed", "k1", rule_id=rule.id, created_at=now())
    )
    (n,) = server_store.list_notifications()
    server_store.update_notification(n.id, {"state": "failed", "last_error": error})
    masked = "webhook:https://hooks.slack.com/***"
    for role in (Role.VIEWER, Role.OPERATOR, Role.RUNNER):
        secret = server_store.create_token(f"t-{role.value}", role)[1]
        raw = [
            httpx.get(f"{server.url}/api/v1/{path}", headers={"Authorization": f"Bearer {secret}"})
            for path in ("notify-rules", "notifications")
        ]
        for answer in raw:
            assert answer.status_code == 200 and "secret" not in answer.text, answer.text
        with closing(HttpStore(server.url, secret)) as client:  # `legato notify ls|log`
            rules = {r.id: r.channel for r in client.list_notify_rules()}
            (seen,) = client.list_notifications()
        assert rules == {rule.id: masked, "r-slack": "slack:#lab"}
        assert seen.channel == masked and "hooks.slack.com/***" in str(seen.last_error)
    with closing(HttpStore(server.url, server.token)) as admin:
        assert {r.channel for r in admin.list_notify_rules()} == {channel, "slack:#lab"}
        assert admin.list_notifications()[0].channel == channel
