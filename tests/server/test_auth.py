"""Who may call what: every route names a role, and the API enforces it."""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from legato.errors import Unauthorized
from legato.models import Role
from legato.server.app import API, ROLE_KEY
from legato.server.auth import is_loopback
from legato.store.http import HttpStore
from legato.store.sql import SqlStore
from tests.live_server import LiveServer

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
ORDER = [Role.VIEWER, Role.OPERATOR, Role.RUNNER, Role.ADMIN]


def routes(app: FastAPI) -> list[tuple[str, str, Role]]:
    """(method, path with placeholders filled, role needed) for every route with a role."""
    out = []
    for route in app.routes:
        if not isinstance(route, APIRoute) or ROLE_KEY not in (route.openapi_extra or {}):
            continue
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        role = Role((route.openapi_extra or {})[ROLE_KEY])
        out.extend((method, path, role) for method in sorted(route.methods))
    return out


def test_every_api_route_names_the_role_it_needs(app: FastAPI) -> None:
    public = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
    signed = (f"{API}/hooks/", f"{API}/slack/")  # signature-authenticated (triggers/routes.py)
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path.startswith(signed):
            assert (route.openapi_extra or {}).get("x-legato-auth") == "signed", route.path
        elif isinstance(route, APIRoute) and route.path.startswith("/s/"):
            # A share link's pages: its secret is the key (tests/server/test_share_links.py)
            assert (route.openapi_extra or {}).get("x-legato-auth") == "share-link", route.path
            assert route.methods <= {"GET", "POST"}
        elif isinstance(route, APIRoute) and not route.path.startswith((API, "/metrics", *public)):
            # The dashboard's pages: a session cookie and a role (tests/server/test_dashboard.py)
            assert (route.openapi_extra or {}).get("x-legato-auth") == "session", route.path
        elif isinstance(route, APIRoute) and route.path not in public:
            assert ROLE_KEY in (route.openapi_extra or {}), route.path
            assert route.path.startswith(API) or route.path == "/metrics"
    mutating = [r for r in routes(app) if r[0] in MUTATING]
    assert len(mutating) >= 20  # the enumeration sees the routes


def test_every_route_refuses_missing_and_wrong_tokens(
    app: FastAPI, tokens: dict[Role, str], anonymous: httpx.Client
) -> None:
    client = anonymous
    if True:
        for method, path, _role in routes(app):
            for headers in ({}, {"Authorization": "Bearer lgt_wrong"}, {"Authorization": "x"}):
                got = client.request(method, path, json={}, headers=headers)
                assert got.status_code == 401, (method, path, headers, got.text)
                assert got.headers["www-authenticate"] == "Bearer"
                assert "token" in got.json()["detail"]


def test_every_mutating_route_refuses_roles_below_the_one_it_needs(
    app: FastAPI, tokens: dict[Role, str], anonymous: httpx.Client
) -> None:
    checked = 0
    client = anonymous
    if True:
        for method, path, needed in routes(app):
            if method not in MUTATING:
                continue
            for role in ORDER[: ORDER.index(needed)]:
                got = client.request(
                    method, path, json={}, headers={"Authorization": f"Bearer {tokens[role]}"}
                )
                assert got.status_code == 403, (method, path, role, got.text)
                assert needed.value in got.json()["detail"]
                checked += 1
            # The role it needs gets past authorization (to validation or the store).
            got = client.request(
                method, path, json={}, headers={"Authorization": f"Bearer {tokens[needed]}"}
            )
            assert got.status_code not in (401, 403, 500), (method, path, got.text)
    assert checked >= 20


def test_a_viewer_can_read(app: FastAPI, tokens: dict[Role, str], anonymous: httpx.Client) -> None:
    client = anonymous
    client.headers["Authorization"] = f"Bearer {tokens[Role.VIEWER]}"
    if True:
        for method, path, needed in routes(app):
            if needed is Role.VIEWER:
                params = {"key": "k", "now": 1.0, "pool": "gpu"}
                got = client.request(method, path, params=params, json={"ids": [], "timeout": 0})
                assert got.status_code not in (401, 403, 500), (method, path, got.text)
        assert client.get(f"{API}/flow-runs").json() == []
        assert client.get(f"{API}/tokens").status_code == 403  # managing tokens is admin's


def test_a_revoked_token_is_refused_at_once(client: httpx.Client, tokens: dict[Role, str]) -> None:
    viewer = {"Authorization": f"Bearer {tokens[Role.VIEWER]}"}
    assert client.get(f"{API}/flow-runs", headers=viewer).status_code == 200
    assert client.delete(f"{API}/tokens/t-viewer").json() == {"changed": True}
    assert client.get(f"{API}/flow-runs", headers=viewer).status_code == 401


def test_use_is_recorded_at_most_once_a_minute(
    client: httpx.Client, server_store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    touched: list[str] = []
    monkeypatch.setattr(server_store, "touch_token", touched.append)
    for _ in range(5):
        assert client.get(f"{API}/flow-runs").status_code == 200
    assert len(touched) == 1


def test_the_http_store_raises_unauthorized(live: LiveServer, tokens: dict[Role, str]) -> None:
    for token in (None, "lgt_wrong"):
        store = HttpStore(live.url, token)
        with pytest.raises(Unauthorized, match="token"):
            store.list_flow_runs()
        store.close()
    viewer = HttpStore(live.url, tokens[Role.VIEWER])
    assert viewer.list_flow_runs() == []
    with pytest.raises(Unauthorized, match="needs admin"):
        viewer.list_tokens()
    viewer.close()


def test_no_auth_is_refused_on_a_non_loopback_address(tmp_path: object) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "legato", "server", "start", "--no-auth", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"LEGATO_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "refusing to serve without authentication on 0.0.0.0" in proc.stderr
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("::")


def test_secrets_never_appear_in_logs_or_answers(
    client: httpx.Client, tokens: dict[Role, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = list(tokens.values())
    answers = []
    made = client.post(f"{API}/tokens", json={"name": "ci", "role": "operator"})
    assert made.status_code == 201
    new_secret = made.json()["secret"]  # the one answer that carries a secret: its own
    assert new_secret not in str(made.json()["token"])
    secrets.append(new_secret)
    bearer = {"Authorization": f"Bearer {new_secret}"}
    answers.append(client.get(f"{API}/tokens"))
    answers.append(client.get(f"{API}/flow-runs", headers=bearer))
    answers.append(client.get(f"{API}/tokens", headers=bearer))  # 403
    answers.append(client.get(f"{API}/flow-runs", headers={"Authorization": "Bearer lgt_nope"}))
    answers.append(client.post(f"{API}/tokens/verify", json={"secret": new_secret}))
    answers.append(client.post(f"{API}/tokens", json={"name": "", "role": "operator"}))
    answers.append(client.get("/metrics"))
    answers.append(client.get("/openapi.json"))
    for got in answers:
        for secret in [*secrets, "lgt_nope"]:
            assert secret not in got.text, got.request.url
    for secret in [*secrets, "lgt_nope"]:
        assert secret not in caplog.text
