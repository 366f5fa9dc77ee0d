"""Issue 15, finding 2: one bad row must not break everyone's dashboard.

The attack: a flow run inserted with ``created_at: 1e308`` (answered 204) made ``/`` and
``legato runs ls`` fail for everyone while the row existed; negative ``attempts`` and NUL
bytes in names were accepted too. Now the API refuses such values (422 naming the field), and
the dashboard and CLI still answer over a row written straight into the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from legato.cli import main
from legato.models import FlowRun, Role, State, TaskRun, new_id
from legato.store import InsertFlowRun, InsertTaskRun, open_store
from legato.store.http import error_text
from legato.store.sql import SqlStore
from legato.store.wire import encode
from tests.live_server import LiveServer

T0 = 1_800_000_000.0


def a_flow_run(**values: Any) -> FlowRun:
    fields: dict[str, Any] = {"id": new_id(), "flow": "etl", "state": State.RUNNING}
    fields |= {"created_at": T0, "started_at": T0} | values
    return FlowRun(**fields)


def a_task_run(run_id: str, **values: Any) -> TaskRun:
    fields: dict[str, Any] = {"id": new_id(), "flow_run_id": run_id, "task": "t", "key": "t:0"}
    fields |= {"state": State.PENDING, "created_at": T0} | values
    return TaskRun(**fields)


@pytest.fixture
def store(legato_home: Path) -> Iterator[SqlStore]:
    made = open_store(f"sqlite:///{legato_home / 'legato.db'}")
    assert isinstance(made, SqlStore)
    yield made
    made.close()


@pytest.fixture
def runner(store: SqlStore) -> Iterator[httpx.Client]:
    """A runner token's client: who may send run records (``POST /ops``)."""
    server = LiveServer(store)
    token = store.create_token("box", Role.RUNNER)[1]
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            yield client
    finally:
        server.stop()


def insert_flow_run(**values: Any) -> dict[str, Any]:
    return {"op": "insert_flow_run", "run": encode(a_flow_run()) | values}


RUN_ID = new_id()


@pytest.mark.parametrize(
    ("op", "field"),
    [
        (insert_flow_run(created_at=1e308), "created_at"),
        (insert_flow_run(created_at=-5.0), "created_at"),
        (insert_flow_run(started_at=253402300800.0), "started_at"),  # year 10000
        (insert_flow_run(attempts=-1), "attempts"),
        (insert_flow_run(flow="etl\x00evil"), "flow"),
        (insert_flow_run(flow="f" * 5000), "flow"),
        (insert_flow_run(error="e\x00"), "error"),
        (
            {"op": "insert_task_run", "run": encode(a_task_run(RUN_ID)) | {"attempts": -3}},
            "attempts",
        ),
        (
            {"op": "insert_task_run", "run": encode(a_task_run(RUN_ID)) | {"key": "k\x00"}},
            "key",
        ),
        (
            {"op": "update_task_run", "id": RUN_ID, "state": "FAILED", "at": 1e308},
            "at",
        ),
        (
            {
                "op": "update_task_run",
                "id": RUN_ID,
                "state": "FAILED",
                "at": T0,
                "values": {"attempts": -1},
            },
            "values.attempts",
        ),
        (
            {
                "op": "update_flow_run",
                "id": RUN_ID,
                "state": "FAILED",
                "at": T0,
                "values": {"ended_at": 1e308},
            },
            "values.ended_at",
        ),
        (
            {
                "op": "insert_logs",
                "records": [
                    {
                        "flow_run_id": RUN_ID,
                        "task_run_id": None,
                        "at": 1e308,
                        "level": 20,
                        "logger": "x",
                        "message": "m",
                    }
                ],
            },
            "at",
        ),
    ],
)
def test_out_of_range_values_are_a_422_naming_the_field(
    runner: httpx.Client, store: SqlStore, op: dict[str, Any], field: str
) -> None:
    got = runner.post("/api/v1/ops", json={"ops": [op]})
    assert got.status_code == 422, got.text
    assert field in error_text(got.json()), got.json()
    assert store.list_flow_runs() == []  # nothing of the batch was written


def test_sane_values_still_pass(runner: httpx.Client, store: SqlStore) -> None:
    got = runner.post("/api/v1/ops", json={"ops": [insert_flow_run(flow="ünïcode flow")]})
    assert got.status_code == 204, got.text
    assert [r.flow for r in store.list_flow_runs()] == ["ünïcode flow"]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.mark.parametrize("bad", [1e308, -1e308, float("inf"), -5.0, 253402300800.0 * 10])
def test_a_bad_row_in_the_database_still_lets_the_dashboard_and_cli_answer(
    store: SqlStore, capsys: pytest.CaptureFixture[str], bad: float
) -> None:
    """Written straight into the store, which the API no longer allows: whatever is stored,
    the pages and listings answer, and the value is shown as not a time."""
    bad_run = a_flow_run(created_at=bad, started_at=bad, ended_at=bad, queued_at=bad)
    good_run = a_flow_run(flow="fine")
    tr = a_task_run(bad_run.id, started_at=bad, ended_at=T0, state=State.RUNNING)
    store.apply([InsertFlowRun(bad_run), InsertFlowRun(good_run), InsertTaskRun(tr)])
    server = LiveServer(store, auth=False)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for page in (
                "/",
                f"/runs/{bad_run.id}",
                f"/runs/{good_run.id}",
                "/pools",
                f"/runs/{bad_run.id}/live",
            ):
                got = client.get(page)
                assert got.status_code < 400, (page, got.status_code, got.text[-500:])
            assert "fine" in client.get("/").text
    finally:
        server.stop()
    code, out, err = cli(capsys, "runs", "ls")
    assert code == 0, err
    assert "fine" in out and bad_run.id[:8] in out
    assert f"invalid time ({bad!r})" in out
    code, out, err = cli(capsys, "runs", "ls", "--json")
    assert code == 0, err
    listed = {r["id"]: r for r in json.loads(out)}
    assert set(listed) == {bad_run.id, good_run.id}
    assert listed[bad_run.id]["created_at"] == f"invalid time ({bad!r})"
    code, out, err = cli(capsys, "runs", "show", bad_run.id)
    assert code == 0, err
    code, out, err = cli(capsys, "runs", "show", bad_run.id, "--json")
    assert code == 0, err
    assert json.loads(out)["id"] == bad_run.id


def test_the_users_own_data_is_not_policed(runner: httpx.Client, store: SqlStore) -> None:
    """Results and parameters are the user's JSON: a negative number or a long string there
    is data, not a count or a name."""
    run = a_flow_run(parameters={"offset": -1, "note": "x" * 5000}, result={"v": -1})
    got = runner.post("/api/v1/ops", json={"ops": [{"op": "insert_flow_run", "run": encode(run)}]})
    assert got.status_code == 204, got.text
    assert store.get_flow_run(run.id).parameters == {"offset": -1, "note": "x" * 5000}
    update = {
        "op": "update_flow_run",
        "id": run.id,
        "state": "COMPLETED",
        "at": T0,
        "values": {"result": -5, "parameters": {"n": -2}},
    }
    assert runner.post("/api/v1/ops", json={"ops": [update]}).status_code == 204
    assert store.get_flow_run(run.id).result == -5
