"""Remote pools: throughput of trivial task runs through PostgreSQL and two workers, and the
latency from a dependency completing to its dependent starting.

    python bench/remote.py [--url postgresql://...] [--n 1000] [--chain 50] [--workers 2]

A fresh database; two `legato worker start --pool bench` processes (concurrency 8 each); the
flow runs in this process's child (`legato run`). Throughput = task runs / flow wall time.
Latency = dependent's claim time minus its dependency's end time, as recorded by the workers,
over a chain of task runs. Prints medians; asserts nothing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
DEFAULT_URL = os.environ.get(
    "LEGATO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


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
    home = Path(tempfile.mkdtemp(prefix="legato-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env.update(
        LEGATO_HOME=str(home),
        LEGATO_DATABASE_URL=url,
        LEGATO_REMOTE_POOLS="true",
        LEGATO_HEARTBEAT_SECONDS="5",
    )
    legato = [sys.executable, "-m", "legato"]
    workers = []
    try:
        subprocess.run([*legato, "db", "upgrade"], env=env, check=True, capture_output=True)
        for i in range(args.workers):
            workers.append(
                subprocess.Popen(
                    [
                        *legato,
                        "worker",
                        "start",
                        "--pool",
                        "bench",
                        "--name",
                        f"w{i}",
                        "--resources",
                        "cpu=8",
                        "--concurrency",
                        "8",
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(2.0)
        flows = str(HERE / "flows" / "remote_flows.py")
        rates = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            subprocess.run(
                [*legato, "run", f"{flows}:fan_out", "-p", f"n={args.n}", "-q"],
                env=env,
                check=True,
                capture_output=True,
            )
            rates.append(args.n / (time.perf_counter() - t0))
        out = subprocess.run(
            [*legato, "run", f"{flows}:chain", "-p", f"n={args.chain}", "-q", "--json"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        run = json.loads(out.stdout)
        trs = sorted(run["task_runs"], key=lambda t: t["created_at"])
        gaps = []
        import datetime as dt

        def ts(text: str) -> float:
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

        for before, after in itertools.pairwise(trs):
            gaps.append((ts(after["started_at"]) - ts(before["ended_at"])) * 1000)
        report = {
            "task_runs_per_s": round(statistics.median(rates)),
            "dependency_latency_ms": {
                "median": round(statistics.median(gaps), 1),
                "p90": round(sorted(gaps)[int(len(gaps) * 0.9)], 1),
            },
            "n": args.n,
            "workers": args.workers,
        }
        print(
            f"{args.n} trivial task runs through PostgreSQL + {args.workers} workers: "
            f"{report['task_runs_per_s']} task runs/s (median of {args.reps}, "
            f"whole flow including its start)",
            file=sys.stderr,
        )
        lat = report["dependency_latency_ms"]
        print(
            f"dependency done -> dependent started: median {lat['median']} ms, "  # type: ignore[index]
            f"p90 {lat['p90']} ms over a chain of {args.chain}",  # type: ignore[index]
            file=sys.stderr,
        )
        if args.json:
            print(json.dumps(report))
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
        admin.close()


if __name__ == "__main__":
    main()
