"""The same 1,000-task fan-out (`x + 1` for each of N inputs, results gathered) by Legato
and its peers, side by side in one run; median task runs per second over several reps.

    python bench/fanout.py [--n 1000] [--reps 5] [--peers legato legato-server dask ...]
                           [--chain 50] [--url postgresql://...] [--redis redis://...]

- legato: PostgreSQL, 2 x `legato worker start --pool bench` at default options, the flow
  (`inc.map(range(n))` on pool bench) in its own process with LEGATO_REMOTE_POOLS=true;
- legato-server: `legato server start` on PostgreSQL with a runner token, 2 default workers
  and the flow, all over HTTP;
- dask: distributed LocalCluster, 2 worker processes, `client.map` + `gather`;
- celery: Redis broker and result backend (a database of our own, flushed before each rep),
  one worker `--pool prefork --concurrency 2`, a group of N signatures, `.get()`;
- threads: a ThreadPoolExecutor, the floor.

Every peer runs in its own interpreter (bench/peers.py) and times only the fan-out, after one
untimed warm-up (bench/workloads/_common.py). For both Legato modes the dependency latency
(a task run ended -> its dependent started, workers' clocks, over a chain of task runs) is
measured on the same workers afterwards. Prints a table and ratios, writes
bench/results/fanout.json; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import peers
import run
from claims import fresh_database
from remote import LEGATO, chain_latency, legato_env, start_workers, stop, wait_for_workers
from scale import start_server

WORKLOADS = peers.BENCH / "workloads"
DEFAULT_PG = os.environ.get("LEGATO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DEFAULT_REDIS = "redis://127.0.0.1:6379/7"  # a database number of this benchmark's own
POOL = "bench"  # the pool of bench/flows/remote_flows.py
WORKERS = 2
PEERS = ("legato", "legato-server", "dask", "celery", "threads")
WHAT = {
    "legato": "PostgreSQL, 2 default workers",
    "legato-server": "server + PostgreSQL, 2 default workers, all over HTTP",
    "dask": "distributed LocalCluster, 2 worker processes",
    "celery": "Redis broker + backend, prefork worker, concurrency 2",
    "threads": "ThreadPoolExecutor (the floor)",
}
RATIOS = (
    ("legato", "dask"),
    ("legato", "celery"),
    ("legato-server", "dask"),
    ("legato-server", "celery"),
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=1000, help="tasks in one fan-out")
    p.add_argument("--reps", type=int, default=5, help="timed fan-outs per peer")
    p.add_argument("--peers", nargs="+", default=list(PEERS), help=", ".join(PEERS))
    p.add_argument("--chain", type=int, default=50, help="task runs in the latency chain")
    p.add_argument("--url", default=DEFAULT_PG, help="admin URL of a PostgreSQL server")
    p.add_argument("--redis", default=DEFAULT_REDIS, help="Redis database for Celery")
    args = p.parse_args()
    args.peers = run._names(args.peers, PEERS)
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def legato_cluster(admin_url: str, server: bool) -> Iterator[dict[str, str]]:
    """A fresh database, 2 default workers (and a server): yields the flow process's env."""
    url, admin, name = fresh_database(admin_url)
    env = legato_env(url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([*LEGATO, "db", "upgrade"], env=env, check=True, capture_output=True)
        if server:
            token = subprocess.run(
                [*LEGATO, "tokens", "create", "--name", "bench", "--role", "runner", "--json"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            proc, flow_env = start_server(env, free_port(), json.loads(token.stdout)["token"])
            procs.append(proc)
        else:
            flow_env = {**env, "LEGATO_REMOTE_POOLS": "true"}
        procs += start_workers(flow_env, WORKERS, POOL)
        wait_for_workers(url, POOL, WORKERS, procs)
        yield flow_env
    finally:
        stop(procs)
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
        admin.close()


def run_peer(peer: str, args: argparse.Namespace) -> dict[str, Any]:
    """One peer's reps (and, for Legato, its dependency latency) as one row."""
    common = {"workload": "concurrent", "n": args.n, "reps": args.reps}
    log = f"fanout-{peer}.log"
    if peer in ("legato", "legato-server"):
        with legato_cluster(args.url, server=peer == "legato-server") as env:
            row = run.run_one(
                peers.python_of("legato"),
                peer,
                **common,
                script=WORKLOADS / "legato_remote.py",
                env=env,
                log_name=log,
            )
            row["dependency_latency_ms"] = chain_latency(env, args.chain)
        return row
    if peer == "celery":
        env = {**os.environ, "BENCH_CELERY_REDIS_URL": args.redis}
        script = WORKLOADS / "celery_group.py"
        return run.run_one(
            peers.python_of("celery"), peer, **common, script=script, env=env, log_name=log
        )
    script = WORKLOADS / ("dask_map.py" if peer == "dask" else "threads.py")
    venv_peer = "dask" if peer == "dask" else "threads"
    return run.run_one(peers.python_of(venv_peer), peer, **common, script=script, log_name=log)


def summarise(row: dict[str, Any]) -> dict[str, Any]:
    rates = [row["n"] / t for t in row["times_s"]]
    return {
        "peer": row["peer"],
        "what": WHAT[row["peer"]],
        "n": row["n"],
        "times_s": row["times_s"],
        "task_runs_per_s": statistics.median(rates),
        "task_runs_per_s_range": [min(rates), max(rates)],
        "dependency_latency_ms": row.get("dependency_latency_ms"),
    }


def ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    rate = {r["peer"]: r["task_runs_per_s"] for r in rows}
    return {f"{a}/{b}": rate[a] / rate[b] for a, b in RATIOS if a in rate and b in rate}


def print_report(rows: list[dict[str, Any]], ratio: dict[str, float], chain: int) -> None:
    head = ("peer", "setup", "task runs/s", "min-max", "dep. latency ms (p50/p90)")
    lines = [head]
    for r in rows:
        lat = r["dependency_latency_ms"]
        low, high = r["task_runs_per_s_range"]
        lines.append(
            (
                r["peer"],
                r["what"],
                f"{r['task_runs_per_s']:,.0f}",
                f"{low:,.0f}-{high:,.0f}",
                f"{lat['median']} / {lat['p90']}" if lat else "-",
            )
        )
    run.print_table(lines)
    print(f"\n(dependency latency: a chain of {chain} task runs, workers' clocks)")
    print("task runs/s ratios: " + ", ".join(f"{k} = {v:.2f}x" for k, v in ratio.items()))


def main() -> None:
    args = parse_args()
    run.RESULTS.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for peer in args.peers:
        print(f"[bench] fan-out n={args.n} reps={args.reps}: {peer} ...", file=sys.stderr)
        try:
            peers.ensure_venv({"legato-server": "legato"}.get(peer, peer))
            rows.append(summarise(run_peer(peer, args)))
        except (RuntimeError, subprocess.SubprocessError, OSError) as err:
            skipped[peer] = str(err)
            print(f"[bench] {peer} failed: {err}", file=sys.stderr)
    ratio = ratios(rows)
    print_report(rows, ratio, args.chain)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["python", "bench/fanout.py", *sys.argv[1:]]),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": run._cpus(),
        },
        "peer_versions": {"dask": peers.DASK, "celery": peers.CELERY},
        "n": args.n,
        "reps": args.reps,
        "chain": args.chain,
        "results": rows,
        "ratios_of_task_runs_per_s": ratio,
        "skipped": skipped,
    }
    out = run.RESULTS / "fanout.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(peers.ROOT)}")
    if skipped:
        print(f"skipped: {', '.join(skipped)} (see above)")


if __name__ == "__main__":
    main()
