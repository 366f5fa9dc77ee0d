"""Issue 15: every token does only its job. The role x route matrix, written out here as the
specification (not read back from the app), and the limits within a role: a runner's pools,
its own workers and the leases they hold, an operator who may only cancel, stopped runs only.

Each route is called with no token and with a token of every role; a role below the route's
needs 401 (no token) or 403, a role at or above it gets past authorization (any other answer:
validation, not found, done).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from legato.models import FlowRun, Role, State, TaskRun, Worker, new_id
from legato.server.app import API, ROLE_KEY
from legato.store import InsertFlowRun, InsertTaskRun, open_store
from legato.store.sql import SqlStore
from legato.store.wire import encode
from tests.live_server import LiveServer

V, O, R, A = Role.VIEWER, Role.OPERATOR, Role.RUNNER, Role.ADMIN  # noqa: E741

# What each route needs. A route missing here (or here and not served) fails the first test.
MATRIX: dict[tuple[str, str], Role] = {
    # runs: viewers read; operators cancel (and only that: see below); runners record
    ("POST", "/ops"): R,
    ("GET", "/flow-runs"): V,
    ("GET", "/flow-runs/{run_id}"): V,
    ("POST", "/flow-runs/{run_id}/transition"): O,
    ("GET", "/flow-runs/{run_id}/task-runs"): V,
    ("GET", "/flow-runs/{run_id}/logs"): V,
    ("GET", "/flow-runs/{run_id}/artifacts"): V,
    ("GET", "/runs/{run_id}/history"): V,
    ("GET", "/task-runs/{task_run_id}"): V,
    ("POST", "/task-runs/wait"): V,
    ("GET", "/cache"): V,
    # questions: operators answer; the flow's process updates them
    ("GET", "/questions"): V,
    ("GET", "/questions/{question_id}"): V,
    ("GET", "/flow-runs/{run_id}/question"): V,
    ("POST", "/questions/{question_id}/update"): R,
    ("POST", "/questions/{question_id}/answer"): O,
    # queues and workers: runners work; operators queue stopped runs (resume, retry)
    ("POST", "/claims"): R,
    ("POST", "/task-runs/{task_run_id}/finish"): R,
    ("POST", "/task-runs/finish"): R,
    ("POST", "/task-runs/requeue-expired"): R,
    ("GET", "/queues/depths"): V,
    ("GET", "/queues/waiting"): V,
    ("GET", "/queues/versions"): V,
    ("GET", "/queues/{pool}/next"): V,
    ("POST", "/queues/wait"): R,
    ("GET", "/workers"): V,
    ("POST", "/workers"): R,
    ("PUT", "/workers/{worker_id}/state"): R,
    ("POST", "/workers/{worker_id}/heartbeat"): R,
    ("POST", "/flow-claims"): R,
    ("POST", "/flow-runs/{run_id}/queue"): O,
    ("POST", "/flow-runs/rerun"): O,
    ("POST", "/retention/delete"): A,
    ("GET", "/retention/prunable"): A,
    ("GET", "/retention/prunable-count"): A,
    ("GET", "/retention/storage"): A,
    ("POST", "/flow-runs/requeue-expired"): R,
    ("GET", "/pools/{name}"): V,
    ("POST", "/task-runs/{task_run_id}/engine-job"): R,
    # deployments and schedules: registering code is a runner's
    ("GET", "/deployments"): V,
    ("GET", "/deployments/{name}"): V,
    ("PUT", "/deployments/{name}"): R,
    ("DELETE", "/deployments/{name}"): R,
    ("POST", "/deployments/{name}/runs"): O,  # starting registered code is an operator's
    ("GET", "/schedules"): V,
    ("PUT", "/deployments/{name}/schedules"): R,
    ("POST", "/schedules/{ref}/pause"): R,
    ("POST", "/schedules/{ref}/resume"): R,
    ("GET", "/deployments/{name}/scheduled-runs"): V,
    # share links: giving a run's data to someone outside is an operator's decision
    ("POST", "/shares"): O,
    ("GET", "/shares"): O,
    ("GET", "/shares/{share_id}"): O,
    ("DELETE", "/shares/{share_id}"): O,
    ("GET", "/shares/{share_id}/accesses"): O,
    # the admin's: limits, pools, tokens, triggers, rules, the audit log
    ("GET", "/limits"): V,
    ("PUT", "/limits/{name}"): A,
    ("DELETE", "/limits/{name}"): A,
    ("GET", "/pools"): V,
    ("PUT", "/pools/{name}"): A,
    ("DELETE", "/pools/{name}"): A,
    ("GET", "/stats/runs"): V,
    ("GET", "/stats/task-durations"): V,
    ("GET", "/tokens"): A,
    ("POST", "/tokens"): A,
    ("DELETE", "/tokens/{id_or_name}"): A,
    ("POST", "/tokens/verify"): A,
    ("POST", "/tokens/{token_id}/touch"): A,
    ("GET", "/triggers"): V,
    ("GET", "/triggers/{name}"): V,
    ("PUT", "/triggers/{name}"): A,
    ("DELETE", "/triggers/{name}"): A,
    ("POST", "/triggers/{name}/pause"): A,
    ("POST", "/triggers/{name}/resume"): A,
    ("GET", "/triggers/{name}/files/count"): V,
    ("GET", "/notify-rules"): V,
    ("POST", "/notify-rules"): A,
    ("DELETE", "/notify-rules/{rule_id}"): A,
    ("GET", "/notifications"): V,
    ("GET", "/audit"): A,
    ("GET", "/slack-manifest"): V,
}
OUTSIDE_API = {("GET", "/metrics"): V}
ROLES = [V, O, R, A]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    made = open_store(f"sqlite:///{tmp_path / 'server.db'}")
    assert isinstance(made, SqlStore)
    yield made
    made.close()


@pytest.fixture
def live(store: SqlStore) -> Iterator[LiveServer]:
    server = LiveServer(store, max_wait=0.05)
    yield server
    server.stop()


def _client(live: LiveServer, secret: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return httpx.Client(base_url=live.url, headers=headers, timeout=30)


def _served(live: LiveServer) -> dict[tuple[str, str], Role]:
    out = {}
    for route in live.app.routes:
        extra = (route.openapi_extra or {}) if isinstance(route, APIRoute) else {}
        if ROLE_KEY in extra:
            assert isinstance(route, APIRoute)
            path = route.path.removeprefix(API) if route.path.startswith(API) else route.path
            for method in route.methods:
                out[(method, path)] = Role(extra[ROLE_KEY])
    return out


def test_the_matrix_covers_every_route_and_matches_what_is_served(live: LiveServer) -> None:
    assert _served(live) == {**MATRIX, **OUTSIDE_API}


def test_every_route_admits_exactly_the_roles_the_matrix_gives_it(
    live: LiveServer, store: SqlStore
) -> None:
    secrets = {role: store.create_token(f"t-{role.value}", role)[1] for role in ROLES}
    clients = {role: _client(live, secrets[role]) for role in ROLES}
    anonymous = _client(live, None)
    checked = 0
    try:
        for (method, path), needed in {**MATRIX, **OUTSIDE_API}.items():
            url = re.sub(r"\{[^}]+\}", "x", path if path in ("/metrics",) else API + path)
            # An empty JSON body and harmless query values: past authorization, the answer is
            # a validation error or not-found, never a change.
            params = {"key": "k", "now": 1.0, "pool": "gpu"}
            got = anonymous.request(method, url, json={}, params=params)
            assert got.status_code == 401, (method, path, got.text)
            for role in ROLES:
                got = clients[role].request(method, url, json={}, params=params)
                if role.allows(needed):
                    assert got.status_code not in (401, 403, 500), (method, path, role, got.text)
                else:
                    assert got.status_code == 403, (method, path, role, got.text)
                    assert needed.value in got.json()["detail"], got.text
                checked += 1
    finally:
        for c in [*clients.values(), anonymous]:
            c.close()
    assert checked == len(ROLES) * (len(MATRIX) + len(OUTSIDE_API))


# -- within a role ---------------------------------------------------------------------------


def _worker(pool: str) -> Worker:
    return Worker(id=new_id(), name=f"w-{pool}", pool=pool, capacity={"cpu": 1.0})


def _register(client: httpx.Client, worker: Worker) -> httpx.Response:
    return client.post(f"{API}/workers", json={"worker": encode(worker)})


def _queued_task(store: SqlStore, pool: str) -> TaskRun:
    run = FlowRun(id=new_id(), flow="f", state=State.RUNNING, created_at=time.time())
    task = TaskRun(
        id=new_id(),
        flow_run_id=run.id,
        task="t",
        key=f"t:{new_id()}",
        state=State.PENDING,
        created_at=time.time(),
        pool=pool,
        queued_at=time.time(),
    )
    store.apply([InsertFlowRun(run), InsertTaskRun(task)])
    return task


def test_a_pool_scoped_runner_serves_and_claims_only_its_pools(
    live: LiveServer, store: SqlStore
) -> None:
    gpu_box = store.create_token("gpu-box", Role.RUNNER, pools=["gpu"])[1]
    cpu_task = _queued_task(store, "cpu")
    with _client(live, gpu_box) as client:
        refused = _register(client, _worker("cpu"))
        assert refused.status_code == 403 and "limited to: gpu" in refused.text
        mine = _worker("gpu")
        assert _register(client, mine).status_code == 204
        claim = {"pool": "cpu", "worker": mine.name, "free": {"cpu": 1.0}}
        got = client.post(f"{API}/claims", json=claim)
        assert got.status_code == 403 and "claim from pool 'cpu'" in got.text
        assert store.get_task_run(cpu_task.id).state is State.PENDING  # still queued
        claim["pool"] = "gpu"
        assert client.post(f"{API}/claims", json=claim).json() == []


def test_only_the_token_that_registered_a_worker_acts_for_it_and_its_leases(
    live: LiveServer, store: SqlStore
) -> None:
    token_a, box_a = store.create_token("box-a", Role.RUNNER)
    token_b, box_b = store.create_token("box-b", Role.RUNNER)
    task = _queued_task(store, "cpu")
    worker_a = _worker("cpu")
    worker_a.token_id = token_b.id  # a body naming another token is overruled
    with _client(live, box_a) as a, _client(live, box_b) as b:
        assert _register(a, worker_a).status_code == 204
        [row] = store.list_workers("cpu")
        assert row.id == worker_a.id and row.token_id == token_a.id
        # Claims name the worker: B may neither claim in A's worker's name nor take the name.
        claim = {"pool": "cpu", "worker": worker_a.name, "free": {"cpu": 1.0}}
        stolen = b.post(f"{API}/claims", json=claim)
        assert stolen.status_code == 403 and "register it with this token" in stolen.text
        twin = Worker(id=new_id(), name=worker_a.name, pool="cpu", capacity={"cpu": 1.0})
        taken = _register(b, twin)
        assert taken.status_code == 409 and "is taken by another token" in taken.text
        assert b.post(f"{API}/claims", json=claim).status_code == 403
        [claimed] = a.post(f"{API}/claims", json=claim).json()
        assert claimed["id"] == task.id
        attempt = claimed["attempts"]
        beat = {"held": {task.id: attempt}, "lease_seconds": 30, "used": {}}
        assert b.post(f"{API}/workers/{worker_a.id}/heartbeat", json=beat).status_code == 403
        assert (
            b.put(f"{API}/workers/{worker_a.id}/state", json={"state": "offline"}).status_code
            == 403
        )
        finish = {"attempt": attempt, "state": "COMPLETED", "values": {"result": {"v": "forged"}}}
        forged = b.post(f"{API}/task-runs/{task.id}/finish", json=finish)
        assert forged.status_code == 403 and "holds its lease" in forged.text
        many = {"finishes": [{**finish, "task_run_id": task.id}]}
        forged = b.post(f"{API}/task-runs/finish", json=many)
        assert forged.status_code == 403 and "holds its lease" in forged.text
        op = {
            "op": "update_task_run",
            "id": task.id,
            "state": "COMPLETED",
            "at": time.time(),
            "values": {"result": {"v": "forged"}},
        }
        forged = b.post(f"{API}/ops", json={"ops": [op]})
        assert forged.status_code == 403 and "holds its lease" in forged.text
        # No one sets a run's worker or lease through a batch: only a claim does.
        op = {**op, "state": "RUNNING", "values": {"worker": "someone"}}
        assert b.post(f"{API}/ops", json={"ops": [op]}).status_code == 422
        assert store.get_task_run(task.id).state is State.RUNNING
        # The lease holder finishes its run.
        finish["values"] = {"result": {"v": 42}}
        assert a.post(f"{API}/task-runs/{task.id}/finish", json=finish).json() == {"changed": True}
        # A stale attempt (here: the same one again) is refused in a batch too, item by item.
        again = a.post(f"{API}/task-runs/finish", json=many)
        assert again.json() == {"changed": [False]}
        done = store.get_task_run(task.id)
        assert done.state is State.COMPLETED and done.result == {"v": 42}


def test_an_operator_cancels_and_queues_stopped_runs_but_changes_nothing_else(
    live: LiveServer, store: SqlStore
) -> None:
    operator = store.create_token("person", Role.OPERATOR)[1]
    running = FlowRun(id=new_id(), flow="f", state=State.RUNNING, created_at=time.time())
    failed = FlowRun(id=new_id(), flow="f", state=State.RUNNING, created_at=time.time())
    failed.pool = "cpu"
    store.apply([InsertFlowRun(running), InsertFlowRun(failed)])
    store.transition_flow_run(failed.id, State.FAILED, allowed_from=[State.RUNNING])
    with _client(live, operator) as client:
        forge = {"state": "COMPLETED", "allowed_from": ["RUNNING"], "values": {}}
        got = client.post(f"{API}/flow-runs/{running.id}/transition", json=forge)
        assert got.status_code == 403 and "may only cancel" in got.text
        # Cancelling is no way to give a run code or a pool of one's choosing.
        for values in ({"source": "/elsewhere/evil.py:f"}, {"pool": "gpu"}, {"parameters": {}}):
            sneak = {"state": "CANCELLED", "allowed_from": ["RUNNING"], "values": values}
            got = client.post(f"{API}/flow-runs/{running.id}/transition", json=sneak)
            assert got.status_code == 403 and "may only cancel" in got.text, values
        elsewhere = {"pool": "gpu", "allowed_from": ["FAILED"]}
        got = client.post(f"{API}/flow-runs/{failed.id}/queue", json=elsewhere)
        assert got.status_code == 403 and "for their own pool (cpu)" in got.text
        yank = {"pool": "cpu", "allowed_from": ["RUNNING"]}
        got = client.post(f"{API}/flow-runs/{running.id}/queue", json=yank)
        assert got.status_code == 403 and "paused, failed, cancelled or crashed" in got.text
        assert store.get_flow_run(running.id).state is State.RUNNING
        retry = {"pool": "cpu", "allowed_from": ["FAILED"]}
        assert client.post(f"{API}/flow-runs/{failed.id}/queue", json=retry).json() == {
            "changed": True
        }
        cancel = {"state": "CANCELLED", "allowed_from": ["RUNNING"], "values": {}}
        got = client.post(f"{API}/flow-runs/{running.id}/transition", json=cancel)
        assert got.json() == {"changed": True}
    assert store.get_flow_run(running.id).state is State.CANCELLED
    assert store.get_flow_run(failed.id).state is State.PENDING


def test_a_pool_scoped_runner_registers_code_and_starts_work_only_in_its_pools(
    live: LiveServer, store: SqlStore
) -> None:
    from legato.models import Deployment

    store.put_deployment(Deployment("gpu-job", "f", "/lab/f.py:f", "gpu", created_at=1.0))
    cpu_box = store.create_token("cpu-box", Role.RUNNER, pools=["cpu"])[1]
    with _client(live, cpu_box) as client:
        dep = {"name": "gpu-job", "flow": "f", "source": "/x.py:f", "pool": "cpu"}
        got = client.put(f"{API}/deployments/gpu-job", json={"deployment": dep})
        assert got.status_code == 403 and "change deployments of pool 'gpu'" in got.text
        assert client.delete(f"{API}/deployments/gpu-job").status_code == 403
        dep = {**dep, "name": "mine", "pool": "gpu"}
        got = client.put(f"{API}/deployments/mine", json={"deployment": dep})
        assert got.status_code == 403 and "deploy to pool 'gpu'" in got.text
        run = FlowRun(id=new_id(), flow="f", state=State.PENDING, created_at=time.time())
        run.pool = "gpu"
        got = client.post(
            f"{API}/ops", json={"ops": [{"op": "insert_flow_run", "run": encode(run)}]}
        )
        assert got.status_code == 403 and "start flow runs in pool 'gpu'" in got.text
        run.pool = "cpu"
        task = TaskRun(
            id=new_id(),
            flow_run_id=run.id,
            task="t",
            key="t:0",
            state=State.PENDING,
            created_at=time.time(),
            pool="gpu",
        )
        ops = [
            {"op": "insert_flow_run", "run": encode(run)},
            {"op": "insert_task_run", "run": encode(task)},
        ]
        got = client.post(f"{API}/ops", json={"ops": ops})
        assert got.status_code == 403 and "queue tasks for pool 'gpu'" in got.text
        assert client.post(f"{API}/ops", json={"ops": ops[:1]}).status_code == 204
    assert store.get_deployment("gpu-job").source == "/lab/f.py:f"  # type: ignore[union-attr]


def test_a_runner_cannot_expire_leases_early_but_may_cancel_a_task_another_holds(
    live: LiveServer, store: SqlStore
) -> None:
    box_a = store.create_token("box-a", Role.RUNNER)[1]
    flow_process = store.create_token("member", Role.RUNNER)[1]
    task = _queued_task(store, "cpu")
    worker = _worker("cpu")
    with _client(live, box_a) as a, _client(live, flow_process) as member:
        assert _register(a, worker).status_code == 204
        claim = {"pool": "cpu", "worker": worker.name, "free": {"cpu": 1.0}}
        assert [t["id"] for t in a.post(f"{API}/claims", json=claim).json()] == [task.id]
        # "now" far ahead would expire every lease in every pool: the server's clock counts.
        far = {"now": 250_000_000_000.0}
        assert member.post(f"{API}/task-runs/requeue-expired", json=far).json() == []
        assert member.post(f"{API}/flow-runs/requeue-expired", json=far).json() == {"ids": []}
        assert store.get_task_run(task.id).state is State.RUNNING
        # The flow that queued the task cancels it although another token's worker holds it
        # (a cancel that also sets a result is a write like any other: the holder's only).
        cancel = {"op": "update_task_run", "id": task.id, "state": "CANCELLED", "at": time.time()}
        forged = {**cancel, "values": {"result": {"v": 1}}}
        assert member.post(f"{API}/ops", json={"ops": [forged]}).status_code == 403
        assert member.post(f"{API}/ops", json={"ops": [cancel]}).status_code == 204
    assert store.get_task_run(task.id).state is State.CANCELLED


def test_an_expired_token_is_refused_even_while_remembered(
    live: LiveServer, store: SqlStore
) -> None:
    expires_at = time.time() + 1.0
    secret = store.create_token("short", Role.VIEWER, expires_at=expires_at)[1]
    with _client(live, secret) as client:
        deadline = time.monotonic() + 60
        while True:
            asked = time.time()
            got = client.get(f"{API}/flow-runs")
            if got.status_code == 401:
                break
            # Admitted: only while the token had not expired when the answer came back.
            assert got.status_code == 200 and asked < expires_at, got.text
            assert time.monotonic() < deadline, "the token was never refused"
            time.sleep(0.05)
        assert time.time() >= expires_at
        assert "expired" in got.json()["detail"]
    assert store.verify_token(secret) is None


def test_tokens_limited_to_pools_and_with_expiry_are_made_and_listed(
    live: LiveServer, store: SqlStore
) -> None:
    admin = store.create_token("root", Role.ADMIN)[1]
    with _client(live, admin) as client:
        made = client.post(
            f"{API}/tokens",
            json={"name": "gpu-box", "role": "runner", "pools": ["gpu"], "expires_at": 4e9},
        )
        assert made.status_code == 201, made.text
        assert made.json()["token"]["pools"] == ["gpu"]
        listed = {t["name"]: t for t in client.get(f"{API}/tokens").json()}
        assert listed["gpu-box"]["expires_at"] == 4e9
        bad = client.post(f"{API}/tokens", json={"name": "x", "role": "admin", "pools": ["gpu"]})
        assert bad.status_code == 400 and "only runner tokens can be limited" in bad.text
        past = client.post(f"{API}/tokens", json={"name": "x", "role": "viewer", "expires_at": 1.0})
        assert past.status_code == 400 and "must be in the future" in past.text


# -- the operator's CLI over the API -----------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from legato.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
    return int(info.value.code or 0), capsys.readouterr().err


def test_an_operator_retries_resumes_and_answers_from_the_cli_by_queueing_for_workers(
    legato_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    live: LiveServer,
    store: SqlStore,
) -> None:
    from legato.models import Question
    from legato.store import InsertQuestion, UpdateFlowRun
    from legato.testing import replace_runtime

    operator = store.create_token("person", Role.OPERATOR)[1]
    monkeypatch.setenv("LEGATO_API_URL", live.url)
    monkeypatch.setenv("LEGATO_API_TOKEN", operator)
    replace_runtime()
    failed = FlowRun(id=new_id(), flow="f", state=State.RUNNING, created_at=time.time())
    failed.pool = "gpu"
    paused = FlowRun(id=new_id(), flow="f", state=State.RUNNING, created_at=time.time())
    asked = FlowRun(id=new_id(), flow="f", state=State.RUNNING, created_at=time.time())
    question = Question(new_id(), asked.id, "ask:0", "QC?", {"type": "boolean"}, created_at=1.0)
    store.apply(
        [
            InsertFlowRun(failed),
            InsertFlowRun(paused),
            InsertFlowRun(asked),
            UpdateFlowRun(failed.id, State.FAILED, time.time()),
            UpdateFlowRun(paused.id, State.PAUSED, time.time()),
            UpdateFlowRun(asked.id, State.PAUSED, time.time()),
            InsertQuestion(question),
        ]
    )
    code, err = _cli(capsys, "runs", "retry", failed.id)
    assert code == 0 and "queued for pool gpu" in err, err
    code, err = _cli(capsys, "runs", "resume", paused.id)
    assert code == 0 and "queued for pool default" in err, err
    code, err = _cli(capsys, "answer", asked.id, "yes")
    assert code == 0 and "queued for pool default" in err, err
    assert [store.get_flow_run(r.id).state for r in (failed, paused, asked)] == [State.PENDING] * 3
    assert store.get_question(question.id).answer is True
    actions = {(e.actor, e.action, e.target) for e in store.list_audit()}
    assert {
        ("person", "run.retry", failed.id),
        ("person", "run.resume", paused.id),
        ("person", "question.answer", question.id),
    } <= actions
    # A second retry finds nothing to retry, and says so.
    code, err = _cli(capsys, "runs", "retry", failed.id)
    assert code != 0 and "is PENDING: only a" in err, err
