"""Scale: N items through the 8-step pipeline shape (trivial bodies), memory sampled.

    python bench/scale.py --items 10000                      # embedded, SQLite
    python bench/scale.py --items 10000 --mode server        # server + PostgreSQL + workers

Reports total time, task runs per second, and the flow process's resident memory at 10%, 25%,
50%, 75% and 100% of the task runs done (plus the peak), so growth with the number of items
shows. Server mode also samples the server and worker processes. Asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).parent
FLOWS = str(HERE / "flows" / "scale_flows.py")
LEGATO = [sys.executable, "-m", "legato"]
DEFAULT_PG = os.environ.get("LEGATO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_flow_sampled(items: int) -> dict[str, object]:
    """In this process: run the flow, sampling RSS against task runs done."""
    from legato.loader import load_flow
    from legato.runtime import get_runtime
    from legato.store import UpdateTaskRun

    flow = load_flow(f"{FLOWS}:many_items")
    rt = get_runtime()
    total = items * 8 + 1  # the steps of each item, and the summary
    done = [0]

    def count(op: object) -> None:
        if isinstance(op, UpdateTaskRun) and op.state.value in ("COMPLETED", "CACHED"):
            done[0] += 1

    rt.recorder.listeners.append(count)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.25):
            samples.append((done[0] / total, rss_mb()))

    threading.Thread(target=sample, daemon=True).start()
    start_rss = rss_mb()
    t0 = time.perf_counter()
    flow(items)
    elapsed = time.perf_counter() - t0
    stop.set()
    marks = {}
    for frac in (0.1, 0.25, 0.5, 0.75, 1.0):
        at = [r for f, r in samples if f >= frac - 1e-9]
        marks[f"{int(frac * 100)}%"] = round(at[0], 1) if at else round(rss_mb(), 1)
    return {
        "items": items,
        "task_runs": total,
        "seconds": round(elapsed, 1),
        "task_runs_per_s": round(total / elapsed),
        "rss_mb_start": round(start_rss, 1),
        "rss_mb_at_done": marks,
        "rss_mb_peak": round(max([r for _, r in samples] or [rss_mb()]), 1),
    }


def embedded(items: int) -> dict[str, object]:
    os.environ["LEGATO_HOME"] = tempfile.mkdtemp(prefix="legato-scale-")
    return {"mode": "embedded (SQLite)", **run_flow_sampled(items)}


def start_server(
    env: dict[str, str], port: int, token: str | None = None
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """`legato server start` on env's database (`--no-auth` without a token), once it answers
    /health; returns it and the environment of a process that uses it over HTTP."""
    import httpx

    auth = ["--no-auth"] if token is None else []
    proc = subprocess.Popen(
        [*LEGATO, "server", "start", "--port", str(port), "--log-level", "warning", *auth],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    api = {**env, "LEGATO_API_URL": f"http://127.0.0.1:{port}"}
    api.pop("LEGATO_DATABASE_URL")
    if token is not None:
        api["LEGATO_API_TOKEN"] = token
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"legato server start exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{api['LEGATO_API_URL']}/health", timeout=5).status_code == 200:
                return proc, api
        time.sleep(0.1)  # not up yet: nothing to wait on but the port


def server(items: int, pg_url: str) -> dict[str, object]:
    sys.path.insert(0, str(HERE))
    from claims import fresh_database
    from remote import legato_env, start_workers, stop

    url, admin, name = fresh_database(pg_url)
    env = legato_env(url)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    peaks: dict[str, float] = {}
    try:
        subprocess.run([*LEGATO, "db", "upgrade"], env=env, check=True, capture_output=True)
        procs["server"], api = start_server(env, 18000 + os.getpid() % 1000)
        for pool in ("io", "cpu", "gpu"):
            (procs[pool],) = start_workers(
                api, 1, pool, ["--resources", "cpu=8", "--concurrency", "8"]
            )
        time.sleep(2)
        stop_sampling = threading.Event()

        def sample() -> None:
            while not stop_sampling.wait(0.5):
                for key, proc in procs.items():
                    with contextlib.suppress(OSError):
                        peaks[key] = max(peaks.get(key, 0.0), rss_mb(proc.pid))

        threading.Thread(target=sample, daemon=True).start()
        os.environ.update({k: v for k, v in api.items() if k.startswith("LEGATO_")})
        os.environ.pop("LEGATO_DATABASE_URL", None)
        result = run_flow_sampled(items)
        stop_sampling.set()
        report = {
            "mode": "server + PostgreSQL + 3 workers",
            **result,
            "other_processes_rss_mb_peak": {k: round(v, 1) for k, v in peaks.items()},
        }
        print(json.dumps(report, indent=2), flush=True)  # before the clean-up, come what may
        return report
    finally:
        stop(procs.values())
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--mode", choices=["embedded", "server"], default="embedded")
    parser.add_argument("--postgres", default=DEFAULT_PG)
    args = parser.parse_args()
    if args.mode == "embedded":
        print(json.dumps(embedded(args.items), indent=2))
    else:
        server(args.items, args.postgres)  # prints its report itself


if __name__ == "__main__":
    main()
