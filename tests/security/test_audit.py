"""The audit log as people meet it: every audited action done through the real HTTP API
leaves exactly one row naming the caller's token; the log is for admins only (API and
page); the CLI on the database records as local:USER; no secret ever lands in a row."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from legato.models import (
    Deployment,
    FlowRun,
    Pool,
    Question,
    Role,
    State,
    Trigger,
    new_id,
    now,
)
from legato.notify.rules import make_rule
from legato.store import InsertFlowRun, InsertQuestion, UpdateFlowRun
from legato.store.http import HttpStore
from legato.store.sql import SqlStore
from legato.triggers.scheduler import make_schedule
from tests.live_server import LiveServer

FLOWS = Path(__file__).parents[1] / "acceptance" / "flows.py"
ACTIVE = [s for s in State if not s.is_final]


@pytest.fixture
def live(server_store: SqlStore) -> Iterator[LiveServer]:
    server = LiveServer(server_store)
    yield server
    server.stop()


@pytest.fixture
def client_for(
    live: LiveServer, secrets_by_role: dict[Role, str]
) -> Iterator[Callable[[Role], HttpStore]]:
    """An HttpStore per role, as the CLI with LEGATO_API_URL would hold."""
    opened: list[HttpStore] = []

    def make(role: Role) -> HttpStore:
        store = HttpStore(live.url, secrets_by_role[role])
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def _run(store: SqlStore, state: State) -> FlowRun:
    run = FlowRun(id=new_id(), flow="etl", state=State.RUNNING, created_at=now())
    ops: list[Any] = [InsertFlowRun(run)]
    if state is not State.RUNNING:
        ops.append(UpdateFlowRun(run.id, state, now()))
    store.apply(ops)
    return run


def _question(store: SqlStore) -> Question:
    run = _run(store, State.RUNNING)
    q = Question(new_id(), run.id, "ask:0", "QC?", {"type": "boolean"}, created_at=now())
    store.apply([UpdateFlowRun(run.id, State.PAUSED, now()), InsertQuestion(q)])
    return q


def _one_new(store: SqlStore, seen: set[int]) -> Any:
    new = [e for e in store.list_audit(limit=1000) if e.id not in seen]
    assert len(new) == 1, [e.to_json() for e in new]
    seen.add(new[0].id)
    return new[0]


def test_each_audited_action_through_the_api_leaves_one_row_naming_the_token(
    server_store: SqlStore,
    client_for: Callable[[Role], HttpStore],
    live: LiveServer,
    secrets_by_role: dict[Role, str],
) -> None:
    op, admin = client_for(Role.OPERATOR), client_for(Role.ADMIN)
    runner = client_for(Role.RUNNER)
    seen: set[int] = set()

    def expect(actor: str, action: str, target: str) -> Any:
        event = _one_new(server_store, seen)
        assert (event.actor, event.action, event.target) == (actor, action, target)
        assert event.role == actor.removeprefix("t-")
        return event

    # Runs: what `legato runs cancel|retry|resume` send: an operator's retry and resume queue
    # the run for its pool's workers; a runner's carries it on in its own process.
    run = _run(server_store, State.RUNNING)
    assert op.transition_flow_run(run.id, State.CANCELLED, allowed_from=ACTIVE)
    expect("t-operator", "run.cancel", run.id)
    assert op.queue_flow_run(run.id, "default", allowed_from=[State.CANCELLED, State.FAILED])
    expect("t-operator", "run.retry", run.id)
    paused = _run(server_store, State.PAUSED)
    assert op.queue_flow_run(paused.id, "default", allowed_from=[State.PAUSED, State.CRASHED])
    expect("t-operator", "run.resume", paused.id)
    failed = _run(server_store, State.FAILED)
    assert runner.transition_flow_run(
        failed.id, State.RUNNING, allowed_from=[State.FAILED], message="retried"
    )
    expect("t-runner", "run.retry", failed.id)
    crashed = _run(server_store, State.CRASHED)
    assert runner.transition_flow_run(
        crashed.id, State.RUNNING, allowed_from=[State.CRASHED], message="resumed"
    )
    expect("t-runner", "run.resume", crashed.id)
    # A process carrying on a run it holds is no person's action.
    assert runner.transition_flow_run(crashed.id, State.RUNNING, allowed_from=[State.RUNNING])
    assert {e.id for e in server_store.list_audit(limit=1000)} == seen

    # Questions: through the answer route, and as `legato answer` over HTTP does.
    q1 = _question(server_store)
    r = httpx.post(
        f"{live.url}/api/v1/questions/{q1.id}/answer",
        json={"value": True},
        headers={"Authorization": f"Bearer {secrets_by_role[Role.OPERATOR]}"},
    )
    assert r.status_code == 200, r.text
    assert expect("t-operator", "question.answer", q1.id).detail["run"] == q1.flow_run_id
    q2 = _question(server_store)
    op.answer_question(q2.id, False, "ana")  # as `legato answer` over HTTP does
    assert expect("t-operator", "question.answer", q2.id).detail["by"] == "ana"

    # What admins and runners manage.
    token, _secret = admin.create_token("ci-bot", Role.VIEWER)
    expect("t-admin", "token.create", token.id)
    assert admin.revoke_token("ci-bot")
    expect("t-admin", "token.revoke", "ci-bot")
    dep = Deployment("nightly", "etl", "/srv/etl.py:etl", "cpu", created_at=now())
    runner.put_deployment(dep)
    expect("t-runner", "deployment.put", "nightly")
    runner.replace_schedules("nightly", [make_schedule("nightly", every=3600)])
    expect("t-runner", "schedule.put", "nightly")
    assert runner.set_schedules_paused("nightly", True) == 1
    expect("t-runner", "schedule.pause", "nightly")
    assert runner.set_schedules_paused("nightly", False) == 1
    expect("t-runner", "schedule.resume", "nightly")
    hook = Trigger("push", "webhook", "nightly", {"auth": "token"}, created_at=now())
    admin.put_trigger(hook)
    expect("t-admin", "trigger.put", "push")
    assert admin.set_trigger_paused("push", True)
    expect("t-admin", "trigger.pause", "push")
    assert admin.set_trigger_paused("push", False)
    expect("t-admin", "trigger.resume", "push")
    assert admin.delete_trigger("push")
    expect("t-admin", "trigger.delete", "push")
    rule = make_rule(["failed"], "slack:#lab", None)
    admin.add_notify_rule(rule)
    expect("t-admin", "rule.add", rule.id)
    assert admin.delete_notify_rule(rule.id)
    expect("t-admin", "rule.delete", rule.id)
    assert runner.delete_deployment("nightly")
    expect("t-runner", "deployment.delete", "nightly")
    admin.put_pool(Pool("gpu", "slurm", {"partition": "a100"}, created_at=now()))
    expect("t-admin", "pool.put", "gpu")
    assert admin.delete_pool("gpu")
    expect("t-admin", "pool.delete", "gpu")
    admin.set_limit("pool:gpu", 2)
    assert expect("t-admin", "limit.set", "pool:gpu").detail == {"limit": 2}
    assert admin.delete_limit("pool:gpu")
    expect("t-admin", "limit.delete", "pool:gpu")

    # A change that changed nothing is no action; reading is none either.
    assert not admin.delete_pool("gpu")
    admin.list_tokens()
    op.list_flow_runs()
    assert {e.id for e in server_store.list_audit(limit=1000)} == seen
    # The admin reads it all back over HTTP, newest first.
    listed = admin.list_audit(limit=1000)
    assert [e.id for e in listed] == sorted(seen, reverse=True)
    assert [e.action for e in admin.list_audit(action="token.")] == [
        "token.revoke",
        "token.create",
    ]


def _login(live: LiveServer, secret: str) -> httpx.Client:
    c = httpx.Client(base_url=live.url, timeout=30)
    nonce = re.search(r'name="nonce" value="([^"]+)"', c.get("/login").text)
    assert nonce is not None
    r = c.post("/login", data={"nonce": nonce.group(1), "token": secret, "next": "/"})
    assert r.status_code == 303, r.text
    return c


def test_only_admins_read_the_log_through_the_api_and_the_dashboard(
    live: LiveServer, secrets_by_role: dict[Role, str], server_store: SqlStore
) -> None:
    run = _run(server_store, State.FAILED)
    for role in (Role.VIEWER, Role.OPERATOR):
        r = httpx.get(
            f"{live.url}/api/v1/audit",
            headers={"Authorization": f"Bearer {secrets_by_role[role]}"},
        )
        assert r.status_code == 403, (role, r.text)
        with closing(_login(live, secrets_by_role[role])) as page:
            home = page.get("/")
            assert home.status_code == 200 and 'href="/audit"' not in home.text
            refused = page.get("/audit")
            assert refused.status_code == 403 and "needs an admin" in refused.text
    assert httpx.get(f"{live.url}/api/v1/audit").status_code == 401

    with closing(_login(live, secrets_by_role[Role.OPERATOR])) as operator:
        csrf = re.search(r'"X-CSRF-Token": "([^"]+)"', operator.get("/").text)
        assert csrf is not None
        r = operator.post(f"/runs/{run.id}/retry", data={"csrf": csrf.group(1)})
        assert r.status_code == 303 and "notice=" in r.headers["location"]
    [event] = server_store.list_audit(action="run.")  # the logins are recorded too
    assert (event.actor, event.role, event.action, event.target) == (
        "t-operator",
        "operator",
        "run.retry",
        run.id,
    )
    assert event.detail["via"] == "dashboard"

    with closing(_login(live, secrets_by_role[Role.ADMIN])) as admin:
        assert 'href="/audit"' in admin.get("/").text
        page = admin.get("/audit", params={"action": "run."})
        assert page.status_code == 200
        assert "run.retry" in page.text and "t-operator" in page.text
        assert "run.retry" not in admin.get("/audit", params={"action": "token."}).text


def test_no_secret_lands_in_the_audit_log(
    client_for: Callable[[Role], HttpStore], server_store: SqlStore, tmp_path: Path
) -> None:
    admin = client_for(Role.ADMIN)
    _token, secret = admin.create_token("deployer", Role.OPERATOR)
    admin.put_deployment(Deployment("nightly", "etl", "/srv/etl.py:etl", "cpu", created_at=now()))
    hook_secret = "whsec_do-not-log-me-0123456789"
    config = {"auth": "hmac", "secret": hook_secret}
    admin.put_trigger(Trigger("push", "webhook", "nightly", config, created_at=now()))
    url_secret = "T000/B000/XXXXsecretpath"
    rule = make_rule(["failed"], f"webhook:https://hooks.example.org/{url_secret}?k=v", None)
    admin.add_notify_rule(rule)
    actions = {e.action for e in server_store.list_audit()}
    assert {"token.create", "trigger.put", "rule.add"} <= actions
    with closing(sqlite3.connect(tmp_path / "server.db")) as conn:
        dump = "\n".join(
            json.dumps(row) for row in conn.execute("SELECT * FROM audit_events").fetchall()
        )
    for hidden in (secret, secret[4:], hook_secret, url_secret):
        assert hidden not in dump
    assert "hooks.example.org" in dump  # the host says where it goes


def test_the_cli_on_the_database_records_an_answer_as_the_local_user(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env.update({"LEGATO_HOME": str(tmp_path / "home"), "COLUMNS": "200"})

    def legato(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "legato", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    paused = legato("run", f"{FLOWS}:approval", "-p", "item=widget")
    assert paused.returncode == 3, paused.stderr
    [question] = json.loads(legato("asks", "ls", "--json").stdout)
    done = legato("answer", question["flow_run_id"], "yes", "--by", "qa-lead")
    assert done.returncode == 0, done.stderr
    listed = legato("audit", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    [event] = json.loads(listed.stdout)
    assert set(event) == {"id", "at", "actor", "role", "action", "target", "detail"}
    assert event["action"] == "question.answer" and event["target"] == question["id"]
    assert event["actor"].startswith("local:") and event["role"] == "local"
    assert event["detail"]["by"] == "qa-lead" and event["at"].endswith("Z")
    table = legato("audit", "ls", "--action", "question.answer")
    assert table.returncode == 0 and "question.answer" in table.stdout
    assert json.loads(legato("audit", "ls", "--json", "--action", "run.").stdout) == []
    assert legato("audit", "ls", "--since", "soon").returncode == 2
