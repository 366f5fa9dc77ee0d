"""Issue 15, finding 2: the server must never import what a deployment names.

The attack: a deployment whose source is any ``.py`` file, started by a webhook, made the
*server process* import (and so run) that file (``build_run`` loaded the flow to check the
parameters), and ``legato run NAME`` loaded it in the caller's process too. Now a deployment
records its flow's parameter JSON schema; every start (webhooks, ``legato run NAME``, the
operators' ``POST /api/v1/deployments/{name}/runs``) checks the parameters against it and
imports nothing. Only a worker of the deployment's pool loads the code. The planted file
writes a marker when it is imported: no marker means nothing imported it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from legato.deployments import deploy
from legato.loader import load_flow
from legato.models import Deployment, Role, State, Trigger
from legato.store import Store, open_store
from legato.store.http import HttpStore
from legato.triggers.webhooks import sign, webhook_config
from tests.live_server import LiveServer

SECRET = "whsec_no-user-code"

PLANTED = """
from pathlib import Path

Path({marker!r}).write_text("imported")

from legato import flow


@flow
def planted(sample: str = "x") -> str:
    return sample
"""

LAB = """
from legato import flow


@flow
def greet(name: str, times: int = 2) -> str:
    return " ".join([f"hello {name}"] * times)
"""


@pytest.fixture
def site(legato_home: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A server over a fresh database, tokens of every role, a planted module (not imported
    by anyone yet) and a real flow file."""
    marker = tmp_path / "marker"
    planted = tmp_path / "planted_module.py"
    planted.write_text(PLANTED.format(marker=str(marker)))
    lab = tmp_path / "lab_flows.py"
    lab.write_text(LAB)
    store = open_store(f"sqlite:///{tmp_path / 'server.db'}")
    server = LiveServer(store)
    tokens = {role: store.create_token(f"t-{role.value}", role)[1] for role in Role}
    try:
        yield {
            "home": legato_home,
            "store": store,
            "server": server,
            "tokens": tokens,
            "marker": marker,
            "planted": planted,
            "lab": lab,
        }
    finally:
        server.stop()
        store.close()


def _client(site: dict[str, Any], role: Role) -> httpx.Client:
    bearer = {"Authorization": f"Bearer {site['tokens'][role]}"}
    return httpx.Client(base_url=site["server"].url + "/api/v1", headers=bearer, timeout=30)


def _planted_deployment(site: dict[str, Any]) -> dict[str, Any]:
    return Deployment(
        name="planted",
        flow="planted",
        source=f"{site['planted']}:planted",
        pool="default",
        created_at=time.time(),
        updated_at=time.time(),
    ).to_json()


def _deploy_greet(site: dict[str, Any], **options: Any) -> Deployment:
    """`legato deploy`'s work, over the API with a runner token."""
    as_runner = HttpStore(site["server"].url, token=site["tokens"][Role.RUNNER])
    try:
        flow = load_flow(f"{site['lab']}:greet")
        return deploy(as_runner, flow, name="greet", pool="default", **options)
    finally:
        as_runner.close()


