"""Long-polls as the server serves them (``legato.server.waits``): a commit wakes a waiting
client at once on both dialects; a wait refused for the token's cap (429) is waited out by
HttpStore after Retry-After, without a busy loop, and served once a slot frees; a client that
goes away gives its slot back at once. Real server, real HTTP, real databases."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from legato.models import Role, State
from legato.store import InsertFlowRun, InsertTaskRun, open_store
from legato.store.http import HttpStore
from legato.store.operations import API
from legato.store.sql import SqlStore
from tests.conftest import PostgresServer
from tests.live_server import LiveServer
from tests.store.records import flow_run, task_run

BOUND = 20.0  # s: "at once", on a loaded machine, against waits of 60 s


class Counting(httpx.HTTPTransport):
    """The real transport, noting when each long-poll was sent and how it was answered."""

    def __init__(self) -> None:
        super().__init__()
        self.polls: list[tuple[float, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        sent = time.monotonic()
        response = super().handle_request(request)
        if request.url.path.endswith("/wait"):
            self.polls.append((sent, response.status_code))
        return response


def queue_one(store: SqlStore, pool: str) -> str:
    run = flow_run()
    tr = task_run(run.id, "t:0", pool=pool, queued_at=time.time() - 1)
    store.apply([InsertFlowRun(run), InsertTaskRun(tr)])
    return tr.id


def until(condition: Callable[[], bool], what: str, within: float = BOUND) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        time.sleep(0.01)


class Background:
    """``fn()`` in a thread; ``result()`` joins it."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._got: list[Any] = []
        self.ended_at = 0.0

        def run() -> None:
            self._got.append(fn())
            self.ended_at = time.monotonic()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join(90)
        [got] = self._got
        return got


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server_store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        store = open_store(f"sqlite:///{tmp_path / 'server.db'}")
    else:
        postgres: PostgresServer = request.getfixturevalue("postgres_server")
        store = open_store(postgres.create_database())
    assert isinstance(store, SqlStore)
    store.sole_writer = True  # as `legato server start`
    yield store
    store.close()


def serve(store: SqlStore, cap: int) -> tuple[LiveServer, str]:
    live = LiveServer(store, max_waits_per_token=cap)
    return live, store.create_token("waiter", Role.RUNNER)[1]


def test_a_commit_wakes_waiting_clients_at_once(server_store: SqlStore) -> None:
    live, secret = serve(server_store, cap=8)
    client = HttpStore(live.url, secret)
    try:
        seen = client.queue_versions(["gpu"])
        slots = live.app.state.waits
        token_id = server_store.verify_token(secret).id  # type: ignore[union-attr]
        woke = Background(lambda: client.wait_for_queue(seen, timeout=60))
        until(lambda: slots.held(token_id) == 1, "the wait is held by the server")
        committed = time.monotonic()
        tr_id = queue_one(server_store, "gpu")
        assert woke.result() is True
        queue_latency = woke.ended_at - committed

        [claim] = server_store.claim_task_runs("gpu", "w", {})
        ended = Background(lambda: client.wait_for_task_runs([tr_id], timeout=60))
        until(lambda: slots.held(token_id) == 1, "the wait is held by the server")
        committed = time.monotonic()
        server_store.finish_task_run(tr_id, claim.attempts, State.COMPLETED, {})
        [done] = ended.result()
        assert done.id == tr_id and done.state is State.COMPLETED
        done_latency = ended.ended_at - committed
        print(
            f"\n{server_store.dialect}: woken {queue_latency * 1000:.1f} ms after a queueing "
            f"commit, {done_latency * 1000:.1f} ms after a finishing one"
        )
        assert queue_latency < BOUND and done_latency < BOUND
        until(lambda: slots.held(token_id) == 0, "every slot is given back")
    finally:
        client.close()
        live.stop()


def test_a_refused_wait_is_retried_after_retry_after_and_served_once_a_slot_frees(
    server_store: SqlStore,
) -> None:
    live, secret = serve(server_store, cap=1)
    holder, counting = HttpStore(live.url, secret), Counting()
    refused = HttpStore(live.url, secret, transport=counting)
    try:
        slots = live.app.state.waits
        token_id = server_store.verify_token(secret).id  # type: ignore[union-attr]
        first = Background(lambda: holder.wait_for_queue(holder.queue_versions(["a"]), 60))
        until(lambda: slots.held(token_id) == 1, "the first wait takes the token's one slot")
        second = Background(lambda: refused.wait_for_queue(refused.queue_versions(["b"]), 60))
        until(lambda: len(counting.polls) >= 3, "the second is refused, and asks again")
        queue_one(server_store, "a")  # the first wakes and gives its slot back
        assert first.result() is True
        until(lambda: slots.held(token_id) == 1, "the second is admitted, and waits")
        queue_one(server_store, "b")
        assert second.result() is True
    finally:
        holder.close()
        refused.close()
        live.stop()
    refusals = [sent for sent, status in counting.polls if status == 429]
    assert len(refusals) >= 2 and counting.polls[-1][1] == 200
    # Each retry came no sooner than the Retry-After (1 s) it was told: no busy loop.
    sent = [*refusals, counting.polls[-1][0]]
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) >= 0.99, gaps


def test_a_client_that_goes_away_gives_its_slot_back(server_store: SqlStore) -> None:
    live, secret = serve(server_store, cap=1)
    slots = live.app.state.waits
    token_id = server_store.verify_token(secret).id  # type: ignore[union-attr]
    headers = {"Authorization": f"Bearer {secret}"}
    body = {"seen": {"queue:nobody": 0}, "timeout": 30}

    async def leave_while_waiting() -> None:
        async with httpx.AsyncClient(base_url=live.url, headers=headers, timeout=60) as client:
            waiting = asyncio.ensure_future(client.post(f"{API}/queues/wait", json=body))
            while slots.held(token_id) == 0:
                await asyncio.sleep(0.01)
            waiting.cancel()  # closes the connection mid-wait
            with pytest.raises(asyncio.CancelledError):
                await waiting

    try:
        asyncio.run(leave_while_waiting())
        left = time.monotonic()
        until(lambda: slots.held(token_id) == 0, "the slot is given back")
        assert time.monotonic() - left < BOUND  # long before the wait's 30 s
        again = httpx.post(
            f"{live.url}{API}/queues/wait",
            json=body | {"timeout": 0},
            headers=headers,
            timeout=30,
        )
        assert again.status_code == 200 and again.json() == {"woke": False}
    finally:
        live.stop()
