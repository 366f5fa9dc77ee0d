"""Finding 8: error bodies broke the OpenAPI contract. Every 422 served ``detail`` as a string
where the document says a list of ``{loc, msg, type}`` (FastAPI's ``HTTPValidationError``), so
a client generated from the document misparsed every validation error. Each 422 here, whether
pydantic or one of the server's own checks refused the request, must parse as the document's
own ``HTTPValidationError``; other errors as its ``ErrorBody``; and HttpStore still names the
field in its message."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from legato.errors import UsageError
from legato.models import FlowRun, State, new_id
from legato.store import open_store
from legato.store.http import HttpStore
from legato.store.sql import SqlStore
from legato.store.wire import encode
from tests.live_server import LiveServer


@pytest.fixture
def server(legato_home: Path) -> Iterator[LiveServer]:
    store = open_store(f"sqlite:///{legato_home / 'legato.db'}")
    assert isinstance(store, SqlStore)
    live = LiveServer(store)
    yield live
    live.stop()
    store.close()


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as c:
        yield c


def conforms(client: httpx.Client, answer: httpx.Response, component: str) -> None:
    """``answer``'s body validates against the served document's schema ``component``."""
    document = client.get("/openapi.json").json()
    schema = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    jsonschema.validate(answer.json(), schema, cls=jsonschema.Draft202012Validator)


def planted_result(ref: str) -> dict[str, Any]:
    return {
        "op": "update_task_run",
        "id": new_id(),
        "state": "COMPLETED",
        "at": time.time(),
        "values": {"result": {"ref": ref, "ser": "pickle"}, "ended_at": time.time()},
    }


def a_flow_run(flow: str) -> dict[str, Any]:
    run = FlowRun(new_id(), flow, State.RUNNING, created_at=time.time())
    return {"op": "insert_flow_run", "run": encode(run)}


def test_a_pydantic_422_is_an_http_validation_error(client: httpx.Client) -> None:
    got = client.get("/api/v1/flow-runs", params={"limit": 0})
    assert got.status_code == 422, got.text
    conforms(client, got, "HTTPValidationError")
    assert got.json()["detail"][0]["loc"] == ["query", "limit"]


@pytest.mark.parametrize(
    ("op", "loc", "words"),
    [
        (
            planted_result("/etc/passwd"),
            ["body", "ops", 0, "values", "result", "ref"],
            "outside the result storage",
        ),
        (a_flow_run("etl\x00evil"), ["body", "ops", 0, "insert_flow_run", "run"], "flow: "),
    ],
    ids=["result-ref-outside-the-storage", "nul-in-a-name"],
)
def test_our_own_checks_answer_http_validation_errors(
    client: httpx.Client, op: dict[str, Any], loc: list[Any], words: str
) -> None:
    got = client.post("/api/v1/ops", json={"ops": [op]})
    assert got.status_code == 422, got.text
    conforms(client, got, "HTTPValidationError")
    (problem,) = got.json()["detail"]
    assert problem["loc"] == loc and words in problem["msg"], problem


def test_a_route_check_raised_by_hand_has_the_same_shape(client: httpx.Client) -> None:
    pool = {"name": "other", "type": "process"}
    got = client.put("/api/v1/pools/gpu", json={"pool": pool})
    assert got.status_code == 422, got.text
    conforms(client, got, "HTTPValidationError")
    assert got.json()["detail"][0]["loc"] == ["body", "pool", "name"]


def test_other_errors_are_declared_error_bodies(client: httpx.Client, server: LiveServer) -> None:
    missing = client.get("/api/v1/flow-runs/nope")
    assert missing.status_code == 404
    conforms(client, missing, "ErrorBody")
    document = client.get("/openapi.json").json()
    declared = document["paths"]["/api/v1/flow-runs/{run_id}"]["get"]["responses"]
    assert {"401", "403", "404", "422"} <= declared.keys()
    anonymous = httpx.get(f"{server.url}/api/v1/flow-runs", timeout=30)
    assert anonymous.status_code == 401
    conforms(client, anonymous, "ErrorBody")


def test_http_store_still_names_the_field(server: LiveServer) -> None:
    store = HttpStore(server.url, server.token, retry_seconds=0)
    try:
        with pytest.raises(UsageError, match=r"query\.limit: .*greater than or equal to 1"):
            store.list_flow_runs(limit=0)
    finally:
        store.close()
