"""Claim + complete throughput and wake-up latency of the store over PostgreSQL.

    python bench/claims.py [--url postgresql://...] [--runs 3000] [--batch 10] [--flow-runs 1]

Queues task runs for a pool, then 1, 2 and 4 claimer processes claim them (``--batch`` per
claim) and complete each one (a fenced, committed result), as workers do. Reports task runs
per second; ``--flow-runs N`` spreads them over N flow runs (claims then share the pool
out between them). Then measures wake-up latency: a claimer blocked in ``wait_for_queue`` and a
producer in another process queueing one run at a time; the latency is from the producer's
commit to the claimer holding the claimed run. Prints medians; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from typing import Any

DEFAULT_URL = os.environ.get(
    "LEGATO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def fresh_database(admin_url: str) -> tuple[str, Any]:
    import secrets

    import psycopg
    from sqlalchemy.engine import make_url

    name = f"legato_bench_{secrets.token_hex(4)}"
    admin = psycopg.connect(admin_url, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    return url, admin, name


def enqueue(url: str, n: int, pool: str = "bench", flow_runs: int = 1) -> None:
    from legato.models import FlowRun, State, TaskRun, new_id
    from legato.store import InsertFlowRun, InsertTaskRun, open_store

    store = open_store(url)
    runs = [FlowRun(new_id(), "bench", State.RUNNING, created_at=time.time())]
    runs += [
        FlowRun(new_id(), "bench", State.RUNNING, created_at=time.time())
        for _ in range(flow_runs - 1)
    ]
    store.apply([InsertFlowRun(r) for r in runs])
    now = time.time()
    for start in range(0, n, 1000):
        store.apply(
            [
                InsertTaskRun(
                    TaskRun(
                        new_id(),
                        runs[i % len(runs)].id,
                        "t",
                        f"t:{i}",
                        State.PENDING,
                        pool=pool,
                        created_at=now,
                        queued_at=now,
                    )
                )
                for i in range(start, min(n, start + 1000))
            ]
        )
    store.close()


def claimer(url: str, batch: int, out: Any) -> None:
    from legato.models import State
    from legato.store import open_store

    store = open_store(url, auto_upgrade=False)
    done = 0
    t0 = time.perf_counter()
    while True:
        claimed = store.claim_task_runs("bench", f"w{os.getpid()}", {}, limit=batch)
        if not claimed:
            break
        for tr in claimed:
            store.finish_task_run(tr.id, tr.attempts, State.COMPLETED, {"result": {"v": 1}})
            done += 1
    out.put((done, time.perf_counter() - t0))
    store.close()


def throughput(url: str, runs: int, claimers: int, batch: int, flow_runs: int = 1) -> float:
    from sqlalchemy import text

    from legato.store import open_store

    store = open_store(url)
    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(text("TRUNCATE task_runs, state_history, flow_runs"))
    store.close()
    enqueue(url, runs, flow_runs=flow_runs)
    out: Any = mp.Queue()
    t0 = time.perf_counter()
    procs = [mp.Process(target=claimer, args=(url, batch, out)) for _ in range(claimers)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    total = sum(r[0] for r in results)
    assert total == runs, (total, runs)
    return total / elapsed


def waker(url: str, ready: Any, stamps: Any, n: int) -> None:
    from legato.store import open_store

    store = open_store(url, auto_upgrade=False)
    got = 0
    ready.set()
    while got < n:
        seen = store.queue_versions(["wake"])
        claimed = store.claim_task_runs("wake", "w", {}, limit=1)
        if claimed:
            stamps.put(time.time())
            got += 1
            continue
        store.wait_for_queue(seen, timeout=5)
    store.close()


def wake_latency(url: str, n: int = 50) -> list[float]:
    from legato.models import FlowRun, State, TaskRun, new_id
    from legato.store import InsertFlowRun, InsertTaskRun, open_store

    ctx = mp.get_context("spawn")
    ready, stamps = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=waker, args=(url, ready, stamps, n))
    proc.start()
    ready.wait(30)
    time.sleep(1.0)  # let the waiter's LISTEN connection settle
    store = open_store(url)
    run = FlowRun(new_id(), "wake", State.RUNNING, created_at=time.time())
    store.apply([InsertFlowRun(run)])
    latencies = []
    for i in range(n):
        now = time.time()
        tr = TaskRun(
            new_id(),
            run.id,
            "t",
            f"w:{i}",
            State.PENDING,
            pool="wake",
            created_at=now,
            queued_at=now,
        )
        store.apply([InsertTaskRun(tr)])
        committed = time.time()
        latencies.append(stamps.get(timeout=30) - committed)
        time.sleep(0.02)
    proc.join()
    store.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="admin URL of a PostgreSQL server")
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=10, help="task runs per claim")
    parser.add_argument("--flow-runs", type=int, default=1, help="flow runs the runs belong to")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    url, admin, name = fresh_database(args.url)
    try:
        report: dict[str, Any] = {
            "runs": args.runs,
            "batch": args.batch,
            "flow_runs": args.flow_runs,
            "throughput": {},
        }
        for claimers in (1, 2, 4):
            rate = throughput(url, args.runs, claimers, args.batch, args.flow_runs)
            report["throughput"][claimers] = round(rate)
            print(
                f"{claimers} claimer(s): {rate:8.0f} task runs/s claimed and completed",
                file=sys.stderr,
            )
        lat = wake_latency(url)
        report["wake_ms"] = {
            "median": round(statistics.median(lat) * 1000, 2),
            "p90": round(sorted(lat)[int(len(lat) * 0.9)] * 1000, 2),
            "max": round(max(lat) * 1000, 2),
        }
        print(
            f"wake-up latency: median {report['wake_ms']['median']} ms, p90 "
            f"{report['wake_ms']['p90']} ms, max {report['wake_ms']['max']} ms",
            file=sys.stderr,
        )
        if args.json:
            print(json.dumps(report))
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
        admin.close()


if __name__ == "__main__":
    main()
