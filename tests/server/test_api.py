"""The API's answers to good and bad requests: 4xx naming the field, never a 5xx, except 503
when the store is down."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from legato.errors import StoreError
from legato.models import Question, State, new_id
from legato.server.app import API
from legato.store import InsertFlowRun, InsertQuestion, InsertTaskRun, UpdateFlowRun
from legato.store.http import HttpStore, error_text
from legato.store.sql import SqlStore
from legato.store.wire import encode
from tests.live_server import LiveServer
from tests.store.records import flow_run, task_run


def ops(*items: dict[str, Any]) -> dict[str, Any]:
    return {"ops": list(items)}


def insert_flow_run(**values: Any) -> dict[str, Any]:
    return {"op": "insert_flow_run", "run": encode(flow_run(**values))}


def assert_names(got: httpx.Response, status: int, field: str) -> None:
    assert got.status_code == status, got.text
    assert field in error_text(got.json()), got.json()


def test_health(anonymous: httpx.Client) -> None:
    got = anonymous.get("/health")
    assert got.status_code == 200 and got.json() == {"status": "ok"}


def test_the_openapi_document_lists_the_api(anonymous: httpx.Client) -> None:
    doc = anonymous.get("/openapi.json").json()
    assert f"{API}/ops" in doc["paths"] and f"{API}/claims" in doc["paths"]
    assert doc["paths"][f"{API}/tokens"]["post"]["x-legato-role"] == "admin"


def test_a_batch_round_trips(client: httpx.Client) -> None:
    run = flow_run()
    got = client.post(f"{API}/ops", json=ops({"op": "insert_flow_run", "run": encode(run)}))
    assert got.status_code == 204, got.text
    assert client.get(f"{API}/flow-runs/{run.id}").json()["state"] == "RUNNING"


def test_malformed_json_is_a_422_naming_the_body(client: httpx.Client) -> None:
    got = client.post(
        f"{API}/ops", content=b'{"ops": [', headers={"Content-Type": "application/json"}
    )
    assert_names(got, 422, "body")
    assert got.json()["detail"][0]["loc"][0] == "body"
    assert "JSON" in error_text(got.json())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ops": "nope"}, "body.ops"),
        ({"ops": [{"op": "drop_table"}]}, "body.ops[0]"),
        (ops(insert_flow_run() | {"run": {"id": 1, "flow": "f", "state": "RUNNING"}}), "id"),
        (ops(insert_flow_run() | {"run": encode(flow_run()) | {"state": "BLUE"}}), "state"),
        (
            ops({"op": "update_flow_run", "id": "x", "state": "FAILED", "at": 1, "values": {}}),
            None,
        ),
        (
            ops(
                {
                    "op": "update_task_run",
                    "id": "x",
                    "state": "FAILED",
                    "at": 1,
                    "values": {"password": 1},
                }
            ),
            "values.password",
        ),
        (
            ops(
                {
                    "op": "update_task_run",
                    "id": "x",
                    "state": "FAILED",
                    "at": 1,
                    "values": {"attempts": "many"},
                }
            ),
            "values.attempts",
        ),
        ({"ops": [], "extra": 1}, "body.extra"),
    ],
)
def test_wrong_types_are_a_422_naming_the_field(
    client: httpx.Client, body: dict[str, Any], field: str | None
) -> None:
    got = client.post(f"{API}/ops", json=body)
    if field is None:  # a valid update of an unknown run changes nothing
        assert got.status_code == 204, got.text
        return
    assert_names(got, 422, field)
    assert all({"loc", "msg", "type"} <= e.keys() for e in got.json()["detail"])


def test_bad_query_parameters_are_a_422(client: httpx.Client) -> None:
    assert_names(client.get(f"{API}/flow-runs", params={"limit": "ten"}), 422, "query.limit")
    assert_names(client.get(f"{API}/flow-runs", params={"state": "BLUE"}), 422, "query.state")
    assert_names(client.get(f"{API}/cache", params={"key": "k"}), 422, "query.now")
    assert_names(
        client.post(f"{API}/claims", json={"pool": "", "worker": "w", "free": {}}), 422, "pool"
    )


def test_unknown_ids_are_a_404_with_the_stores_message(client: httpx.Client) -> None:
    for path in ("flow-runs/no-such-run", f"task-runs/{new_id()}", f"questions/{new_id()}"):
        got = client.get(f"{API}/{path}")
        assert got.status_code == 404 and "no run has id" in got.json()["detail"], got.text
    got = client.post(f"{API}/questions/{new_id()}/answer", json={"value": True})
    assert got.status_code == 404
    assert client.get(f"{API}/nothing-here").status_code == 404


def test_oversized_bodies_are_a_413(client: httpx.Client) -> None:
    big = ops(insert_flow_run(parameters={"blob": "x" * 100_000}))
    got = client.post(f"{API}/ops", json=big)
    assert got.status_code == 413, got.text
    assert "detail" in got.json()


def test_a_conflicting_batch_is_a_409_and_changes_nothing(client: httpx.Client) -> None:
    run = flow_run()
    tr = task_run(run.id, "t:0")
    first = ops(
        {"op": "insert_flow_run", "run": encode(run)},
        {"op": "insert_task_run", "run": encode(tr)},
    )
    assert client.post(f"{API}/ops", json=first).status_code == 204
    again = task_run(run.id, "t:0")
    got = client.post(
        f"{API}/ops",
        json=ops(insert_flow_run(), {"op": "insert_task_run", "run": encode(again)}),
    )
    assert got.status_code == 409, got.text
    assert len(client.get(f"{API}/flow-runs").json()) == 1


def test_answers_are_validated_and_recorded(client: httpx.Client, server_store: SqlStore) -> None:
    run = flow_run()
    q = Question(new_id(), run.id, "ask:0", "QC passed?", {"type": "boolean"}, created_at=1.0)
    paused = UpdateFlowRun(run.id, State.PAUSED, 1.0)
    server_store.apply([InsertFlowRun(run), paused, InsertQuestion(q)])
    wrong = client.post(f"{API}/questions/{q.id}/answer", json={"value": "maybe"})
    assert_names(wrong, 422, "answer refused")
    assert wrong.json()["detail"][0]["loc"] == ["body", "value"]
    got = client.post(f"{API}/questions/{q.id}/answer", json={"value": True})
    assert got.status_code == 200, got.text
    assert got.json()["state"] == "answered" and got.json()["answer"] is True
    assert got.json()["answered_by"] == "t-admin"  # the token's name, unless `by` says
    assert client.post(f"{API}/questions/{q.id}/answer", json={"value": False}).status_code == 409
    bad_schema = Question(new_id(), run.id, "ask:1", "?", {"type": 5}).__dict__ | {
        "state": "pending"
    }
    got = client.post(f"{API}/ops", json=ops({"op": "insert_question", "question": bad_schema}))
    assert_names(got, 422, "schema")


def test_metrics(client: httpx.Client, server_store: SqlStore) -> None:
    run = flow_run()
    now = time.time()
    server_store.apply(
        [
            InsertFlowRun(run),
            InsertTaskRun(
                task_run(
                    run.id, "extract:0", state=State.COMPLETED, started_at=now - 3, ended_at=now
                )
            ),
            InsertTaskRun(task_run(run.id, "load:0", pool="gpu", queued_at=now)),
        ]
    )
    got = client.get("/metrics")
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/plain")
    text = got.text
    assert 'legato_flow_runs{state="RUNNING"} 1' in text
    assert 'legato_task_runs{state="COMPLETED"} 1' in text
    assert 'legato_queue_depth{pool="gpu"} 1' in text
    assert 'legato_task_run_duration_seconds{task="extract",quantile="0.5"} 3.0' in text
    assert 'legato_task_run_duration_seconds_count{task="extract"} 1' in text
    assert "# TYPE legato_task_run_duration_seconds summary" in text


class BrokenStore:
    """Every store call fails as a database that went away does."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise StoreError("cannot reach the state database at postgresql://db/legato")

        return fail


