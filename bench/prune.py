"""A prune of many old runs through the server, with the server answering meanwhile.

    python bench/prune.py [--url postgresql://...] [--runs 10000] [--batch 100]

Seeds a fresh PostgreSQL database with RUNS finished top-level runs (each with 3 task runs,
their history and 2 log lines), starts `legato server start` on it with an admin token,
then runs `legato db prune --older-than 1d --yes` through the server while another process
reads the runs page of the API (`GET /api/v1/flow-runs?limit=20`) in a loop. Reports the
prune's time and the reader's latency before and during the prune. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import subprocess
import sys
import time
from typing import Any

from claims import DEFAULT_URL, fresh_database
from fanout import free_port
from remote import LEGATO, legato_env, stop
from scale import start_server

DAY = 86_400.0


def seed(url: str, runs: int) -> None:
    from legato.models import FlowRun, LogRecord, State, TaskRun, new_id
    from legato.store import InsertFlowRun, InsertLogs, InsertTaskRun, open_store

    store = open_store(url)
    old = time.time() - 30 * DAY
    for start in range(0, runs, 500):
        ops: list[Any] = []
        for i in range(start, min(runs, start + 500)):
            t = old + i
            run = FlowRun(
                new_id(),
                "nightly",
                State.COMPLETED,
                created_at=t,
                started_at=t,
                ended_at=t + 1,
                parameters={"i": i},
            )
            ops.append(InsertFlowRun(run))
            for k in range(3):
                ops.append(
                    InsertTaskRun(
                        TaskRun(
                            new_id(),
                            run.id,
                            "step",
                            f"step:{k}",
                            State.COMPLETED,
                            created_at=t,
                            started_at=t,
                            ended_at=t + 1,
                            result={"v": k},
                        )
                    )
                )
            ops.append(
                InsertLogs(
                    [LogRecord(run.id, None, t, 20, "legato.run", f"line {j}") for j in range(2)]
                )
            )
        store.apply(ops)
    store.close()


def reader(api: str, token: str, stop_at: Any, out: Any) -> None:
    import httpx

    client = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"})
    samples: list[tuple[float, float]] = []
    while not stop_at.is_set():
        t0 = time.perf_counter()
        client.get("/api/v1/flow-runs", params={"limit": 20}).raise_for_status()
        samples.append((time.time(), time.perf_counter() - t0))
    out.put(samples)


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * q))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="admin URL of a PostgreSQL server")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    url, admin, name = fresh_database(args.url)
    procs: list[Any] = []
    try:
        env = legato_env(url)
        subprocess.run([*LEGATO, "db", "upgrade"], env=env, check=True, capture_output=True)
        t0 = time.perf_counter()
        seed(url, args.runs)
        print(f"seeded {args.runs} runs in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        made = subprocess.run(
            [*LEGATO, "tokens", "create", "--name", "bench", "--role", "admin", "--json"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        token = json.loads(made.stdout)["token"]
        server, api_env = start_server(env, free_port(), token)
        procs.append(server)
        ctx = mp.get_context("spawn")
        stop_at, out = ctx.Event(), ctx.Queue()
        watcher = ctx.Process(target=reader, args=(api_env["LEGATO_API_URL"], token, stop_at, out))
        watcher.start()
        time.sleep(3.0)  # a baseline of the reader's latency before the prune
        began = time.time()
        pruned = subprocess.run(
            [
                *LEGATO,
                "db",
                "prune",
                "--older-than",
                "1d",
                "--yes",
                "--batch",
                str(args.batch),
                "--json",
            ],
            env=api_env,
            capture_output=True,
            text=True,
        )
        ended = time.time()
        time.sleep(1.0)
        stop_at.set()
        samples = out.get(timeout=60)
        watcher.join(30)
        if pruned.returncode != 0:
            raise SystemExit(f"prune failed: {pruned.stderr}")
        result = json.loads(pruned.stdout)
        before = [d for at, d in samples if at < began]
        during = [d for at, d in samples if began <= at <= ended]
        report = {
            "runs": result["runs"],
            "task_runs": result["task_runs"],
            "seconds": round(ended - began, 1),
            "runs_per_second": round(result["runs"] / (ended - began)),
            "reads_before": len(before),
            "reads_during": len(during),
            "read_ms_before": {
                "median": round(statistics.median(before) * 1000, 1),
                "p99": round(pct(before, 0.99), 1),
            },
            "read_ms_during": {
                "median": round(statistics.median(during) * 1000, 1),
                "p99": round(pct(during, 0.99), 1),
                "max": round(max(during) * 1000, 1),
            },
        }
        print(
            f"pruned {report['runs']} runs ({report['task_runs']} task runs) in "
            f"{report['seconds']} s ({report['runs_per_second']} runs/s); the runs page "
            f"answered {len(during)} times meanwhile: median {report['read_ms_during']['median']}"
            f" ms, p99 {report['read_ms_during']['p99']} ms, max "
            f"{report['read_ms_during']['max']} ms (before: median "
            f"{report['read_ms_before']['median']} ms, p99 {report['read_ms_before']['p99']} ms)",
            file=sys.stderr,
        )
        if args.json:
            print(json.dumps(report))
    finally:
        stop(procs)
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
        admin.close()


if __name__ == "__main__":
    main()
