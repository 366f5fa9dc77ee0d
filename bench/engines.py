"""Engine pools: our overhead on top of Dask, and Slurm submit-to-start latency.

    python bench/engines.py [--n 1000] [--reps 3] [--slurm-jobs 10] [--skip-slurm]

Dask: the same 1,000 trivial tasks (``return i``) on the same Dask cluster (a `dask
scheduler` and two `dask worker` processes with 2 threads each, on 127.0.0.1), once directly
(``client.map`` + ``gather``) and once through a Legato dask pool (a flow mapping a task with
``pool="dask"``, run by `legato run`, one bridge process, PostgreSQL). Reports medians and
the ratio Legato/Dask.

Slurm (a single-node Slurm must answer; see .ci/setup-slurm.sh): submit-to-start latency of
``sbatch --wrap`` directly, and of a task run through a slurm pool (from the moment the task
run is queued to its body starting in the job). Prints medians; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.cluster import Cluster  # noqa: E402

FLOWS = ROOT / "bench" / "workloads" / "engine_flows.py"
DEFAULT_URL = os.environ.get(
    "LEGATO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def fresh_cluster(admin_url: str, home: Path) -> tuple[Cluster, str]:
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"legato_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    cluster = Cluster(url, home, heartbeat=5.0)  # a realistic lease (7.5 s)
    assert cluster.legato("db", "upgrade").returncode == 0
    return cluster, name


def drop(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def trivial(i: int) -> int:
    return i


def bench_dask(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    from distributed import Client

    dask = str(Path(sys.executable).with_name("dask"))
    sched_file = tmp / "scheduler.json"
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address",
             "127.0.0.1:0", "--scheduler-file", str(sched_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]  # fmt: skip
    try:
        while not sched_file.exists():
            time.sleep(0.1)
        time.sleep(0.3)
        for i in range(2):
            procs.append(
                subprocess.Popen(
                    [dask, "worker", "--scheduler-file", str(sched_file), "--host", "127.0.0.1",
                     "--nthreads", "2", "--name", f"w{i}", "--no-dashboard"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
        client = Client(scheduler_file=str(sched_file))
        client.wait_for_workers(2, timeout=60)
        address = client.scheduler.address
        direct = []
        client.gather(client.map(trivial, range(10), pure=False))  # warm-up
        for _ in range(args.reps):
            t0 = time.perf_counter()
            client.gather(client.map(trivial, range(args.n), pure=False))
            direct.append(time.perf_counter() - t0)
        client.close()

        cluster, db = fresh_cluster(args.url, tmp / "legato")
        try:
            made = cluster.legato(
                "pools", "create", "dask", "--type", "dask", "--option", f"address={address}"
            )
            assert made.returncode == 0, made.stderr
            cluster.start_worker("dask-bridge", "dask", "cpu=1", concurrency=256)
            cluster.wait_for_workers("dask-bridge", timeout=60)
            ours = []
            run = cluster.legato("run", f"{FLOWS}:trivial_many", "-p", "n=10", "-q")  # warm-up
            assert run.returncode == 0, run.stderr
            for _ in range(args.reps):
                t0 = time.perf_counter()
                run = cluster.legato(
                    "run", f"{FLOWS}:trivial_many", "-p", f"n={args.n}", "--json", "-q",
                    timeout=600,
                )  # fmt: skip
                wall = time.perf_counter() - t0
                assert run.returncode == 0, run.stderr
                data = json.loads(run.stdout)
                flow_s = _seconds(data["started_at"], data["ended_at"])
                ours.append(flow_s)
                print(f"  legato rep: flow {flow_s:.2f} s (process wall {wall:.2f} s)")
        finally:
            cluster.stop()
            drop(args.url, db)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(30)
    d, o = statistics.median(direct), statistics.median(ours)
    return {
        "n": args.n,
        "dask_direct_s": d,
        "legato_dask_pool_s": o,
        "ratio": o / d,
        "dask_ms_per_task": 1000 * d / args.n,
        "legato_ms_per_task": 1000 * o / args.n,
    }


def _seconds(start: str, end: str) -> float:
    import datetime as dt

    def parse(s: str) -> float:
        return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()

    return parse(end) - parse(start)


def bench_slurm(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    direct = []
    for _ in range(args.slurm_jobs):
        out = tmp / f"start-{secrets.token_hex(3)}"
        t0 = time.time()
        subprocess.run(
            ["sbatch", "--parsable", "-o", "/dev/null", "--wrap", f"date +%s.%N > {out}"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        while not out.exists() or not out.read_text().strip():
            time.sleep(0.02)
        direct.append(float(out.read_text()) - t0)
    cluster, db = fresh_cluster(args.url, tmp / "legato-slurm")
    try:
        made = cluster.legato(
            "pools", "create", "hpc", "--type", "slurm", "--option", "poll=0.5",
            "--option", "array=false",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        cluster.start_worker("hpc-bridge", "hpc", "cpu=1", concurrency=8)
        cluster.wait_for_workers("hpc-bridge", timeout=60)
        ours = []
        for _ in range(args.slurm_jobs):
            run = cluster.legato("run", f"{FLOWS}:slurm_start", "--json", "-q", timeout=300)
            assert run.returncode == 0, run.stderr
            data = json.loads(run.stdout)
            [tr] = data["task_runs"]
            [(queued,)] = cluster.sql(
                "SELECT min(at) FROM state_history WHERE run_id = %s AND state = 'PENDING'"
                " AND message LIKE 'queued for pool%%'",
                tr["id"],
            )
            ours.append(float(data["result"]) - float(queued))
    finally:
        cluster.stop()
        drop(args.url, db)
    return {
        "jobs": args.slurm_jobs,
        "sbatch_to_start_s": statistics.median(direct),
        "legato_queued_to_start_s": statistics.median(ours),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--slurm-jobs", type=int, default=10)
    parser.add_argument("--skip-slurm", action="store_true")
    args = parser.parse_args()
    report = {}
    with tempfile.TemporaryDirectory(prefix="legato-bench-") as tmp:
        print(f"dask: {args.n} trivial tasks x {args.reps} reps")
        report["dask"] = bench_dask(args, Path(tmp))
        d = report["dask"]
        print(
            f"dask direct {d['dask_direct_s']:.2f} s ({d['dask_ms_per_task']:.2f} ms/task); "
            f"through a legato dask pool {d['legato_dask_pool_s']:.2f} s "
            f"({d['legato_ms_per_task']:.2f} ms/task); ratio legato/dask {d['ratio']:.2f}"
        )
        if not args.skip_slurm and shutil.which("sbatch"):
            report["slurm"] = bench_slurm(args, Path(tmp))
            s = report["slurm"]
            print(
                f"slurm submit-to-start (median of {s['jobs']}): "
                f"sbatch {s['sbatch_to_start_s']:.2f} s; "
                f"legato queued-to-start {s['legato_queued_to_start_s']:.2f} s"
            )
    out = ROOT / "bench" / "results" / "engines.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
