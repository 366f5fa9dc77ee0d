"""HttpStore and the server agree on every store operation: each one declared in
``legato.store.operations`` has exactly one route with its method, path, role, body model,
answer type and status code; every store route is declared; every declared operation and every
Store method is served by HttpStore."""

from __future__ import annotations

import inspect
from typing import Any

from fastapi.routing import APIRoute

from legato.models import Role
from legato.server.app import ROLE_KEY, create_app
from legato.store import Store
from legato.store.http import HttpStore
from legato.store.operations import API, OPERATIONS, SERVER_ONLY
from legato.store.sql import SqlStore

# Routes of the API that are no store operation: their own authentication or the server's.
NOT_STORE = {"/hooks/{name}", "/slack/interactions", "/slack/commands", "/slack-manifest"}


def _api_routes(tmp_path: Any) -> dict[tuple[str, str], APIRoute]:
    store = SqlStore(f"sqlite:///{tmp_path / 'ops.db'}")
    try:
        app = create_app(store, auth=False)
    finally:
        store.close()
    found: dict[tuple[str, str], APIRoute] = {}
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path.startswith(API + "/"):
            for method in route.methods:
                found[(method, route.path[len(API) :])] = route
    return found


def _body_model(route: APIRoute) -> Any:
    body = route.body_field
    return None if body is None else body.field_info.annotation


def test_every_operation_has_its_route_and_every_store_route_is_declared(tmp_path: Any) -> None:
    routes = _api_routes(tmp_path)
    declared = {(op.method, op.path): op for op in OPERATIONS.values()}
    undeclared = sorted(k for k in routes if k not in declared and k[1] not in NOT_STORE)
    assert undeclared == []
    for key, op in declared.items():
        assert key in routes, f"{op.name}: no route {key}"
        route = routes[key]
        assert route.openapi_extra is not None
        assert Role(route.openapi_extra[ROLE_KEY]) is op.role, op.name
        assert _body_model(route) is op.body, op.name
        assert route.status_code in (None, op.status) and (route.status_code or 200) == op.status
        if op.answer is not None:
            assert route.response_model == op.answer, op.name


def test_http_store_serves_every_store_method() -> None:
    wanted = {n for n, _ in inspect.getmembers(Store, inspect.isfunction) if not n.startswith("_")}
    missing = sorted(n for n in wanted if not callable(getattr(HttpStore, n, None)))
    assert missing == []
    # What has no route is only the server's own work.
    assert wanted >= SERVER_ONLY
