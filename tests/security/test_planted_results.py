"""Issue 15, finding 1: a result reference planted in a run record must never be loaded.

The attack: an operator token sends ``update_task_run`` through ``POST /api/v1/ops`` with a
result ``{"ref": <any file>, "ser": "pickle"}``; ``LEGATO_ALLOW_PICKLE=false legato runs retry``
then unpickled it (its code ran) and exited 0. Refused now on write (422 naming the field) and
on read (a reference outside the result storage is not read; pickles are not loaded when
pickling is off).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from legato.errors import ResultMissing, SerializationError
from legato.models import Role, State
from legato.results import ResultStorage
from legato.store import UpdateTaskRun, open_store
from legato.store.http import error_text
from legato.store.sql import SqlStore
from tests.live_server import LiveServer

FLOWS = """
import os
from pathlib import Path

from legato import flow, task


@task
def step() -> int:
    if not Path(os.environ["GATE"]).exists():
        raise RuntimeError("not yet")
    return 1


@flow
def planted() -> int:
    return step()
"""


class Plant:
    """Unpickling it runs ``os.mkdir(marker)``: proof that the pickle's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def legato(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    full.update({"LEGATO_HOME": str(home), "COLUMNS": "200", **env})
    return subprocess.run(
        [sys.executable, "-m", "legato", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def site(legato_home: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A failed run of ``planted`` (its task FAILED), a pickle that makes ``marker`` outside
    the result storage, and a server over the same database with an operator token."""
    flows = tmp_path / "flows.py"
    flows.write_text(FLOWS)
    gate, marker = tmp_path / "gate", tmp_path / "marker"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(Plant(marker)))
    first = legato(legato_home, "run", f"{flows}:planted", GATE=str(gate))
    assert first.returncode == 1, first.stderr
    store = open_store(f"sqlite:///{legato_home / 'legato.db'}")
    assert isinstance(store, SqlStore)
    server = LiveServer(store)  # its result storage: LEGATO_HOME/results, as for the CLI
    operator = store.create_token("ops", Role.OPERATOR)[1]
    runner = store.create_token("box", Role.RUNNER)[1]
    (run,) = store.list_flow_runs()
    (tr,) = store.get_task_runs(run.id)
    assert tr.state is State.FAILED
    try:
        yield {
            "home": legato_home,
            "store": store,
            "server": server,
            "operator": operator,
            "runner": runner,
            "run": run,
            "task_run": tr,
            "gate": gate,
            "marker": marker,
            "evil": evil,
        }
    finally:
        server.stop()
        store.close()


def planted_ops(task_run_id: str, ref: str) -> list[dict[str, Any]]:
    t = time.time()
    return [
        {"op": "update_task_run", "id": task_run_id, "state": "RUNNING", "at": t},
        {
            "op": "update_task_run",
            "id": task_run_id,
            "state": "COMPLETED",
            "at": t,
            "values": {"result": {"ref": ref, "ser": "pickle"}, "ended_at": t},
        },
    ]


def test_no_token_can_plant_a_result_ref_through_the_api(site: dict[str, Any]) -> None:
    server: LiveServer = site["server"]
    ops = planted_ops(site["task_run"].id, str(site["evil"]))
    # An operator (the finding's attacker) may not send run records at all now.
    bearer = {"Authorization": f"Bearer {site['operator']}"}
    got = httpx.post(f"{server.url}/api/v1/ops", json={"ops": ops}, headers=bearer, timeout=30)
    assert got.status_code == 403 and "needs runner" in got.text, got.text
    # A runner may, but not a reference outside the result storage.
    bearer = {"Authorization": f"Bearer {site['runner']}"}
    with httpx.Client(base_url=server.url, headers=bearer, timeout=30) as client:
        got = client.post("/api/v1/ops", json={"ops": ops})
        assert got.status_code == 422, got.text
        assert "body.ops[1].values.result.ref" in error_text(got.json())
        assert "outside the result storage" in error_text(got.json())
        # A URL or a path climbing out of the storage is refused the same way.
        for ref in (
            "http://attacker.example/evil.pkl",
            f"{site['home'] / 'results'}/../../evil.pkl",
            f"{site['home'] / 'results'}/sub/evil.pkl",
        ):
            ops = planted_ops(site["task_run"].id, ref)
            assert client.post("/api/v1/ops", json={"ops": ops}).status_code == 422, ref
        # So is a cache entry's.
        cache = {
            "op": "put_cache",
            "key": "k",
            "task": "step",
            "task_run_id": site["task_run"].id,
            "result": {"ref": str(site["evil"]), "ser": "pickle"},
            "created_at": time.time(),
            "expires_at": None,
        }
        got = client.post("/api/v1/ops", json={"ops": [cache]})
        assert got.status_code == 422 and "body.ops[0].result.ref" in error_text(got.json())
    assert site["store"].get_task_run(site["task_run"].id).state is State.FAILED  # nothing kept
    # The retry runs the task again (still failing: the gate is shut); nothing was unpickled.
    retry = legato(
        site["home"], "runs", "retry", site["run"].id, GATE=str(site["gate"]),
        LEGATO_ALLOW_PICKLE="false",
    )  # fmt: skip
    assert retry.returncode == 1, retry.stderr
    assert not site["marker"].exists(), "the planted pickle ran"


def test_a_planted_ref_in_the_database_is_refused_on_read(site: dict[str, Any]) -> None:
    """Written straight into the store (no server to check it): the retry does not read it,
    says why, and runs the call again, so nothing is lost."""
    store: SqlStore = site["store"]
    tr = site["task_run"]
    t = time.time()
    stored = {"ref": str(site["evil"]), "ser": "pickle"}
    store.apply(
        [
            UpdateTaskRun(tr.id, State.RUNNING, t),
            UpdateTaskRun(tr.id, State.COMPLETED, t, {"result": stored, "ended_at": t}),
        ]
    )
    site["gate"].touch()
    retry = legato(site["home"], "runs", "retry", site["run"].id, "--json", GATE=str(site["gate"]))
    assert not site["marker"].exists(), "the planted pickle ran"
    assert retry.returncode == 0, retry.stderr
    logs = legato(site["home"], "runs", "logs", site["run"].id)
    assert str(site["evil"]) in logs.stdout and "outside the result storage" in logs.stdout
    assert store.get_flow_run(site["run"].id).result == {"v": 1}  # the real value, run again


def test_pickles_are_not_loaded_with_pickling_off(tmp_path: Path) -> None:
    """Even a pickle inside the result storage (written earlier, or by whoever can write
    there) is not loaded when LEGATO_ALLOW_PICKLE=false: the error names the setting."""
    root = tmp_path / "results"
    root.mkdir()
    marker = tmp_path / "marker"
    (root / "planted.pkl").write_bytes(pickle.dumps(Plant(marker)))
    storage = ResultStorage(str(root), allow_pickle=False)
    stored = {"ref": f"{root}/planted.pkl", "ser": "pickle"}
    with pytest.raises(SerializationError, match="LEGATO_ALLOW_PICKLE=false") as info:
        storage.decode(stored, what="result of task run 'step:0'")
    assert "result of task run 'step:0'" in str(info.value)
    assert not marker.exists(), "the pickle ran with pickling off"


@pytest.mark.parametrize(
    "stored",
    [
        {"ref": "/etc/passwd", "ser": "json"},
        {"ref": "RESULTS/../outside.pkl", "ser": "pickle"},
        {"ref": "memory://elsewhere/x.pkl", "ser": "pickle"},
        {"ref": "RESULTS/x.pkl", "ser": "exec"},  # an unknown serializer was unpickled
    ],
)
def test_decode_reads_only_result_files_of_its_own_storage(
    tmp_path: Path, stored: dict[str, str]
) -> None:
    root = tmp_path / "results"
    root.mkdir()
    marker = tmp_path / "marker"
    data = pickle.dumps(Plant(marker))
    (root / "x.pkl").write_bytes(data)
    (tmp_path / "outside.pkl").write_bytes(data)
    stored = {k: v.replace("RESULTS", str(root)) for k, v in stored.items()}
    storage = ResultStorage(str(root))
    with pytest.raises((ResultMissing, SerializationError)) as info:
        storage.decode(stored)
    message = str(info.value)
    if stored["ser"] == "exec":
        assert "ser must be one of json, pickle" in message
    else:
        assert "refused" in message and stored["ref"] in message
    assert not marker.exists()
