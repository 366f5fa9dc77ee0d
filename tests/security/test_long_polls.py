"""Issue 15, finding 4: one viewer stalled the API.

The attack: 300 concurrent ``POST /api/v1/queues/wait`` (``timeout: 30``) from one viewer
token made ``/health`` take 28.8 s, worker heartbeats included: each long-poll held one of
the server's threads for its whole wait. Waiting for work is a runner's now, but a viewer
still waits for task runs to end (``/task-runs/wait``): the same storm is tried on both.

Now a long-poll is a coroutine waiting on the store's wake-ups, and a token holds at most
LEGATO_MAX_WAITS_PER_TOKEN of them at once: the rest are refused at once with 429 and
``Retry-After``. The server over SQLite is set up as ``legato server start`` sets it up (the
only writer: waits are not cut to a short poll). The storm is sent from a process of its
own, as an attacker's would be (tests/security/storm_client.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from legato.models import Role
from legato.runtime import Runtime
from legato.store import open_store
from legato.store.operations import API
from legato.store.sql import SqlStore
from tests.live_server import LiveServer

STORM = 300  # concurrent long-polls from one viewer token
CAP = 200  # LEGATO_MAX_WAITS_PER_TOKEN for these tests
WAIT = 20.0  # each long-poll's timeout (s)
HEARTBEAT = 6.0  # the worker's LEGATO_HEARTBEAT_SECONDS; its lease is 1.5 times that
LIVENESS = 5.0  # /health must answer within this (s) while the storm waits
LEGATO = (sys.executable, "-m", "legato")
REPO = Path(__file__).resolve().parents[2]  # where `python -m tests...` finds tests/
NOBODY = {"queue:nobody-queues-here": 0, "*": 0}  # versions that do not move


@dataclass
class Served:
    live: LiveServer
    store: SqlStore
    secrets: dict[Role, str]
    worker_secret: str  # the worker's own runner token
    home: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def headers(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[role]}"}


@pytest.fixture
def served(
    configure: Callable[..., Runtime], legato_home: Path, tmp_path: Path
) -> Iterator[Served]:
    configure(max_waits_per_token=CAP)
    store = open_store(f"sqlite:///{tmp_path / 'server.db'}")
    assert isinstance(store, SqlStore)
    store.sole_writer = True  # as `legato server start`: every write goes through it
    secrets = {role: store.create_token(f"t-{role.value}", role)[1] for role in Role}
    worker_secret = store.create_token("storm-box", Role.RUNNER)[1]
    live = LiveServer(store)
    made = Served(live, store, secrets, worker_secret, legato_home)
    try:
        yield made
    finally:
        for proc in made.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
        live.stop()
        store.close()


def start_worker(served: Served, name: str) -> subprocess.Popen[bytes]:
    """A real `legato worker start` on the server, with a runner token of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env |= {
        "LEGATO_HOME": str(served.home),
        "LEGATO_API_URL": served.live.url,
        "LEGATO_API_TOKEN": served.worker_secret,
        "LEGATO_HEARTBEAT_SECONDS": str(HEARTBEAT),
    }
    log = (served.home.parent / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        [*LEGATO, "worker", "start", "--pool", "storm", "--name", name, "--resources", "cpu=1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    served.procs.append(proc)
    deadline = time.monotonic() + 60
    while not [w for w in served.store.list_workers("storm") if w.name == name]:
        assert proc.poll() is None, f"the worker exited: {proc.returncode}"
        assert time.monotonic() < deadline, "the worker did not register"
        time.sleep(0.05)
    return proc


# The long-polls each role may send: (role, route, a body whose wait nothing ends).
STORMS = {
    "viewer-task-runs": (Role.VIEWER, "/task-runs/wait", {"ids": ["never-ends"]}, []),
    "runner-queues": (Role.RUNNER, "/queues/wait", {"seen": NOBODY}, {"woke": False}),
}


@dataclass
class Poll:
    status: int
    took: float  # seconds, as the storm's client measured
    answer: Any
    retry_after: str | None


async def _send_storm(served: Served, role: Role, route: str, body: dict[str, Any]) -> list[Poll]:
    """STORM long-polls at once from a process of their own (tests/security/storm_client.py
    says why), each with ``timeout: WAIT``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.security.storm_client",
        served.live.url,
        served.secrets[role],
        API + route,
        json.dumps(body | {"timeout": WAIT}),
        str(STORM),
        str(WAIT),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, f"the storm's client failed ({proc.returncode})"
    return [Poll(*poll) for poll in json.loads(out)]


async def _probe_health(url: str, until: asyncio.Event) -> list[float]:
    """/health's latency, probed one request after another until ``until`` is set."""
    took: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        while not until.is_set():
            started = time.monotonic()
            assert (await client.get("/health")).status_code == 200
            took.append(time.monotonic() - started)
            await asyncio.sleep(0.2)  # a probe's pace, not a wait for an event
    return took


async def _watch_heartbeats(store: SqlStore, name: str, until: asyncio.Event) -> list[float]:
    """How old the worker's stored heartbeat is, sampled until ``until`` is set."""
    ages: list[float] = []
    while not until.is_set():
        workers = await asyncio.to_thread(store.list_workers, "storm")
        [worker] = [w for w in workers if w.name == name]
        ages.append(time.time() - worker.last_heartbeat)
        await asyncio.sleep(0.2)  # the sampling pace
    return ages


async def _storm(served: Served, worker: str, storm: str) -> dict[str, Any]:
    role, route, body, _ = STORMS[storm]
    done = asyncio.Event()
    health = asyncio.create_task(_probe_health(served.live.url, done))
    beats = asyncio.create_task(_watch_heartbeats(served.store, worker, done))
    try:
        polls = await _send_storm(served, role, route, body)
    finally:
        done.set()
    return {"polls": polls, "health": await health, "ages": await beats}


@pytest.mark.parametrize("storm", sorted(STORMS))
def test_one_token_cannot_stall_the_api(served: Served, storm: str) -> None:
    role, route, body, nothing = STORMS[storm]
    worker = "storm-box"
    start_worker(served, worker)
    seen = asyncio.run(_storm(served, worker, storm))

    refused = [poll for poll in seen["polls"] if poll.status == 429]
    waited = [poll for poll in seen["polls"] if poll.status == 200]
    health, ages = seen["health"], seen["ages"]
    lease = 1.5 * HEARTBEAT
    print(
        f"\n{storm}: {len(refused)} of {STORM} long-polls refused, "
        f"within {max((p.took for p in refused), default=0) * 1000:.0f} ms; "
        f"/health: {len(health)} probes, median {statistics.median(health) * 1000:.1f} ms, "
        f"max {max(health) * 1000:.1f} ms; heartbeat age max {max(ages):.2f} s "
        f"(lease {lease:g} s)"
    )
    assert len(refused) == STORM - CAP and len(waited) == CAP
    # Refused at once: answered long before any wait could have ended, and told when to retry.
    assert max(p.took for p in refused) < WAIT / 2
    assert all(p.retry_after is not None and int(p.retry_after) >= 1 for p in refused)
    assert all("LEGATO_MAX_WAITS_PER_TOKEN" in p.answer["detail"] for p in refused)
    # The admitted ones really waited: nothing moved, so each timed out.
    assert all(p.answer == nothing for p in waited)
    # /health kept answering, and the worker's heartbeat never got older than its lease.
    assert len(health) >= 5 and max(health) < LIVENESS
    assert max(ages) < lease

    # Every slot came back when the waits ended: the same token may wait again.
    again = httpx.post(
        served.live.url + API + route,
        json=body | {"timeout": 0},
        headers=served.headers(role),
        timeout=30,
    )
    assert again.status_code == 200 and again.json() == nothing


def test_one_wait_cannot_watch_more_keys_than_versions_answers(served: Served) -> None:
    # Each key of ``seen`` registers the waiter once: a body's worth of keys is refused.
    seen = {f"queue:p{i}": 0 for i in range(1002)}
    got = httpx.post(
        f"{served.live.url}{API}/queues/wait",
        json={"seen": seen, "timeout": 0},
        headers=served.headers(Role.RUNNER),
        timeout=30,
    )
    assert got.status_code == 422 and "seen" in got.text
