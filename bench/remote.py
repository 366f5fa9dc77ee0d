"""Remote pools: throughput of trivial task runs through PostgreSQL and two workers, and the
latency from a dependency completing to its dependent starting.

    python bench/remote.py [--url postgresql://...] [--n 1000] [--chain 50] [--workers 2]

A fresh database; two `legato worker start --pool bench` processes (concurrency 8 each); the
flow runs in this process's child (`legato run`). Throughput = task runs / flow wall time.
Latency = dependent's claim time minus its dependency's end time, as recorded by the workers,
over a chain of task runs. Prints medians; asserts nothing.

The helpers (`legato_env`, `start_workers`, `wait_for_workers`, `chain_latency`, `stop`)
are shared with bench/fanout.py.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

HERE = Path(__file__).parent
FLOWS = str(HERE / "flows" / "remote_flows.py")
LEGATO = [sys.executable, "-m", "legato"]
DEFAULT_URL = os.environ.get(
    "LEGATO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def legato_env(url: str, **settings: str) -> dict[str, str]:
    """This process's environment without any LEGATO_*, on a fresh home, pointed at `url`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env.update(
        LEGATO_HOME=tempfile.mkdtemp(prefix="legato-bench-"), LEGATO_DATABASE_URL=url, **settings
    )
    return env


def start_workers(
    env: dict[str, str], count: int, pool: str = "bench", options: Sequence[str] = ()
) -> list[subprocess.Popen[bytes]]:
    """`count` x `legato worker start --pool POOL OPTIONS`, each in a process group of its own
    so that `stop` reaches whatever they started."""
    return [
        subprocess.Popen(
            [*LEGATO, "worker", "start", "--pool", pool, "--name", f"{pool}-w{i}", *options],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for i in range(count)
    ]


def wait_for_workers(
    url: str, pool: str, count: int, procs: Iterable[subprocess.Popen[bytes]]
) -> None:
    """Until `count` workers of `pool` are registered in the database at `url`."""
    from legato.store import open_store

    store = open_store(url, auto_upgrade=False)
    try:
        while len(store.list_workers(pool)) < count:
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a worker exited with {proc.returncode} on start")
            time.sleep(0.1)  # polling a table: nothing to wait on instead
    finally:
        store.close()


def chain_latency(env: dict[str, str], n: int) -> dict[str, float]:
    """Median and p90 ms from a task run's end to its dependent's start (workers' clocks),
    over `remote_flows.chain` of `n` task runs run by `legato run` with `env`."""
    out = subprocess.run(
        [*LEGATO, "run", f"{FLOWS}:chain", "-p", f"n={n}", "-q", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    trs = sorted(json.loads(out.stdout)["task_runs"], key=lambda t: t["created_at"])

    def ts(text: str) -> float:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    gaps = sorted(
        (ts(after["started_at"]) - ts(before["ended_at"])) * 1000
        for before, after in itertools.pairwise(trs)
    )
    return {
        "median": round(statistics.median(gaps), 1),
        "p90": round(gaps[int(len(gaps) * 0.9)], 1),
    }


def stop(procs: Iterable[subprocess.Popen[bytes]], grace_s: float = 30) -> None:
    """SIGTERM each, wait, then SIGKILL what is left of each one's process group."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # its children, if it was a group leader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="admin URL of a PostgreSQL server")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--chain", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from claims import fresh_database

    url, admin, name = fresh_database(args.url)
    env = legato_env(url, LEGATO_REMOTE_POOLS="true", LEGATO_HEARTBEAT_SECONDS="5")
    workers: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([*LEGATO, "db", "upgrade"], env=env, check=True, capture_output=True)
        workers = start_workers(
            env, args.workers, options=["--resources", "cpu=8", "--concurrency", "8"]
        )
        wait_for_workers(url, "bench", args.workers, workers)
        rates = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            subprocess.run(
                [*LEGATO, "run", f"{FLOWS}:fan_out", "-p", f"n={args.n}", "-q"],
                env=env,
                check=True,
                capture_output=True,
            )
            rates.append(args.n / (time.perf_counter() - t0))
        lat = chain_latency(env, args.chain)
        report = {
            "task_runs_per_s": round(statistics.median(rates)),
            "dependency_latency_ms": lat,
            "n": args.n,
            "workers": args.workers,
        }
        print(
            f"{args.n} trivial task runs through PostgreSQL + {args.workers} workers: "
            f"{report['task_runs_per_s']} task runs/s (median of {args.reps}, "
            f"whole flow including its start)",
            file=sys.stderr,
        )
        print(
            f"dependency done -> dependent started: median {lat['median']} ms, "
            f"p90 {lat['p90']} ms over a chain of {args.chain}",
            file=sys.stderr,
        )
        if args.json:
            print(json.dumps(report))
    finally:
        stop(workers)
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
        admin.close()


if __name__ == "__main__":
    main()
