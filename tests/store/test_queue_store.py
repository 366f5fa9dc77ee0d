"""The queue store's contract (``QueueStore``: what workers do): claims, leases, fencing,
heartbeats, re-queues, wake-ups, workers, engine job ids. The same tests on every backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from legato.models import State, TaskRun, Worker, new_id
from legato.store import InsertFlowRun, InsertTaskRun, Store, UpdateTaskRun
from tests.store.records import flow_run, states, task_run


def queued(store: Store, n: int, pool: str = "gpu", **values: object) -> list[str]:
    """A flow run with ``n`` task runs queued for ``pool``; returns their ids."""
    run = flow_run()
    now = time.time()
    trs = [
        task_run(
            run.id, f"t:{i}", pool=pool, queued_at=now - 1 + i * 1e-3, max_attempts=2, **values
        )
        for i in range(n)
    ]
    store.apply([InsertFlowRun(run), *[InsertTaskRun(t) for t in trs]])
    return [t.id for t in trs]


def test_a_claim_takes_queued_runs_oldest_first_and_leases_them(store: Store) -> None:
    ids = queued(store, 3)
    [first] = store.claim_task_runs("gpu", "w1", {"gpu": 4}, lease_seconds=30)
    assert first.id == ids[0]
    assert first.state is State.RUNNING and first.worker == "w1" and first.attempts == 1
    assert first.lease_expires_at is not None and first.lease_expires_at > time.time() + 20
    rest = store.claim_task_runs("gpu", "w2", {"gpu": 4}, limit=5)
    assert [t.id for t in rest] == ids[1:]
    assert store.claim_task_runs("gpu", "w3", {"gpu": 4}, limit=5) == []
    assert states(store, first.id)[-1] is State.RUNNING


def test_claims_respect_pool_readiness_and_resources(store: Store) -> None:
    run = flow_run()
    now = time.time()
    store.apply(
        [
            InsertFlowRun(run),
            InsertTaskRun(
                task_run(run.id, "big:0", pool="gpu", queued_at=now - 1, resources={"gpu": 2})
            ),
            InsertTaskRun(
                task_run(run.id, "small:0", pool="gpu", queued_at=now - 1, resources={"gpu": 1})
            ),
            InsertTaskRun(task_run(run.id, "later:0", pool="gpu", queued_at=now + 3600)),
            InsertTaskRun(task_run(run.id, "unready:0", pool="gpu")),  # waits on dependencies
            InsertTaskRun(task_run(run.id, "cpu:0", pool="cpu", queued_at=now - 1)),
        ]
    )
    claimed = store.claim_task_runs("gpu", "w", {"gpu": 1}, limit=10)
    assert [t.key for t in claimed] == ["small:0"]
    assert store.claim_task_runs("gpu", "w", {"gpu": 2}, limit=10)[0].key == "big:0"
    assert store.claim_task_runs("gpu", "w", {"gpu": 8}, limit=10) == []
    assert [t.key for t in store.claim_task_runs("cpu", "w", {}, limit=10)] == ["cpu:0"]


def test_concurrent_claimers_never_share_a_run(store_factory: Callable[..., Store]) -> None:
    ids = set(queued(store_factory(), 60))
    got: list[list[str]] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        store = store_factory()
        mine = []
        while True:
            batch = store.claim_task_runs("gpu", name, {"gpu": 100}, limit=3)
            if not batch:
                break
            mine.extend(t.id for t in batch)
        with lock:
            got.append(mine)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [i for mine in got for i in mine]
    assert len(flat) == len(set(flat)) == 60 and set(flat) == ids


def test_a_result_is_accepted_only_from_the_attempt_holding_the_run(store: Store) -> None:
    [run_id] = queued(store, 1)
    [claim] = store.claim_task_runs("gpu", "w1", {"gpu": 1})
    assert not store.finish_task_run(run_id, claim.attempts + 1, State.COMPLETED, {})
    assert store.finish_task_run(
        run_id, claim.attempts, State.COMPLETED, {"result": {"v": 42}, "ended_at": time.time()}
    )
    done = store.get_task_run(run_id)
    assert done.state is State.COMPLETED and done.result == {"v": 42}
    assert done.lease_expires_at is None
    # A second, late result from the same attempt is refused too.
    assert not store.finish_task_run(run_id, claim.attempts, State.FAILED, {"error": "late"})
    assert store.get_task_run(run_id).state is State.COMPLETED


def test_an_expired_lease_requeues_then_crashes_when_attempts_run_out(store: Store) -> None:
    [run_id] = queued(store, 1)  # max_attempts=2
    [first] = store.claim_task_runs("gpu", "w1", {"gpu": 1}, lease_seconds=0.05)
    time.sleep(0.1)
    [again] = store.requeue_expired()
    assert again.id == run_id and again.state is State.PENDING and again.worker is None
    assert store.requeue_expired() == []
    [second] = store.claim_task_runs("gpu", "w2", {"gpu": 1}, lease_seconds=0.05)
    assert second.attempts == 2 and second.worker == "w2"
    # The dead first attempt's result is refused: it lost the run.
    assert not store.finish_task_run(run_id, first.attempts, State.COMPLETED, {})
    time.sleep(0.1)
    [final] = store.requeue_expired()
    assert final.state is State.CRASHED and "lease expired" in (final.error or "")
    assert states(store, run_id) == [
        State.PENDING,
        State.RUNNING,
        State.CRASHED,
        State.PENDING,
        State.RUNNING,
        State.CRASHED,
    ]


def test_heartbeats_renew_leases_and_report_lost_runs(store: Store) -> None:
    a, b = queued(store, 2)
    store.register_worker(Worker(new_id(), "w1", "gpu", {"gpu": 2}, started_at=1, last_heartbeat=1))
    [worker] = store.list_workers("gpu")
    claims = store.claim_task_runs("gpu", "w1", {"gpu": 2}, limit=2, lease_seconds=0.2)
    held = {t.id: t.attempts for t in claims}
    # Someone cancels b (it is no longer RUNNING): the worker is told to let it go.
    store.apply([UpdateTaskRun(b, State.CANCELLED, time.time())])
    lost = store.heartbeat(worker.id, held, lease_seconds=30, used={"gpu": 2})
    assert lost == [b]
    assert store.get_task_run(a).lease_expires_at > time.time() + 20  # type: ignore[operator]
    time.sleep(0.3)
    assert store.requeue_expired() == []  # a was renewed
    [seen] = store.list_workers("gpu")
    assert seen.used == {"gpu": 2} and seen.last_heartbeat > 1


def test_handing_a_run_back_queues_it_again(store: Store) -> None:
    [run_id] = queued(store, 1)
    [claim] = store.claim_task_runs("gpu", "w1", {"gpu": 1})
    assert store.finish_task_run(run_id, claim.attempts, State.PENDING, {}, "worker draining")
    back = store.get_task_run(run_id)
    assert back.state is State.PENDING and back.queued_at is not None and back.worker is None
    assert store.claim_task_runs("gpu", "w2", {"gpu": 1})[0].id == run_id


def test_a_waiting_claimer_is_woken_when_work_is_queued(
    store_factory: Callable[..., Store],
) -> None:
    waiter, producer = store_factory(), store_factory()
    seen = waiter.queue_versions(["gpu"])
    assert waiter.claim_task_runs("gpu", "w", {"gpu": 1}) == []
    woke: list[float] = []

    def wait() -> None:
        t0 = time.monotonic()
        while not waiter.claim_task_runs("gpu", "w", {"gpu": 1}):
            waiter.wait_for_queue(seen, timeout=5)
        woke.append(time.monotonic() - t0)

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.2)
    queued(producer, 1)
    thread.join(10)
    assert woke, "the claimer never got the queued run"


def test_waiting_for_task_runs_returns_when_they_end(store_factory: Callable[..., Store]) -> None:
    waiter, worker = store_factory(), store_factory()
    [run_id] = queued(worker, 1)
    assert waiter.wait_for_task_runs([run_id], timeout=0.1) == []
    [claim] = worker.claim_task_runs("gpu", "w", {"gpu": 1})
    results: list[list[object]] = []
    thread = threading.Thread(
        target=lambda: results.append(list(waiter.wait_for_task_runs([run_id], timeout=10)))
    )
    thread.start()
    time.sleep(0.2)
    worker.finish_task_run(run_id, claim.attempts, State.COMPLETED, {"result": {"v": 1}})
    thread.join(15)
    [[done]] = results
    assert done.state is State.COMPLETED  # type: ignore[attr-defined]


def test_queue_depths_and_offline_workers(store: Store) -> None:
    queued(store, 3, pool="gpu")
    queued(store, 1, pool="io")
    assert store.queue_depths() == {"gpu": 3, "io": 1}
    w = Worker(new_id(), "w1", "io", {"cpu": 2}, started_at=1, last_heartbeat=1)
    store.register_worker(w)
    store.set_worker_state(w.id, "offline")
    assert store.list_workers() == []
    assert [x.state for x in store.list_workers(include_offline=True)] == ["offline"]


def test_concurrency_limits_hold_across_claimers(store: Store) -> None:
    run = flow_run(flow="lab")
    now = time.time()
    trs = [
        task_run(
            run.id, f"t:{i}", pool="gpu", queued_at=now - 1, tags=["gpu-heavy"] if i < 4 else []
        )
        for i in range(6)
    ]
    store.apply([InsertFlowRun(run), *[InsertTaskRun(t) for t in trs]])
    store.set_limit("tag:gpu-heavy", 2)
    assert store.list_limits() == {"tag:gpu-heavy": 2}
    first = store.claim_task_runs("gpu", "w1", {}, limit=10)
    heavy = [t for t in first if "gpu-heavy" in t.tags]
    assert len(heavy) == 2 and len(first) == 4  # two heavy plus the two untagged
    assert store.claim_task_runs("gpu", "w2", {}, limit=10) == []
    store.finish_task_run(heavy[0].id, heavy[0].attempts, State.COMPLETED, {})
    [next_one] = store.claim_task_runs("gpu", "w2", {}, limit=10)
    assert "gpu-heavy" in next_one.tags
    store.set_limit("pool:gpu", 3)
    assert store.claim_task_runs("gpu", "w3", {}, limit=10) == []  # 3 running in the pool
    assert store.delete_limit("pool:gpu") and not store.delete_limit("pool:gpu")


def test_a_flow_limit_counts_running_task_runs_of_that_flow(store: Store) -> None:
    ids = queued(store, 3)
    store.set_limit("flow:etl", 1)
    assert len(store.claim_task_runs("gpu", "w", {"gpu": 9}, limit=3)) == 1
    store.delete_limit("flow:etl")
    assert len(store.claim_task_runs("gpu", "w", {"gpu": 9}, limit=3)) == 2
    assert len(ids) == 3


def test_flow_runs_are_claimed_leased_and_requeued(store: Store) -> None:
    from legato.models import Deployment

    now = time.time()
    run = flow_run(state=State.PENDING, pool="flows", queued_at=now - 1, started_at=None)
    store.apply([InsertFlowRun(run)])
    assert store.queue_depths() == {"flows": 1}
    [claimed] = store.claim_flow_runs("flows", "w1", lease_seconds=0.05)
    assert claimed.id == run.id and claimed.state is State.RUNNING
    assert claimed.worker == "w1" and claimed.attempts == 1
    assert store.claim_flow_runs("flows", "w2") == []
    time.sleep(0.1)
    assert store.requeue_expired_flow_runs() == [run.id]
    [again] = store.claim_flow_runs("flows", "w2")
    assert again.attempts == 2
    store.transition_flow_run(run.id, State.PAUSED, allowed_from=[State.RUNNING])
    assert store.queue_flow_run(run.id, "flows", allowed_from=[State.PAUSED])
    assert not store.queue_flow_run(run.id, "flows", allowed_from=[State.PAUSED])
    assert store.get_flow_run(run.id).state is State.PENDING

    dep = Deployment("nightly", "etl", "pipelines.etl:etl", "flows", {"n": 3}, ["x"], "abc", 1, 1)
    store.put_deployment(dep)
    store.put_deployment(
        Deployment("nightly", "etl", "pipelines.etl:etl", "gpu", {}, [], None, 5, 5)
    )
    [got] = store.list_deployments()
    assert got.pool == "gpu" and got.created_at == 1 and store.get_deployment("nope") is None
    assert store.delete_deployment("nightly") and store.list_deployments() == []


def test_a_batch_sent_again_with_its_request_id_is_applied_once(store: Store) -> None:
    run = flow_run()
    batch = [InsertFlowRun(run), InsertTaskRun(task_run(run.id, "t:0"))]
    store.apply(batch, request_id="req-1")
    store.apply(batch, request_id="req-1")  # the answer was lost; the client sends it again
    assert len(store.get_task_runs(run.id)) == 1
    assert states(store, run.id) == [State.RUNNING]


def test_the_engine_job_id_is_fenced_by_the_attempt(store: Store) -> None:
    from legato.models import FlowRun

    flow_run = FlowRun(new_id(), "f", State.RUNNING, created_at=time.time())
    tr = TaskRun(new_id(), flow_run.id, "t", "t:0", State.PENDING, pool="hpc", max_attempts=2)
    tr.queued_at = time.time() - 1
    store.apply([InsertFlowRun(flow_run), InsertTaskRun(tr)])
    [claimed] = store.claim_task_runs("hpc", "bridge", {}, limit=1)
    assert claimed.attempts == 1
    assert not store.set_engine_job(tr.id, 2, "slurm:99")  # not the attempt holding it
    assert store.set_engine_job(tr.id, 1, "slurm:12")
    assert store.get_task_run(tr.id).engine_job_id == "slurm:12"
    assert any(h.message == "engine job slurm:12" for h in store.get_history(tr.id))
    assert store.finish_task_run(tr.id, 1, State.COMPLETED, {"result": {"v": 1}})
    assert not store.set_engine_job(tr.id, 1, "slurm:13")  # ended: nothing changes
    assert store.get_task_run(tr.id).engine_job_id == "slurm:12"


def test_outcomes_finished_together_are_fenced_one_by_one(store: Store) -> None:
    """A worker's grouped completions: each outcome is accepted or refused by its own
    attempt, in one batch; a refused one changes nothing and the others still land."""
    from legato.store import Finish

    ids = queued(store, 4)
    claimed = store.claim_task_runs("gpu", "w1", {"gpu": 4}, limit=4)
    assert [t.id for t in claimed] == ids
    stale, a, b, retry = claimed
    # the first one's lease is lost and claimed again: its first attempt is stale now
    store.apply([UpdateTaskRun(stale.id, State.PENDING, time.time(), {"queued_at": 0.0})])
    [again] = store.claim_task_runs("gpu", "w2", {"gpu": 4})
    assert again.id == stale.id and again.attempts == stale.attempts + 1
    accepted = store.finish_task_runs(
        [
            Finish(stale.id, stale.attempts, State.COMPLETED, {"result": {"v": "late"}}),
            Finish(a.id, a.attempts, State.COMPLETED, {"result": {"v": 1}, "ended_at": 1.0}),
            Finish(b.id, b.attempts, State.FAILED, {"error": "boom", "ended_at": 1.0}),
            Finish(retry.id, retry.attempts, State.AWAITING_RETRY, {"error": "again"}, "retry"),
        ]
    )
    assert accepted == [False, True, True, True]
    assert store.get_task_run(stale.id).state is State.RUNNING  # the new attempt's, untouched
    assert store.get_task_run(stale.id).result is None
    assert store.get_task_run(a.id).result == {"v": 1}
    assert store.get_task_run(b.id).state is State.FAILED
    queued_again = store.get_task_run(retry.id)
    assert queued_again.state is State.AWAITING_RETRY and queued_again.worker is None
    assert queued_again.queued_at is not None
    assert states(store, a.id)[-1] is State.COMPLETED
    # the retried one is claimable again
    assert [t.id for t in store.claim_task_runs("gpu", "w3", {"gpu": 4})] == [retry.id]


def _claim_one_at_a_time(store: Store, pool: str, n: int) -> list[TaskRun]:
    got: list[TaskRun] = []
    for _ in range(n):
        got += store.claim_task_runs(pool, "w", {"cpu": 100}, limit=1)
    return got


def test_a_flood_from_one_run_does_not_starve_another(store: Store) -> None:
    flood = queued(store, 200, pool="cpu")
    few = queued(store, 5, pool="cpu")  # queued after all of the flood
    order = [t.id for t in _claim_one_at_a_time(store, "cpu", 12)]
    assert set(few) <= set(order[:11])  # shared out, not after the 200
    assert [i for i in order if i in few] == few  # each run's own in age order
    assert [i for i in order if i in flood] == flood[: len(order) - len(few)]
    # The claim order is recorded: each claim's history row says when, by whom.
    claimed = sorted(
        (h.at, run_id)
        for run_id in order
        for h in store.get_history(run_id)
        if h.state is State.RUNNING
    )
    assert [run_id for _, run_id in claimed] == order


def test_a_run_queueing_later_joins_at_the_present_of_the_queue(store: Store) -> None:
    busy = queued(store, 50, pool="cpu")
    first = store.claim_task_runs("cpu", "w", {"cpu": 100}, limit=20)
    assert [t.id for t in first] == busy[:20]
    late = queued(store, 2, pool="cpu")
    order = [t.id for t in _claim_one_at_a_time(store, "cpu", 5)]
    assert set(late) <= set(order)  # not behind the 30 still queued


def test_higher_priority_is_claimed_first_then_age(store: Store) -> None:
    low = queued(store, 3, pool="cpu")
    high = queued(store, 2, pool="cpu", priority=5)
    urgent = queued(store, 1, pool="cpu", priority=50)
    order = [t.id for t in _claim_one_at_a_time(store, "cpu", 6)]
    assert order == urgent + high + low


def test_who_is_waiting_in_each_pool(store: Store) -> None:
    queued(store, 4, pool="cpu")
    urgent = queued(store, 2, pool="cpu", priority=9)
    queued(store, 1, pool="gpu")
    store.claim_task_runs("cpu", "w", {"cpu": 100}, limit=1)  # one urgent task now runs
    waiting = store.waiting()
    cpu = [w for w in waiting if w.pool == "cpu"]
    assert [(w.queued, w.running, w.priority) for w in cpu] == [(1, 1, 9), (4, 0, 0)]
    assert cpu[0].flow_run_id == store.get_task_run(urgent[0]).flow_run_id
    assert cpu[0].flow == "etl"
    assert [(w.pool, w.queued) for w in waiting if w.pool == "gpu"] == [("gpu", 1)]
