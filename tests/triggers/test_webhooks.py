"""Webhook triggers over the real HTTP server: good, bad, stale and replayed signatures; token
authentication; JSON fields mapped to parameters."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from legato.models import Role, Trigger
from legato.store import Store
from legato.store.http import error_text
from legato.triggers.webhooks import parse_map, sign, webhook_config

from .conftest import deploy_flow

SECRET = "whsec_test-secret"


@pytest.fixture
def client(store: Store, flows_file: Path) -> Iterator[httpx.Client]:
    deploy_flow(store, flows_file, "from_hook")
    config = webhook_config(secret=SECRET, mapping=parse_map(["sample=data.sample.id"]))
    store.put_trigger(Trigger("new-sample", "webhook", "from_hook", config))
    store.put_trigger(Trigger("by-token", "webhook", "from_hook", webhook_config(auth="token")))
    from tests.live_server import LiveServer

    server = LiveServer(store)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as made:
            yield made
    finally:
        server.stop()


def _signed(body: bytes, *, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    ts = str(int(time.time() if at is None else at))
    return {
        "content-type": "application/json",
        "x-legato-timestamp": ts,
        "x-legato-signature": sign(secret, ts, body),
    }


BODY = json.dumps({"data": {"sample": {"id": "S-17"}}, "extra": 1}).encode()


def test_a_signed_request_starts_one_run_with_mapped_parameters(
    client: httpx.Client, store: Store
) -> None:
    answer = client.post("/api/v1/hooks/new-sample", content=BODY, headers=_signed(BODY))
    assert answer.status_code == 202, answer.text
    run = store.get_flow_run(answer.json()["flow_run_id"])
    assert run.deployment == "from_hook"
    assert run.parameters == {"sample": "S-17", "threshold": 0.5}
    assert "webhook new-sample" in (store.get_history(run.id)[0].message or "")


def test_a_replayed_request_is_refused(client: httpx.Client, store: Store) -> None:
    headers = _signed(BODY)
    assert client.post("/api/v1/hooks/new-sample", content=BODY, headers=headers).status_code == 202
    again = client.post("/api/v1/hooks/new-sample", content=BODY, headers=headers)
    assert again.status_code == 409
    assert "replay" in again.json()["detail"]
    assert len(store.list_flow_runs()) == 1


# Each case builds its headers when the test runs, not when pytest collects: a signature made
# at collection time is past the 5-minute window once the suite has run that long.
@pytest.mark.parametrize(
    ("make_headers", "reason"),
    [
        (lambda: {"content-type": "application/json"}, "needs signed requests"),
        (lambda: _signed(BODY, secret="whsec_wrong"), "does not match"),
        (lambda: _signed(b'{"data": {"sample": {"id": "S-18"}}}'), "does not match"),  # tampered
        (lambda: _signed(BODY, at=time.time() - 600), "5 minutes"),
        (lambda: {**_signed(BODY), "x-legato-timestamp": "yesterday"}, "unix seconds"),
    ],
    ids=["unsigned", "wrong-secret", "tampered", "stale", "bad-timestamp"],
)
def test_unsigned_or_badly_signed_requests_are_refused(
    client: httpx.Client, store: Store, make_headers: Callable[[], dict[str, str]], reason: str
) -> None:
    answer = client.post("/api/v1/hooks/new-sample", content=BODY, headers=make_headers())
    assert answer.status_code == 401
    assert reason in answer.json()["detail"]
    assert store.list_flow_runs() == []


def test_missing_fields_and_bad_parameters_are_422_and_start_nothing(
    client: httpx.Client, store: Store
) -> None:
    body = b'{"data": {}}'
    answer = client.post("/api/v1/hooks/new-sample", content=body, headers=_signed(body))
    assert answer.status_code == 422
    assert "data.sample.id" in error_text(answer.json())
    store.put_trigger(Trigger("raw", "webhook", "from_hook", webhook_config(secret=SECRET)))
    body = b'{"sample": "S1", "threshold": "high"}'
    answer = client.post("/api/v1/hooks/raw", content=body, headers=_signed(body))
    assert answer.status_code == 422
    assert "threshold" in error_text(answer.json())
    assert store.list_flow_runs() == []
    assert client.post("/api/v1/hooks/nope", content=body, headers=_signed(body)).status_code == 404


def test_token_hooks_need_an_operator_token(client: httpx.Client, store: Store) -> None:
    body = b'{"sample": "S2"}'
    url = "/api/v1/hooks/by-token"
    assert client.post(url, content=body).status_code == 401
    viewer = store.create_token("viewer", Role.VIEWER)[1]
    denied = client.post(url, content=body, headers={"authorization": f"Bearer {viewer}"})
    assert denied.status_code == 403
    operator = store.create_token("ci", Role.OPERATOR)[1]
    headers = {"authorization": f"Bearer {operator}", "x-legato-delivery": "build-41"}
    assert client.post(url, content=body, headers=headers).status_code == 202
    assert client.post(url, content=body, headers=headers).status_code == 409  # same delivery
    (run,) = store.list_flow_runs()
    assert run.parameters["sample"] == "S2"


def test_paused_hooks_refuse(client: httpx.Client, store: Store) -> None:
    store.set_trigger_paused("new-sample", True)
    answer = client.post("/api/v1/hooks/new-sample", content=BODY, headers=_signed(BODY))
    assert answer.status_code == 409
    assert "paused" in answer.json()["detail"]


def test_triggers_and_schedules_are_managed_over_the_api(
    client: httpx.Client, store: Store
) -> None:
    admin = store.create_token("admin", Role.ADMIN)[1]
    auth = {"authorization": f"Bearer {admin}"}
    listed = client.get("/api/v1/triggers", headers=auth).json()
    assert {t["name"] for t in listed} == {"new-sample", "by-token"}
    assert all(t["config"].get("secret") in (None, "***") for t in listed)
    assert client.get("/api/v1/triggers", headers={}).status_code == 401
    schedule = {
        "id": "s1",
        "deployment": "from_hook",
        "cron": "0 2 * * 1",
        "timezone": "Europe/Paris",
        "catchup": "latest",
        "next_at": 1.0,
    }
    put = client.put(
        "/api/v1/deployments/from_hook/schedules", json={"schedules": [schedule]}, headers=auth
    )
    assert put.status_code == 204, put.text
    bad = {**schedule, "cron": "every monday"}
    refused = client.put(
        "/api/v1/deployments/from_hook/schedules", json={"schedules": [bad]}, headers=auth
    )
    assert refused.status_code == 400
    assert "bad cron expression" in refused.json()["detail"]
    assert client.post("/api/v1/schedules/from_hook/pause", headers=auth).json() == {"count": 1}
    (sch,) = store.list_schedules("from_hook")
    assert sch.paused and sch.timezone == "Europe/Paris"
