"""Wake-ups go many to one NOTIFY: a transaction finishing hundreds of task runs sends a few
notifications (a JSON list each, under PostgreSQL's payload limit), and a waiter in another
store hears every one of its runs end."""

from __future__ import annotations

import json
import time

import pytest

from legato.models import State
from legato.store import Finish, open_store
from legato.store.notify import PAYLOAD_BYTES, Notifier, PostgresListener, pack, unpack
from tests.store.conftest import _empty_postgres
from tests.store.test_queue_store import queued


def test_keys_are_packed_below_the_payload_limit_and_come_back_whole() -> None:
    keys = [f"run-{i:04d}-" + "x" * 30 for i in range(600)] + ['a "quoted"\npool', "ünï"]
    payloads = pack(keys)
    assert len(payloads) > 1
    assert all(len(p.encode()) <= PAYLOAD_BYTES for p in payloads)
    assert [k for p in payloads for k in unpack(p)] == keys


def test_a_payload_that_is_not_a_list_of_keys_wakes_everyone() -> None:
    """An older process's plain payload (one pool name or id): nobody's wake-up is lost."""
    notifier = Notifier()
    listener = PostgresListener.__new__(PostgresListener)
    listener.notifier = notifier
    seen = notifier.versions(["queue:gpu"])

    class Note:
        channel = "legato_queue"
        payload = "gpu"

    listener._deliver(Note())
    assert notifier.versions(["queue:gpu"]) != seen
    assert unpack(json.dumps({"not": "a list"})) is None


@pytest.mark.postgres
def test_a_waiter_hears_every_run_of_one_big_finish(postgres_database: str) -> None:
    _empty_postgres(postgres_database)
    worker, waiter = open_store(postgres_database), open_store(postgres_database)
    try:
        ids = queued(worker, 300)
        claimed = worker.claim_task_runs("gpu", "w", {"gpu": 300}, limit=300)
        assert len(claimed) == 300
        waiter.queue_versions([])  # its LISTEN connection is up before the finish
        keys = [f"done:{i}" for i in ids]
        seen = waiter.notifier.versions(keys)  # type: ignore[attr-defined]
        accepted = worker.finish_task_runs(
            [Finish(t.id, t.attempts, State.COMPLETED, {"ended_at": 1.0}) for t in claimed]
        )
        assert all(accepted)
        deadline = time.monotonic() + 60
        while True:
            now = waiter.notifier.versions(keys)  # type: ignore[attr-defined]
            if all(now[k] != seen[k] for k in keys):
                break
            assert time.monotonic() < deadline, "some runs' wake-ups never came"
            waiter.notifier.wait(now, timeout=1.0)  # type: ignore[attr-defined]
    finally:
        worker.close()
        waiter.close()