def _legato(site: dict[str, Any], role: Role, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env.update(
        LEGATO_HOME=str(site["home"]),
        LEGATO_API_URL=site["server"].url,
        LEGATO_API_TOKEN=site["tokens"][role],
        COLUMNS="200",
    )
    return subprocess.run(
        [sys.executable, "-m", "legato", *args], env=env, capture_output=True, text=True, timeout=90
    )


def test_a_planted_module_is_never_imported_by_the_server(site: dict[str, Any]) -> None:
    store: Store = site["store"]
    body = {"deployment": _planted_deployment(site)}
    # An operator may not register code at all.
    with _client(site, Role.OPERATOR) as operator:
        assert operator.put("/deployments/planted", json=body).status_code == 403
    assert store.get_deployment("planted") is None
    # Registered by a runner (who may run code, on workers), then started by a webhook...
    with _client(site, Role.RUNNER) as runner:
        assert runner.put("/deployments/planted", json=body).status_code == 204, "runner"
    store.put_trigger(Trigger("hook", "webhook", "planted", webhook_config(secret=SECRET)))
    raw = json.dumps({"sample": "S-1"}).encode()
    ts = str(int(time.time()))
    headers = {"x-legato-timestamp": ts, "x-legato-signature": sign(SECRET, ts, raw)}
    with httpx.Client(base_url=site["server"].url, timeout=30) as anyone:
        fired = anyone.post("/api/v1/hooks/hook", content=raw, headers=headers)
    assert fired.status_code == 202, fired.text
    assert not site["marker"].exists(), "the server imported the planted module (webhook)"
    # ...and by an operator through the start route and `legato run NAME` over the API.
    with _client(site, Role.OPERATOR) as operator:
        started = operator.post("/deployments/planted/runs", json={"parameters": {}})
    assert started.status_code == 201, started.text
    cli = _legato(site, Role.OPERATOR, "run", "planted", "--no-wait", "--json")
    assert cli.returncode == 0, cli.stderr
    assert not site["marker"].exists(), "the server (or the CLI) imported the planted module"
    assert "planted_module" not in sys.modules
    runs = store.list_flow_runs()
    assert len(runs) == 3
    assert {r.source for r in runs} == {f"{site['planted']}:planted"}  # for a worker to load
    assert {r.state for r in runs} == {State.PENDING}


def test_parameters_are_checked_against_the_recorded_schema(site: dict[str, Any]) -> None:
    store: Store = site["store"]
    dep = _deploy_greet(site, parameters={}, tags=[])
    assert dep.parameter_schema is not None
    recorded = store.get_deployment("greet")
    assert recorded is not None and recorded.parameter_schema == dep.parameter_schema
    assert recorded.parameter_schema["required"] == ["name"]
    with _client(site, Role.OPERATOR) as operator:
        for parameters, named in [
            ({"name": "Ada", "times": "many"}, "times"),
            ({"times": 3}, "name"),
            ({"name": "Ada", "colour": "red"}, "colour"),
            ({"name": {"__legato_stored__": {"ref": "/etc/x", "ser": "pickle"}}}, "name"),
        ]:
            got = operator.post("/deployments/greet/runs", json={"parameters": parameters})
            assert got.status_code == 422, got.text
            assert named in got.text, got.text
        missing = operator.post("/deployments/nope/runs", json={"parameters": {}})
        assert missing.status_code == 404
    with _client(site, Role.VIEWER) as viewer:
        refused = viewer.post("/deployments/greet/runs", json={"parameters": {"name": "A"}})
        assert refused.status_code == 403
    assert store.list_flow_runs() == []  # nothing queued
    # The CLI says which parameter, over the API, and queues nothing either.
    cli = _legato(
        site, Role.OPERATOR, "run", "greet", "-p", "name=Ada", "-p", "times=[1]", "--no-wait"
    )
    assert cli.returncode != 0 and "times" in cli.stderr, cli.stderr
    assert store.list_flow_runs() == []


def test_a_started_run_is_built_from_the_deployment_and_a_worker_completes_it(
    site: dict[str, Any],
) -> None:
    store: Store = site["store"]
    _deploy_greet(site, parameters={"times": 1}, tags=["lab"])
    with _client(site, Role.OPERATOR) as operator:
        # Fields of a run beyond its parameters are refused, not taken from the request.
        sneaky = {"parameters": {"name": "Ada"}, "source": f"{site['planted']}:planted"}
        assert operator.post("/deployments/greet/runs", json=sneaky).status_code == 422
        got = operator.post("/deployments/greet/runs", json={"parameters": {"name": "Ada"}})
    assert got.status_code == 201, got.text
    run = store.get_flow_run(got.json()["id"])
    assert run.source == f"{site['lab']}:greet" and run.deployment == "greet"
    assert (
        run.pool == "default"
        and run.tags == ["lab"]
        and run.parameters
        == {
            "name": "Ada",
            "times": 1,
        }
    )
    (event,) = store.list_audit(action="deployment.start")
    assert event.target == "greet" and event.actor == "t-operator"
    assert event.detail["flow_run_id"] == run.id
    worker = _worker(site)
    try:
        final = _wait_final(store, run.id, worker)
    finally:
        worker.terminate()
        worker.wait(30)
    assert final.state is State.COMPLETED, final
    assert final.result == {"v": "hello Ada"}
    assert not site["marker"].exists()


def _worker(site: dict[str, Any]) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env.update(
        LEGATO_HOME=str(site["home"]),
        LEGATO_API_URL=site["server"].url,
        LEGATO_API_TOKEN=site["tokens"][Role.RUNNER],
        LEGATO_RESULT_STORAGE=str(site["home"] / "results"),
        LEGATO_HEARTBEAT_SECONDS="1",
    )
    args = ("worker", "start", "--pool", "default", "--name", "lab-box", "--grace", "2")
    log = (site["home"].parent / "worker.log").open("ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "legato", *args], env=env, stdout=log,
                                stderr=subprocess.STDOUT)  # fmt: skip
    finally:
        log.close()


def _wait_final(store: Store, run_id: str, worker: subprocess.Popen[bytes]) -> Any:
    """The run once final; fails at once if the worker dies, or after 90 s."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        run = store.get_flow_run(run_id)
        if run.state.is_final:
            return run
        assert worker.poll() is None, "the worker exited"
        time.sleep(0.1)  # polling the run's state itself
    raise AssertionError(f"run {run_id} did not finish: {store.get_flow_run(run_id)}")