def test_an_unavailable_store_is_a_503(tmp_path: Path) -> None:
    from sqlalchemy.exc import OperationalError

    from legato.store import open_store

    tokens = open_store(f"sqlite:///{tmp_path / 'tokens.db'}")
    server = LiveServer(BrokenStore(), token_store=tokens)  # type: ignore[arg-type]
    try:
        bearer = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(base_url=server.url, headers=bearer) as client:
            assert client.get("/health").status_code == 503
            got = client.get(f"{API}/flow-runs")
            assert got.status_code == 503 and "unavailable" in got.json()["detail"]
        store = HttpStore(server.url, server.token, retry_seconds=0.3)
        with pytest.raises(StoreError, match=server.url):
            store.list_flow_runs()
        store.close()
    finally:
        server.stop()
        tokens.close()

    class Gone(BrokenStore):
        def __getattr__(self, name: str) -> Any:
            def fail(*args: Any, **kwargs: Any) -> Any:
                raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

            return fail

    tokens = open_store(f"sqlite:///{tmp_path / 'tokens2.db'}")
    server = LiveServer(Gone(), token_store=tokens)  # type: ignore[arg-type]
    try:
        got = httpx.get(
            f"{server.url}{API}/workers", headers={"Authorization": f"Bearer {server.token}"}
        )
        assert got.status_code == 503 and "closed the connection" in got.json()["detail"]
    finally:
        server.stop()
        tokens.close()


def test_an_unreachable_server_is_a_store_error_naming_the_url() -> None:
    store = HttpStore("http://127.0.0.1:9", "lgt_x", retry_seconds=0.2)
    with pytest.raises(StoreError, match=r"http://127\.0\.0\.1:9"):
        store.list_flow_runs()
    store.close()


def test_open_store_returns_an_http_store_for_http_urls() -> None:
    from legato.store import open_store

    store = open_store("http://127.0.0.1:9", token="lgt_x")
    assert isinstance(store, HttpStore) and store.url == "http://127.0.0.1:9"
    store.close()
